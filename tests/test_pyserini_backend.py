"""Tests of the Lucene BM25 backend: a tiny in-test corpus, and SciFact against pyserini's 2CR numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("pyserini")
pytest.importorskip("jnius_config")  # not `jnius`: importing it would start a JVM without Anserini

from harness.errors import HarnessError
from harness.retrieval import java
from harness.retrieval.pyserini_backend import build_index, search

try:
    java.find_java21()
except HarnessError as error:  # pragma: no cover - depends on the machine
    pytest.skip(f"no Java 21: {error}", allow_module_level=True)

DOCS = [
    ("cat", "Domestic cats", "Cats purr and chase mice around the house."),
    ("dog", "Loyal dogs", "Dogs bark at strangers and fetch sticks."),
    ("q-fish", "Goldfish", "Goldfish swim in a bowl; cats watch the goldfish."),
    ("zebra", "Zebra stripes", "The animal has black and white stripes."),
    ("empty", "", ""),
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    summaries = {fields: build_index(iter(DOCS), root / fields, fields=fields) for fields in ("flat", "multifield")}
    return root, summaries


def test_import_needs_no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lucene = java.import_pyserini("pyserini.search.lucene")
    assert hasattr(lucene, "LuceneSearcher")
    assert "OPENAI_API_KEY" not in os.environ  # the placeholder does not outlive the import


def test_start_jvm_is_idempotent():
    assert java.start_jvm() is java.start_jvm()
    assert os.environ["JAVA_HOME"] == str(java.find_java21().home)


def test_build_summary(indexes):
    root, summaries = indexes
    flat, multi = summaries["flat"], summaries["multifield"]
    assert flat["documents"] == 4 and flat["empty"] == 1  # empty docs are skipped, as Anserini does
    assert (flat["fields"], multi["fields"]) == ("flat", "multifield")
    assert flat["anserini_version"] and flat["lucene_version"]
    # The temporary JSONL collection is gone; only the two indexes remain.
    assert sorted(p.name for p in root.iterdir()) == ["flat", "multifield"]


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_top_hit_and_order(indexes, fields):
    root, _ = indexes
    run = search(root / fields, {"q1": "cats purr", "q2": "barking dogs", "none": "xylophone"}, k=10, fields=fields)
    assert run["q1"][0][0] == "cat"
    assert run["q2"][0][0] == "dog"
    assert run["none"] == []
    for hits in run.values():
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True)


def test_multifield_indexes_title_separately(indexes):
    root, _ = indexes
    # "domestic" is only in a title: flat has it in contents; multifield only in its title field.
    assert search(root / "flat", {"q": "domestic"}, fields="flat")["q"][0][0] == "cat"
    assert search(root / "multifield", {"q": "domestic"}, fields="multifield")["q"][0][0] == "cat"
    assert search(root / "multifield", {"q": "domestic"}, fields="flat")["q"] == []  # contents only


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_remove_query_drops_the_query_document_after_retrieving_k(indexes, fields):
    root, _ = indexes
    queries = {"q-fish": "goldfish cats"}
    kept = search(root / fields, queries, k=2, fields=fields)["q-fish"]
    assert [doc for doc, _ in kept] == ["q-fish", "cat"]
    # pyserini's --remove-query filters the k hits it retrieved, so one fewer hit remains.
    removed = search(root / fields, queries, k=2, fields=fields, remove_query=True)["q-fish"]
    assert [doc for doc, _ in removed] == ["cat"]


def test_bm25_parameters_change_scores(indexes):
    root, _ = indexes
    default = search(root / "flat", {"q": "goldfish"})["q"]
    other = search(root / "flat", {"q": "goldfish"}, k1=1.2, b=0.75)["q"]
    assert [d for d, _ in default] == [d for d, _ in other] == ["q-fish"]
    assert default[0][1] != other[0][1]


def test_errors_are_harness_errors(indexes, tmp_path):
    root, _ = indexes
    with pytest.raises(HarnessError, match="not empty"):
        build_index(DOCS, root / "flat")
    with pytest.raises(HarnessError, match="Unknown index fields"):
        build_index(DOCS, tmp_path / "x", fields="title")
    with pytest.raises(HarnessError, match="No Lucene index"):
        search(tmp_path, {"q": "cats"})
    with pytest.raises(HarnessError, match="No documents"):
        build_index([], tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def _scifact_dir() -> Path | None:
    base = os.environ.get("HARNESS_BEIR_DIR")
    if base and (Path(base) / "scifact").is_dir():
        return Path(base) / "scifact"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_scifact_dir() is None, reason="set HARNESS_BEIR_DIR to a folder containing scifact/")
def test_scifact_matches_pyserini_2cr(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    data = _scifact_dir()
    with open(data / "corpus.jsonl", encoding="utf-8") as lines:
        docs = [(d["_id"], d.get("title", ""), d.get("text", "")) for d in map(json.loads, lines)]
    qrels: dict[str, dict[str, int]] = {}
    with open(data / "qrels" / "test.tsv", encoding="utf-8") as lines:
        next(lines)  # header: query-id corpus-id score
        for line in lines:
            qid, docid, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[docid] = int(score)
    with open(data / "queries.jsonl", encoding="utf-8") as lines:
        queries = {q["_id"]: q["text"] for q in map(json.loads, lines) if q["_id"] in qrels}

    # pyserini 2CR: bm25-flat 0.6789, bm25-multifield 0.6647 (both run with --remove-query --hits 1000).
    expected = {"flat": 0.6789, "multifield": 0.6647}
    for fields, target in expected.items():
        build_index(docs, tmp_path / fields, fields=fields)
        run = search(tmp_path / fields, queries, k=1000, fields=fields, remove_query=True, threads=2)
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"})
        per_query = evaluator.evaluate({qid: dict(hits) for qid, hits in run.items()})
        ndcg = sum(per_query.get(qid, {}).get("ndcg_cut_10", 0.0) for qid in qrels) / len(qrels)
        assert ndcg == pytest.approx(target, abs=0.0005), fields
