"""Item 5: bad input ends in one clear sentence (naming the file or key) and a non-zero exit, never a traceback.

Recipes and the registry through the command line (`harness show`, `harness fetch`), dataset files through
`harness reproduce` on a folder of damaged BEIR files, TREC runs, model ids and prompt templates through
the functions that read them.
"""

from __future__ import annotations

import gzip
import json
import textwrap

import pytest

from harness.cli import main
from harness.errors import HarnessError

GOOD_RECIPE = textwrap.dedent("""\
    name: mine
    version: 1
    changelog: {1: first}
    paper: test
    datasets: [sample]
    stages:
      retrieve: {retriever: bm25s, k: 100}
      evaluate: {metrics: [nDCG@10]}
    """)


def cli_error(capsys, argv, *names) -> str:
    """Run the CLI: exit code non-zero, one `error:` line on stderr naming `names`, no traceback."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0, f"exit 0 for {argv}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(err.splitlines()) == 1, f"not one line:\n{err}"
    for name in names:
        assert str(name) in err, f"{name!r} not named in: {err}"
    return err


# --- recipes --------------------------------------------------------------------------------------------
RECIPES = {
    "malformed YAML": ("name: [unclosed\nversion: 1\n", ["not valid YAML"]),
    "tab indentation": ("name: x\nstages:\n\tretrieve: {}\n", ["not valid YAML"]),
    "empty file": ("", ["YAML mapping"]),
    "a list, not a mapping": ("- a\n- b\n", ["YAML mapping"]),
    "unknown top-level key": (GOOD_RECIPE + "stagez: {}\n", ["stagez"]),
    "unknown stage": (GOOD_RECIPE.replace("retrieve:", "retreive:"), ["retreive", "retrieve"]),
    "unknown stage parameter": (GOOD_RECIPE.replace("k: 100", "kk: 100"), ["kk"]),
    "unknown reference key": (GOOD_RECIPE + "reference: [{table: t, system: s, tolerence: 1}]\n", ["tolerence"]),
    "wrong type: version": (GOOD_RECIPE.replace("version: 1", "version: one"), ["version"]),
    "wrong type: stages": (GOOD_RECIPE.replace("stages:\n", "stages: 5\nx:\n"), ["stages"]),
    "wrong type: stage params": (GOOD_RECIPE.replace("{retriever: bm25s, k: 100}", "[1, 2]"), ["retrieve"]),
    "wrong type: k": (GOOD_RECIPE.replace("k: 100", "k: many"), ["k"]),
    "wrong literal: retriever": (GOOD_RECIPE.replace("bm25s", "lucene"), ["retriever"]),
    "wrong type: extends": (GOOD_RECIPE + "extends: 5\n", ["extends"]),
    "unknown parent recipe": (GOOD_RECIPE + "extends: no-such-recipe\n", ["no-such-recipe"]),
    "out of range: version 0": (GOOD_RECIPE.replace("version: 1", "version: 0").replace("{1: first}", "{0: first}"),
                                ["version"]),
    "out of range: tolerance": (GOOD_RECIPE + "reference: [{table: t, system: s, tolerance: -1}]\n", ["tolerance"]),
    "version without changelog line": (GOOD_RECIPE.replace("version: 1", "version: 2"), ["version 2"]),
    "no changelog": (GOOD_RECIPE.replace("changelog: {1: first}\n", "changelog: {}\n"), ["changelog"]),
    "missing key": (GOOD_RECIPE.replace("paper: test\n", ""), ["paper"]),
    "deeply nested YAML": ("stages: " + "[" * 3_000 + "\n", ["mine.yaml"]),
    "YAML that constructs Python objects": (GOOD_RECIPE + "notes: !!python/object/apply:os.system ['true']\n",
                                            ["not valid YAML"]),
}


@pytest.mark.parametrize("case", list(RECIPES))
def test_bad_recipe(tmp_path, capsys, reliability, case):
    text, names = RECIPES[case]
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with reliability.trial("input", f"recipe: {case}"):
        cli_error(capsys, ["show", str(path)], path, *names)


@pytest.mark.parametrize("data", [b"name: caf\xe9\n", "name: x\n".encode("utf-16")], ids=["latin-1", "utf-16"])
def test_recipe_in_a_wrong_encoding(tmp_path, capsys, reliability, data):
    path = tmp_path / "mine.yaml"
    path.write_bytes(data)
    with reliability.trial("input", "recipe: wrong encoding"):
        cli_error(capsys, ["show", str(path)], path)


@pytest.mark.parametrize("item", ["retrieve.k", "retrieve=5", "nostage.k=1", "retrieve.k=abc", "retrieve.nope=1"])
def test_bad_set_option(tmp_path, capsys, reliability, item):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD_RECIPE)
    with reliability.trial("input", "--set with a bad key or value"):
        cli_error(capsys, ["show", str(path), "--set", item])


@pytest.mark.parametrize("value", ["0", "-5"])
def test_out_of_range_retrieval_depth(tmp_path, capsys, value):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD_RECIPE)
    cli_error(capsys, ["show", str(path), "--set", f"retrieve.k={value}"], "k")


def test_unknown_recipe_name(capsys, reliability):
    with reliability.trial("input", "recipe: unknown name"):
        cli_error(capsys, ["show", "bm25-flatt"], "bm25-flatt", "bm25-flat")


# --- the registry -----------------------------------------------------------------------------------------
GOOD_ENTRY = {"id": "user/a/run", "kind": "run", "repo": "me/runs", "files": ["run.trec"], "provenance": "t"}


def _registry_text(entries=None, **top):
    import yaml

    return yaml.safe_dump({"version": 1, "entries": entries if entries is not None else [GOOD_ENTRY], **top})


REGISTRIES = {
    "malformed YAML": ("entries: [\n", ["not valid YAML"]),
    "not a mapping": ("- 1\n", ["entries"]),
    "entries not a list": ("entries: 5\n", ["entries"]),
    "unknown top-level key": (_registry_text(entrys=[]), ["entrys"]),
    "unknown entry key": (_registry_text([{**GOOD_ENTRY, "repo_typ": "model"}]), ["repo_typ"]),
    "unknown kind": (_registry_text([{**GOOD_ENTRY, "kind": "weights"}]), ["kind"]),
    "files not a list": (_registry_text([{**GOOD_ENTRY, "files": 7}]), ["files"]),
    "no files": (_registry_text([{**GOOD_ENTRY, "files": []}]), ["files"]),
    "id with capitals": (_registry_text([{**GOOD_ENTRY, "id": "User/A"}]), ["id"]),
    "duplicate id": (_registry_text([GOOD_ENTRY, GOOD_ENTRY]), ["duplicate", "user/a/run"]),
    "entry not a mapping": (_registry_text(["just a string"]), ["entry 1"]),
    "file name with ../": (_registry_text([{**GOOD_ENTRY, "files": ["../../etc/passwd"]}]), ["leave the store"]),
    "absolute file name": (_registry_text([{**GOOD_ENTRY, "files": ["/etc/passwd"]}]), ["leave the store"]),
    "deeply nested YAML": ("entries: " + "[" * 3_000 + "\n", []),
    "Python object tag": ("entries: !!python/object/apply:os.system ['true']\n", ["not valid YAML"]),
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (recipes/, registry.yaml) that the CLI reads instead of the checkout's."""
    (tmp_path / "project" / "recipes").mkdir(parents=True)
    monkeypatch.setenv("HARNESS_PROJECT_DIR", str(tmp_path / "project"))
    return tmp_path / "project"


