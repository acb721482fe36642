"""The command line, end to end on the bundled sample (bm25s: no Java needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.cli import main


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from harness.cli import build_parser; build_parser().format_help(); " \
           "print(sorted(m for m in ('torch', 'transformers', 'pyserini', 'bm25s', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reproduce_sample_then_reuse_everything(store, tmp_path, capsys):
    args = ["-q", "reproduce", "bm25-flat", "--dataset", "sample", "--retriever", "bm25s",
            "--results-dir", str(tmp_path / "results")]
    started = time.perf_counter()
    assert main(args) == 0
    first = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "4 built" in out and "nDCG@10 0." in out
    started = time.perf_counter()
    assert main(args) == 0
    second = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "4 reused" in out and "0 built" in out
    assert second < first
    [result] = (tmp_path / "results" / "bm25-flat").glob("*/sample.json")
    data = json.loads(result.read_text())
    assert data["modified"] == {"retrieve.retriever": "bm25s"}
    assert {s["stage"] for s in data["stages"]} == {"corpus", "index", "retrieve", "evaluate"}
    assert 0.5 < data["metrics"]["nDCG@10"] <= 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "bm25-flatt", "-d", "sample"], "Unknown recipe 'bm25-flatt'. Did you mean 'bm25-flat'"),
        (["reproduce", "bm25-flat", "-d", "scifakt"], "Unknown dataset 'scifakt'. Did you mean 'scifact'"),
        (["show", "bm25-flat", "--set", "retrieve.kk=1"], "unknown key 'kk'"),
    ],
)
def test_user_mistakes_get_one_sentence_and_exit_2(store, capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_data_folder_says_what_to_download(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_BEIR_URL", "http://127.0.0.1:9/beir/{name}.zip")  # fetched on first use: no server
    code = main(["reproduce", "bm25-flat", "-d", "nfcorpus", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "nfcorpus.zip" in out and "skipped" in out
    assert not (store.root / "artifacts").exists()


def test_list_and_show(store, capsys):
    assert main(["list", "datasets"]) == 0
    assert "cqadupstack" in capsys.readouterr().out
    assert main(["show", "bm25-multifield"]) == 0
    assert "fields: multifield" in capsys.readouterr().out


# --- seeds: one pipeline per seed, the mean and the sample standard deviation -------------------------------

def test_seeds_set_every_stage_parameter_named_seed(store, tmp_path):
    from harness import recipes
    from harness.runner import Runner

    path = tmp_path / "seeded.yaml"
    path.write_text((recipes.recipes_dir() / "smoke.yaml").read_text().replace("name: smoke", "name: seeded")
                    + "seeds: [1, 2]\n")
    runner = Runner(recipes.load(str(path)), store)
    keys = {}
    for seed in (1, 2):
        runner.seed = seed
        steps = runner.steps("sample")
        assert all(steps[s].params.seed == seed for s in ("generate", "negatives", "train"))
        keys[seed] = {name: step.key for name, step in steps.items()}
    for name in ("corpus", "index", "retrieve"):  # no seed: one artifact serves both runs
        assert keys[1][name] == keys[2][name]
    for name in ("generate", "filter", "negatives", "train", "rerank", "evaluate"):
        assert keys[1][name] != keys[2][name]


def test_results_of_seeds_hold_mean_std_per_seed_and_each_stages_seed(store, tmp_path, capsys):
    from statistics import fmean, stdev

    from harness import recipes

    path = tmp_path / "seeded.yaml"
    path.write_text((recipes.recipes_dir() / "bm25-flat.yaml").read_text().replace("name: bm25-flat", "name: seeded")
                    + "seeds: [1, 2, 3]\n")
    assert main(["-q", "reproduce", str(path), "-d", "sample", "--retriever", "bm25s",
                 "--results-dir", str(tmp_path / "res")]) == 0
    data = json.loads(next((tmp_path / "res" / "seeded").rglob("sample.json")).read_text())
    assert data["seeds"] == [1, 2, 3] and set(data["per_seed"]) == {"1", "2", "3"}
    for metric, mean in data["metrics"].items():
        values = [data["per_seed"][s][metric] for s in ("1", "2", "3")]
        assert mean == pytest.approx(fmean(values)) and data["std"][metric] == pytest.approx(stdev(values))
    assert sorted({s["seed"] for s in data["stages"]}) == [1, 2, 3] and len(data["stages"]) == 3 * 4
    assert data["excluded_example_queries"] == 0


# --- gaps: a published stage the registry cannot serve -----------------------------------------------------------

def _gappy(tmp_path, base="promptagator"):
    """A recipe whose published reranker id nobody published."""
    path = tmp_path / "gappy.yaml"
    path.write_text(f"name: gappy\nversion: 1\nchangelog: {{1: x}}\nextends: {base}\n"
                    "published: {train: 'nowhere/{name}/reranker'}\n")
    return str(path)


def test_plan_says_what_auto_regenerates_and_where_fetch_would_stop(store, tmp_path, capsys):
    recipe = _gappy(tmp_path)
    assert main(["plan", recipe, "-d", "scifact", "--mode", "auto"]) == 0
    out = capsys.readouterr().out
    assert "train:regenerate" in out and "not published, regenerated instead" in out
    assert "nowhere/scifact/reranker (not in the registry" in out
    assert main(["plan", recipe, "-d", "scifact", "-d", "fiqa", "--mode", "fetch"]) == 0
    out = capsys.readouterr().out
    assert "train:gap" in out and "--mode fetch stops before any work: 2 published stage(s)" in out
    assert "--mode auto" in out


def test_fetch_mode_stops_before_any_work_and_lists_every_gap(store, tmp_path, capsys):
    code = main(["reproduce", _gappy(tmp_path, "inpars-v2"), "-d", "sample", "--mode", "fetch",
                 "--results-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert code == 2 and "sample train: nowhere/sample/reranker" in err and "--mode auto" in err
    assert "sample retrieve: bm25/sample/flat-run" in err  # every gap, not the first one
    assert "sample generate" not in err  # upstream of a fetched reranker: never needed
    assert "--mode regenerate" in err and "Traceback" not in err
    assert not (store.root / "artifacts").exists()


def test_an_unusable_entry_is_a_gap(store):
    """The registry's `usable: false` (e.g. the empty zeta-alpha-ai/monot5-3b-inpars-v2-cqadupstack-gaming)."""
    from harness import recipes
    from harness.registry import user_registry
    from harness.runner import Runner

    user_registry(store.root).parent.mkdir(parents=True, exist_ok=True)
    user_registry(store.root).write_text(
        "entries:\n  - id: empty/sample/reranker\n    kind: model\n    repo: someone/empty\n    repo_type: model\n"
        "    files: ['*.json']\n    provenance: test\n    usable: false\n    known_gap: the repository is empty\n")
    runner = Runner(recipes.load("inpars-v2"), store, mode="auto")
    steps = runner.steps("sample")
    steps["train"].published = "empty/sample/reranker"
    gap = runner.gap(steps["train"])
    assert gap is not None and gap.why == "the repository is empty"
    assert runner.decide(steps["train"]) == "regenerate"
    runner.mode = "fetch"
    assert runner.decide(steps["train"]) == "fetch"  # check_gaps stops the run before it gets there


