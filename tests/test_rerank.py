"""The `rerank` stage: reranks the top `depth`, keeps BM25's order beneath, resumes by shard."""

from __future__ import annotations

import itertools

import pytest

from harness.data.trec import read_run
from tests.test_negatives import build_stage, sample_corpus


@pytest.fixture
def first_stage(store):
    corpus = sample_corpus(store)
    index = build_stage(store, "index", {"retriever": "bm25s"}, {"corpus": corpus})
    run = build_stage(store, "retrieve", {"retriever": "bm25s", "k": 30, "limit_queries": 6},
                      {"corpus": corpus, "index": index})
    return corpus, run


def test_merge_reranks_the_head_and_keeps_the_tail():
    from harness.stages.rerank import merge

    hits = [("a", 9.0), ("b", 8.0), ("c", 7.0), ("d", 6.0), ("e", 5.0)]
    merged = merge(hits, {"a": 0.1, "b": 0.9, "c": 0.1}, depth=3)
    assert [d for d, _ in merged] == ["b", "a", "c", "d", "e"]  # a/c tie: first-stage order
    scores = [s for _, s in merged]
    assert all(x > y for x, y in itertools.pairwise(scores))


def test_rerank_head_by_model_and_tail_in_bm25_order(store, first_stage, tmp_path_factory):
    from harness.data import beir
    from harness.models.rerankers import load_reranker
    from harness.models.tiny import materialize

    corpus, first = first_stage
    model = str(materialize("tiny:t5", tmp_path_factory.getbasetemp() / "tiny-models"))
    art = build_stage(store, "rerank", {"model": model, "depth": 10, "max_length": 128, "shard_queries": 4},
                      {"corpus": corpus, "run": first})
    bm25, reranked = read_run(first.file("run.trec")), read_run(art.file("run.trec"))
    assert sorted(reranked) == sorted(bm25) and art.summary["queries"] == 6
    texts = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(corpus.file("corpus.jsonl"))}
    queries = beir.read_queries(corpus.file("queries.jsonl"))
    reranker = load_reranker(model, max_length=128)
    for qid, hits in bm25.items():
        order = [d for d, _ in reranked[qid]]
        head = [d for d, _ in hits[:10]]
        assert order[10:] == [d for d, _ in hits[10:]]  # beyond depth: BM25's order
        assert sorted(order[:10]) == sorted(head)
        scores = reranker.score([queries[qid]] * 10, [texts[d] for d in order[:10]])
        assert scores == sorted(scores, reverse=True)  # the head follows the model's scores
    rows = list(beir.read_jsonl(art.file("scores.jsonl")))
    assert len(rows) == 6 and all(len(r["scores"]) == 10 for r in rows)


def test_killed_rerank_resumes_at_the_next_shard(store, first_stage, tmp_path_factory, monkeypatch):
    from harness.models import rerankers

    corpus, first = first_stage
    model = str(materialize_bert(tmp_path_factory))
    params = {"model": model, "depth": 5, "max_length": 64, "shard_queries": 2}
    calls = []
    real_score = rerankers.Reranker.score

    def score_then_die(self, queries, docs):
        calls.append(len(queries))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_score(self, queries, docs)

    monkeypatch.setattr(rerankers.Reranker, "score", score_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_stage(store, "rerank", params, {"corpus": corpus, "run": first})
    calls.clear()
    monkeypatch.setattr(rerankers.Reranker, "score", lambda self, q, d: calls.append(len(q)) or real_score(self, q, d))
    art = build_stage(store, "rerank", params, {"corpus": corpus, "run": first})
    assert calls == [10, 10]  # shards 2 and 3 of 3 (2 queries × 5 documents each)
    assert len(read_run(art.file("run.trec"))) == 6


def materialize_bert(tmp_path_factory):
    from harness.models.tiny import materialize

    return materialize("tiny:bert", tmp_path_factory.getbasetemp() / "tiny-models")


def test_rerank_without_a_model_says_what_to_set(store, first_stage):
    from harness.errors import HarnessError

    corpus, first = first_stage
    with pytest.raises(HarnessError, match="stages.rerank.model"):
        build_stage(store, "rerank", {"depth": 5}, {"corpus": corpus, "run": first})