@pytest.mark.parametrize("case", list(REGISTRIES))
def test_bad_registry(project, store, capsys, reliability, case):
    text, names = REGISTRIES[case]
    (project / "registry.yaml").write_text(text)
    with reliability.trial("input", f"registry: {case}"):
        cli_error(capsys, ["fetch", "user/a/run"], "registry.yaml", *names)


@pytest.mark.parametrize("text", ["[1, 2]", "{\"entries\": {\"user/a/run\": {\"revision\": \"main\"}}}", "{not json"],
                         ids=["a list", "a branch as revision", "bad JSON"])
def test_bad_lock_file(project, store, capsys, reliability, text):
    (project / "registry.yaml").write_text(_registry_text())
    (project / "registry.lock").write_text(text)
    with reliability.trial("input", "registry lock: not a valid lock"):
        cli_error(capsys, ["fetch", "user/a/run"], "registry.lock")


def test_unknown_registry_id(project, store, capsys, reliability):
    (project / "registry.yaml").write_text(_registry_text())
    with reliability.trial("input", "registry: unknown id"):
        cli_error(capsys, ["fetch", "user/a/runs"], "user/a/runs", "user/a/run")


# --- dataset files ------------------------------------------------------------------------------------------
DOCS = [{"_id": f"d{i}", "title": "t", "text": f"text {i}"} for i in range(5)]
QUERIES = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)]
QRELS = "query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\nq2\td2\t1\n"


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


