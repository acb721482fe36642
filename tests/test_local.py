"""Your own corpus by path: a BEIR folder scored like a catalog dataset, corpus files, and one sentence per bad
input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.data import local, sample
from harness.data.catalog import expand, get_dataset
from harness.errors import HarnessError
from harness.paths import recipes_dir


@pytest.fixture(autouse=True)
def fresh_names(monkeypatch):
    """Each test starts with no folder registered by name (they live for one process)."""
    monkeypatch.setattr(local, "_KNOWN", {})


@pytest.fixture
def bm25s_recipe(tmp_path) -> Path:
    """bm25-flat with bm25s (no Java), as a recipe of its own: unmodified, so `reproduce` compares."""
    recipe = yaml.safe_load((recipes_dir() / "bm25-flat.yaml").read_text())
    recipe.update(name="bm25s-flat-test", datasets=["sample"])
    recipe["stages"]["retrieve"]["retriever"] = "bm25s"
    recipe.pop("published", None)
    path = tmp_path / "bm25s-flat-test.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _metrics(results: Path, name: str) -> dict:
    return json.loads(next(results.rglob(f"{name}.json")).read_text())["metrics"]


def test_a_beir_folder_by_path_scores_as_the_same_data_under_its_catalog_name(bm25s_recipe, store, tmp_path, capsys):
    folder = tmp_path / "my-sample"
    sample.build(folder)
    results = tmp_path / "results"
    common = ["-q", "reproduce", str(bm25s_recipe), "--results-dir", str(results)]
    assert main([*common, "-d", "sample"]) == 0
    assert main([*common, "-d", str(folder)]) == 0
    out = capsys.readouterr().out
    assert any("my-sample" in line and "no-reference" in line for line in out.splitlines())
    assert _metrics(results, "my-sample") == _metrics(results, "sample")
    assert _metrics(results, "my-sample")["nDCG@10"] > 0


def test_real_scifact_by_path_scores_as_scifact(beir_dir, bm25s_recipe, store, tmp_path):
    folder = tmp_path / "my-facts"
    (folder / "qrels").mkdir(parents=True)
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"):
        (folder / rel).symlink_to(beir_dir / "scifact" / rel)
    results = tmp_path / "results"
    common = ["-q", "reproduce", str(bm25s_recipe), "--results-dir", str(results)]
    assert main([*common, "-d", "scifact", "--data-dir", str(beir_dir)]) == 0
    assert main([*common, "-d", str(folder)]) == 0
    assert _metrics(results, "my-facts") == _metrics(results, "scifact")


def test_a_corpus_without_qrels_trains_a_reranker_and_skips_evaluation(store, tmp_path, capsys, local_hub, monkeypatch):
    built = tmp_path / "built"
    sample.build(built)
    corpus = tmp_path / "my-corpus"
    corpus.mkdir()
    shutil.copy(built / "corpus.jsonl", corpus / "corpus.jsonl")
    results = tmp_path / "results"
    # the smoke recipe, quicker
    small = ["--set", "generate.n_docs=16", "--set", "filter.top_k=8", "--set", "train.steps=2"]
    assert main(["-q", "reproduce", "smoke", "-d", str(corpus), *small, "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "evaluation skipped: my-corpus has no qrels" in out
    key = out.split("the finetuned reranker is artifact ")[1].split()[0]
    model = store.get(key)
    assert model.manifest["kind"] == "model" and model.manifest["stage"] == "train"
    stages = [line.split()[1] for line in out.splitlines() if line.startswith("  my-corpus") and "skipped" not in line]
    assert stages == ["corpus", "generate", "filter", "index", "negatives", "train"]
    assert not results.exists() or not list(results.rglob("my-corpus.json"))
    # the third command of "InPars on your own corpus": the model goes to the Hub (here a local one)
    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    assert main(["publish", key, "--repo", "me/my-corpus-monot5"]) == 0
    from huggingface_hub import HfApi

    files = {f.rfilename for f in HfApi().model_info("me/my-corpus-monot5").siblings}
    assert any(name.endswith("config.json") for name in files), files


def test_a_recipe_without_training_on_a_corpus_without_qrels_says_so(bm25s_recipe, store, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
    with pytest.raises(HarnessError, match="'docs' has no qrels, so it can only train a reranker"):
        from harness import recipes
        from harness.runner import Runner

        Runner(recipes.load(str(bm25s_recipe)), store, progress=False).run_dataset(expand([str(tmp_path / "docs")])[0])


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("docs.tsv", "d1\tfirst text\nd2\tsecond\n", [("d1", "", "first text"), ("d2", "", "second")]),
        ("docs.tsv", "doc_id\ttext\nd1\ta\tb\n", [("d1", "", "a\tb")]),
        ("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n\n{"doc_id": "d2", "text": "b", "title": "T"}\n',
         [("d1", "", "a"), ("d2", "T", "b")]),
        ("docs.jsonl", '{"_id": "d1", "text": "a", "title": "T", "metadata": {}}\n', [("d1", "T", "a")]),
    ],
)
def test_corpus_files_as_the_toolkit_accepts_them(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    assert [(d.id, d.title, d.text) for d in local.iter_docs(path)] == expected
    dataset = get_dataset(str(path))
    assert (dataset.name, dataset.kind, dataset.has_qrels) == ("docs", "path", False)
    assert expand([str(path)]) == ["docs"] and get_dataset("docs") == dataset


def test_a_corpus_file_becomes_a_corpus_artifact(tmp_path):
    from harness.stages import corpus as corpus_stage

    path = tmp_path / "docs.tsv"
    path.write_text("d1\tfirst\nd2\tsecond\n")
    out = tmp_path / "out"
    summary = local.write(path, out)
    assert summary == {"documents": 2, "queries": 0, "splits": {}}
    assert [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()] == [
        {"_id": "d1", "title": "", "text": "first"}, {"_id": "d2", "title": "", "text": "second"}]
    assert corpus_stage.source_of(str(path), "folder") == "path"


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize(
    "corpus, message",
    [
        (None, "holds no corpus.jsonl"),
        ("", "corpus.jsonl holds no documents"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', "corpus.jsonl line 2: duplicate document id 'd1'"),
        ('{"_id": "d1", "text": "a"}\n{"_id": 7, "text": "b"}\n',
         "corpus.jsonl line 2: field '_id' must be a string, got int"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d2"}\n',
         "corpus.jsonl line 2: field 'text' must be a string, got nothing"),
        ('{"_id": "d1", "text": "a"}\n{"id": "d2", "text": "b"}\n', r"corpus.jsonl line 2: no `_id` \(nor `doc_id`\)"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d2", \n', "corpus.jsonl line 2: not valid JSON"),
        (b'{"_id": "d1", "text": "a"}\n' + '{"_id": "d2", "text": "caf\xe9"}\n'.encode("latin-1"),
         "corpus.jsonl line 2: not UTF-8 text"),
    ],
)
def test_a_folder_that_is_not_a_dataset_gets_one_sentence_with_file_and_line(tmp_path, corpus, message):
    folder = tmp_path / "mine"
    folder.mkdir()
    if corpus is not None:
        _write(folder, "corpus.jsonl", corpus)
    with pytest.raises(HarnessError, match=message):
        get_dataset(str(folder))
        list(local.iter_docs(local.corpus_file(folder)))


def test_the_command_line_names_the_file_and_line(store, tmp_path, capsys):
    folder = tmp_path / "mine"
    _write(folder, "corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n')
    assert main(["-q", "reproduce", "smoke", "-d", str(folder), "--results-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {folder / 'corpus.jsonl'} line 2: duplicate document id 'd1'."


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("docs.tsv", "d1\tok\nd2 no tab\n", r"docs.tsv line 2: expected `id<TAB>text`, found no tab"),
        ("docs.tsv", "d1\tok\n\tno id\n", "docs.tsv line 2: empty document id"),
        ("docs.tsv", b"d1\tok\nd2\t\xff\n", "docs.tsv line 2: not UTF-8 text"),
        ("docs.csv", "d1,ok\n", "a corpus file must be .tsv"),
    ],
)
def test_bad_corpus_files(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(HarnessError, match=message):
        list(local.iter_docs(local.corpus_file(path)))


def test_paths_that_cannot_be_datasets(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        get_dataset(str(tmp_path / "nowhere"))
    _write(tmp_path / "scifact", "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    with pytest.raises(HarnessError, match=f"named like the catalog dataset 'scifact'.*--data-dir {tmp_path}"):
        get_dataset(str(tmp_path / "scifact"))
    _write(tmp_path / "a" / "mine", "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    _write(tmp_path / "b" / "mine", "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    get_dataset(str(tmp_path / "a" / "mine"))
    with pytest.raises(HarnessError, match="would both be dataset 'mine'"):
        get_dataset(str(tmp_path / "b" / "mine"))
    _write(tmp_path / "judged" / "qrels", "test.tsv", "q1\td1\t1\n")
    _write(tmp_path / "judged", "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    with pytest.raises(HarnessError, match="has qrels but no queries.jsonl"):
        get_dataset(str(tmp_path / "judged"))


def test_the_evaluation_split_of_a_folder(tmp_path):
    folder = tmp_path / "splits"
    _write(folder, "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    _write(folder, "queries.jsonl", '{"_id": "q1", "text": "a"}\n')
    for split in ("train", "dev"):
        _write(folder / "qrels", f"{split}.tsv", "q1\td1\t1\n")
    dataset = get_dataset(str(folder))
    assert (dataset.split, dataset.has_qrels) == ("dev", True)


def test_inpars_v2_on_your_own_corpus_regenerates_and_stops_at_training(store, tmp_path):
    from harness import recipes
    from harness.runner import Runner

    _write(tmp_path / "my-corpus", "corpus.jsonl", '{"_id": "d1", "text": "a"}\n')
    name = expand([str(tmp_path / "my-corpus")])[0]
    runner = Runner(recipes.load("inpars-v2"), store, progress=False)
    steps = runner.steps(name)
    assert list(steps) == ["corpus", "generate", "filter", "negatives", "train"]
    assert [s.published for s in steps.values()] == [None] * 5  # nothing the authors published is fetched for it
    assert {runner.decide(s) for s in steps.values()} == {"regenerate"}
