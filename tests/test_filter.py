"""The `filter` stage: token-count bounds, copied queries, the two scoring strategies, top k, stable ties."""

from __future__ import annotations

import json
import sys
import types

import pytest

from harness.data import beir
from harness.stages import Context
from harness.stages import filter as filter_stage
from harness.store import artifact_key
from tests.test_generate import corpus_artifact


def generated(store, rows):
    """A stand-in generate artifact holding `rows`."""
    def write(out):
        beir.write_jsonl(rows, out.path / "queries.jsonl")
        (out.path / "examples.json").write_text('{"query_ids": [], "doc_ids": []}')
    key = artifact_key("generate", 0, {"rows": rows}, {})
    artifact, _ = store.get_or_build(key, write, kind="queries", stage="generate", params={}, inputs={})
    return artifact


def row(doc_id, query, log_probs):
    return {"query_id": f"syn-{doc_id}", "doc_id": doc_id, "query": query, "log_probs": log_probs,
            "n_tokens": len(log_probs), "example_ids": []}


def run_filter(store, corpus, queries, **values):
    params = filter_stage.Params(**values)
    key = artifact_key("filter", 1, params.key_params(), {"corpus": corpus.key, "queries": queries.key})
    ctx = Context(store, "sample", progress=False)
    artifact, _ = store.get_or_build(
        key, lambda out: filter_stage.run({"corpus": corpus, "queries": queries}, params, out, ctx), kind="queries",
        stage="filter", params=params.key_params(), inputs={"corpus": corpus.key, "queries": queries.key})
    return [json.loads(line) for line in artifact.file("queries.jsonl").read_text().splitlines()], artifact


@pytest.fixture
def setup(store):
    corpus = corpus_artifact(store)
    docs = {d.id: d for d in beir.iter_corpus(corpus.file("corpus.jsonl"))}
    ids = sorted(docs)[:7]
    copied = " ".join(docs[ids[4]].text.split()[:4]).upper()  # verbatim from its document, other case
    rows = [
        row(ids[0], "what is a bee", [-1.0, -2.0, -3.0]),  # mean -2
        row(ids[1], "tides and moon", [-0.5, -0.5, -0.5]),  # mean -0.5
        row(ids[2], "too short", [-0.1, -0.1]),  # 2 tokens
        row(ids[3], "tie one", [-2.0, -2.0, -2.0]),  # mean -2, after ids[0] in generation order
        row(ids[4], copied, [-0.2, -0.2, -0.2, -0.2]),
        row(ids[5], "long " * 6, [-0.3] * 6),
        row(ids[6], "", []),
    ]
    return store, corpus, generated(store, rows), ids


def test_scores_strategy_keeps_the_best_by_mean_log_prob(setup):
    store, corpus, queries, ids = setup
    kept, artifact = run_filter(store, corpus, queries, top_k=10, max_tokens=5)
    assert [r["doc_id"] for r in kept] == [ids[4], ids[1], ids[0], ids[3]]  # short, long, empty dropped
    assert [r["score"] for r in kept] == [-0.2, -0.5, -2.0, -2.0]
    assert set(kept[0]) == {"query_id", "doc_id", "query", "log_probs", "n_tokens", "example_ids", "score"}
    s = artifact.summary
    assert (s["input"], s["too_short"], s["too_long"], s["kept"]) == (7, 2, 1, 4)


def test_top_k_and_ties_are_deterministic(setup):
    store, corpus, queries, ids = setup
    kept, _ = run_filter(store, corpus, queries, top_k=3, max_tokens=5)
    assert [r["doc_id"] for r in kept] == [ids[4], ids[1], ids[0]]  # the tie at -2 keeps generation order


def test_drop_copied_removes_queries_found_in_their_document(setup):
    store, corpus, queries, ids = setup
    kept, artifact = run_filter(store, corpus, queries, drop_copied=True)
    assert ids[4] not in [r["doc_id"] for r in kept] and artifact.summary["copied"] == 1
    assert filter_stage.copied("Bees MAKE", "bees make honey") and not filter_stage.copied("", "x")


def test_reranker_strategy_scores_query_with_its_source_document(setup, monkeypatch):
    store, corpus, queries, ids = setup
    docs = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(corpus.file("corpus.jsonl"))}
    calls = {}

    class Fake:
        def score(self, qs, ds):
            calls.setdefault("pairs", []).extend(zip(qs, ds, strict=True))
            return [0.1 * len(q) for q in qs]  # longer query, higher score

    def load_reranker(path, kind=None, *, device="cpu", dtype="float32", batch_size=32, max_length=512):
        calls["load"] = (path, device, dtype, batch_size, max_length)
        return Fake()

    fake = types.ModuleType("harness.models.rerankers")
    fake.load_reranker = load_reranker
    monkeypatch.setitem(sys.modules, "harness.models.rerankers", fake)
    monkeypatch.setattr("harness.models.loading.resolve", lambda ref, root, revision=None: f"/models/{ref}")
    kept, _ = run_filter(store, corpus, queries, strategy="reranker", model="castorini/monot5-3b-msmarco-10k",
                         model_revision="a" * 40, top_k=2, batch_size=4, max_length=300)
    assert calls["load"] == ("/models/castorini/monot5-3b-msmarco-10k", "cpu", "float32", 4, 300)
    by_query = dict(calls["pairs"])
    assert by_query["what is a bee"] == docs[ids[0]] and len(by_query) == 5
    assert [r["query"] for r in kept] == sorted(by_query, key=len, reverse=True)[:2]


def test_reranker_strategy_needs_a_model():
    with pytest.raises(ValueError, match="needs `model`"):
        filter_stage.Params(strategy="reranker")


def test_scores_key_ignores_reranker_settings():
    assert filter_stage.Params(batch_size=1).key_params() == filter_stage.Params(batch_size=64).key_params()


def test_reranker_strategy_with_tiny_monot5(setup, tmp_path_factory):
    from harness.models.tiny import materialize

    rerankers = pytest.importorskip("harness.models.rerankers")
    if not hasattr(rerankers, "load_reranker"):
        pytest.skip("harness.models.rerankers.load_reranker is not there yet")
    store, corpus, queries, _ = setup
    kept, _ = run_filter(store, corpus, queries, strategy="reranker", top_k=3,
                         model=str(materialize("tiny:t5", tmp_path_factory.getbasetemp() / "shared-models")),
                         max_tokens=5)
    assert len(kept) == 3 and all(0.0 <= r["score"] <= 1.0 for r in kept)
    assert [r["score"] for r in kept] == sorted((r["score"] for r in kept), reverse=True)