DATA = {
    "corpus: bad JSON": ("corpus.jsonl", jsonl(DOCS) + b'{"_id": "d9", "text": \n', ["corpus.jsonl", "line 6", "JSON"]),
    "corpus: a JSON array line": ("corpus.jsonl", jsonl(DOCS) + b"[1, 2]\n", ["corpus.jsonl", "line 6"]),
    "corpus: missing _id": ("corpus.jsonl", jsonl(DOCS + [{"text": "x"}]), ["corpus.jsonl", "_id"]),
    "corpus: missing text": ("corpus.jsonl", jsonl(DOCS + [{"_id": "d9"}]), ["corpus.jsonl", "text"]),
    "corpus: text not a string": ("corpus.jsonl", jsonl(DOCS + [{"_id": "d9", "text": [1]}]), ["corpus.jsonl", "text"]),
    "corpus: _id a list": ("corpus.jsonl", jsonl(DOCS + [{"_id": ["d9"], "text": "x"}]), ["corpus.jsonl", "_id"]),
    "corpus: duplicate id": ("corpus.jsonl", jsonl(DOCS + [DOCS[0]]), ["corpus.jsonl", "duplicate", "d0"]),
    "corpus: empty file": ("corpus.jsonl", b"", ["corpus.jsonl", "no documents"]),
    "corpus: blank lines only": ("corpus.jsonl", b"\n\n  \n", ["corpus.jsonl", "no documents"]),
    "corpus: latin-1": ("corpus.jsonl", jsonl(DOCS) + '{"_id": "d9", "text": "café"}\n'.encode("latin-1"),
                        ["corpus.jsonl", "UTF-8"]),
    "corpus: UTF-16": ("corpus.jsonl", jsonl(DOCS).decode().encode("utf-16"), ["corpus.jsonl"]),
    "corpus: deeply nested JSON": ("corpus.jsonl", jsonl(DOCS) + b"[" * 100_000 + b"\n", ["corpus.jsonl", "line 6"]),
    "corpus: damaged gzip": ("corpus.jsonl.gz", gzip.compress(jsonl(DOCS))[:-20], ["corpus.jsonl.gz"]),
    "corpus: not gzip at all": ("corpus.jsonl.gz", jsonl(DOCS), ["corpus.jsonl.gz"]),
    "queries: bad JSON": ("queries.jsonl", b"{oops}\n", ["queries.jsonl", "line 1"]),
    "queries: missing text": ("queries.jsonl", jsonl(QUERIES + [{"_id": "q9"}]), ["queries.jsonl", "text"]),
    "queries: duplicate id": ("queries.jsonl", jsonl(QUERIES + [QUERIES[1]]), ["queries.jsonl", "duplicate", "q1"]),
    "queries: empty file": ("queries.jsonl", b"", ["queries.jsonl", "no queries"]),
    "queries: latin-1": ("queries.jsonl", '{"_id": "q9", "text": "señal"}\n'.encode("latin-1"),
                         ["queries.jsonl", "UTF-8"]),
    "qrels: two columns": ("qrels/test.tsv", b"q0\td0\n", ["test.tsv", "line 1", "3 columns"]),
    "qrels: five columns": ("qrels/test.tsv", b"q0 0 d0 1 x\n", ["test.tsv", "line 1"]),
    "qrels: score not an integer": ("qrels/test.tsv", b"q0\td0\thigh\n", ["test.tsv", "high"]),
    "qrels: empty file": ("qrels/test.tsv", b"", ["test.tsv", "no judgments"]),
    "qrels: header only": ("qrels/test.tsv", b"query-id\tcorpus-id\tscore\n", ["test.tsv", "no judgments"]),
    "qrels: latin-1": ("qrels/test.tsv", "q0\tcafé\t1\n".encode("latin-1"), ["test.tsv", "UTF-8"]),
    "qrels: missing split": ("qrels/train.tsv", QRELS.encode(), ["qrels", "test"]),
    "qrels: damaged gzip": ("qrels/test.tsv.gz", gzip.compress(QRELS.encode())[:-20], ["test.tsv.gz", "gzip"]),
}