def test_plan_of_promptagator_fetches_nothing_unpublished(store, capsys):
    """Issue 17: `harness plan` printed `train:fetch` for Promptagator where nothing is published. The
    Promptagator-prompt rerankers are registered for 10 of its 11 datasets (danilotpnta/IR2-project@5387239
    `src/reproduce.py` lines 454-468 load dbpedia and scidocs); none was found for climate-fever."""
    assert main(["plan", "promptagator", "-d", "climate-fever"]) == 0
    out = capsys.readouterr().out
    assert "train:fetch" not in out and "train:regenerate" in out
    assert main(["plan", "promptagator", "-d", "dbpedia-entity"]) == 0
    assert "train:fetch" in capsys.readouterr().out


def test_plan_of_promptagator_with_fetched_rerankers_generates_nothing(store, capsys):
    """Follow-up of issue 17: fetch mode used to regenerate GPT-J's 100k queries only to learn which few-shot
    example queries to leave out of evaluation; the `examples` stage gives them without generating."""
    import re

    assert main(["plan", "promptagator", "-d", "scifact", "--mode", "fetch"]) == 0
    out = capsys.readouterr().out
    assert "train:fetch" in out and "examples:regenerate" in out
    assert not re.search(r"\b(generate|filter|negatives):", out)
    assert main(["plan", "promptagator", "-d", "scifact", "--mode", "regenerate"]) == 0
    assert re.search(r"\bgenerate:regenerate", capsys.readouterr().out)


def test_show_prints_each_paper_recipe_as_resolved(store, capsys):
    for name, expected in (("inpars-v2", "optimizer: adafactor"), ("inpars-v1", "prompt: inpars-gbq"),
                           ("inpars-v2-toolkit-gpu", "optimizer: adamw"), ("promptagator", "informational: true")):
        assert main(["show", name]) == 0
        assert expected in capsys.readouterr().out, name
    assert main(["show", "bm25-multifield"]) == 0
    assert "flat-run" not in capsys.readouterr().out


def test_plan_shows_an_entrys_unverified_name(store, tmp_path, capsys):
    """The registry's `unverified` field (why a repository name could not be confirmed) is shown by the plan."""
    from harness.registry import user_registry

    user_registry(store.root).parent.mkdir(parents=True, exist_ok=True)
    user_registry(store.root).write_text(
        "entries:\n  - id: mine/scifact/reranker\n    kind: model\n    repo: someone/guessed-name\n"
        "    repo_type: model\n    files: ['*.json']\n    provenance: test\n"
        "    unverified: no public code or page names this repository\n")
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nversion: 1\nchangelog: {1: x}\nextends: inpars-v2\n"
                    "published: {train: 'mine/{name}/reranker'}\n")
    assert main(["plan", str(path), "-d", "scifact", "--mode", "fetch"]) == 0
    out = capsys.readouterr().out
    assert "mine/scifact/reranker (unverified: no public code or page names this repository)" in out


def test_auto_mode_regenerates_a_gap_and_says_so(store, tmp_path):
    from harness import recipes
    from harness.runner import Runner

    path = tmp_path / "gap.yaml"
    path.write_text("name: gap\nversion: 1\nchangelog: {1: x}\nextends: smoke\n"
                    "published: {generate: 'nowhere/{name}/queries'}\n")
    said: list[str] = []
    runner = Runner(recipes.load(str(path), ["generate.n_docs=4", "generate.max_new_tokens=4"]), store,
                    mode="auto", echo=said.append, progress=False)
    assert runner.check_gaps(["sample"]) is None  # only fetch mode stops
    step = runner.steps("sample")["generate"]
    runner.ensure(step, done := {})
    assert any("generate  not published (nowhere/sample/queries: not in the registry" in s and "regenerating" in s
               for s in said)
    assert [o.mode for o in done.values() if o.step.stage == "generate"] == ["regenerate"]