@pytest.mark.parametrize("case", list(DATA))
def test_bad_dataset_file(tmp_path, store, capsys, reliability, case):
    name, data, names = DATA[case]
    folder = tmp_path / "beir" / "scifact"
    (folder / "qrels").mkdir(parents=True)
    files = {"corpus.jsonl": jsonl(DOCS), "queries.jsonl": jsonl(QUERIES), "qrels/test.tsv": QRELS.encode()}
    if name.endswith(".gz"):
        files.pop(name.removesuffix(".gz"))
    if case == "qrels: missing split":
        files.pop("qrels/test.tsv")
    files[name] = data
    for rel, content in files.items():
        (folder / rel).write_bytes(content)
    with reliability.trial("input", case):
        cli_error(capsys, ["-q", "reproduce", "bm25-flat", "-d", "scifact", "--data-dir", str(tmp_path / "beir"),
                           "--retriever", "bm25s", "--results-dir", str(tmp_path / "res")], *names)


# --- TREC runs, model ids, prompt templates ---------------------------------------------------------------------
RUNS = {
    "five columns": "q1 Q0 d1 1 9.5\n",
    "seven columns": "q1 Q0 d1 1 9.5 tag extra\n",
    "score not a number": "q1 Q0 d1 1 high tag\n",
    "rank not a number": "q1 Q0 d1 first 9.5 tag\n",
    "empty file": "",
    "tab-separated with a blank column": "q1\tQ0\td1\t\t9.5\ttag\n",
}


@pytest.mark.parametrize("case", list(RUNS))
def test_bad_trec_run(tmp_path, reliability, case):
    from harness.data.trec import read_run

    path = tmp_path / "run.trec"
    path.write_text("q0 Q0 d0 1 10.0 tag\n" + RUNS[case] if case != "empty file" else "")
    with reliability.trial("input", f"TREC run: {case}"):
        with pytest.raises(HarnessError) as exc:
            read_run(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_trec_run_in_latin1(tmp_path, reliability):
    from harness.data.trec import read_run

    path = tmp_path / "run.trec"
    path.write_bytes("q1 Q0 café 1 9.5 tag\n".encode("latin-1"))
    with reliability.trial("input", "TREC run: latin-1"):
        with pytest.raises(HarnessError, match="UTF-8"):
            read_run(path)


@pytest.mark.parametrize("ref,revision,words", [
    ("no-such-org/no-such-model", None, ["no-such-org/no-such-model", "pinned revision"]),
    ("no-such-org/no-such-model", "main", ["pinned revision", "branch"]),
    ("tiny:gpt3", None, ["gpt3", "gpt2"]),
    ("./no/such/folder", None, ["no/such/folder", "does not exist"]),
])
def test_unknown_model_id(store, reliability, ref, revision, words):
    from harness.models.loading import resolve

    with reliability.trial("input", "unknown model id"):
        with pytest.raises(HarnessError) as exc:
            resolve(ref, store.root, revision)
        for word in words:
            assert word in str(exc.value)


def test_unknown_model_on_the_hub(local_hub, store, reliability):
    from harness.models.loading import resolve

    with reliability.trial("input", "unknown model id (Hub, pinned revision)"):
        with pytest.raises(HarnessError, match="does not exist"):
            resolve("no-such-org/no-such-model", store.root, "0" * 40)


@pytest.mark.parametrize("text", ["Example: {query}\n", "{query} then {document}",
                                  "Doc: {document} {document} {query}", "Doc: {document}\n"],
                         ids=["no document", "query first", "document twice", "no query"])
def test_bad_prompt_template(tmp_path, reliability, text):
    from harness.prompts import load_template

    with reliability.trial("input", "prompt template without a proper {document}/{query}"):
        path = tmp_path / "prompt.txt"
        path.write_text(text)
        with pytest.raises(HarnessError, match=r"\{document\}"):
            load_template(str(path))
        yaml_path = tmp_path / "prompt.yaml"
        yaml_path.write_text(json.dumps({"template": text}))
        with pytest.raises(HarnessError, match=r"\{document\}"):
            load_template(str(yaml_path))
