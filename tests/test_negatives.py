"""The `negatives` stage: BM25 hard negatives that never hold the query's own document, aligned ids, seeded draws."""

from __future__ import annotations

import pytest

from harness.data import beir


def build_stage(store, name: str, params: dict, inputs: dict, dataset: str = "sample"):
    """Build one stage's artifact in `store` as the runner does (key, lock, manifest); returns the artifact."""
    from harness.stages import Context, get_stage, parse_params
    from harness.store import artifact_key

    stage = get_stage(name)
    p = parse_params(name, params, "test")
    input_keys = {role: a.key for role, a in sorted(inputs.items())}
    key = artifact_key(name, stage.version, p.key_params(), input_keys)
    ctx = Context(store, dataset, "cpu", progress=False)
    artifact, _ = store.get_or_build(key, lambda out: stage.run(inputs, p, out, ctx), kind=stage.kind, stage=name,
                                     params=p.key_params(), inputs=input_keys, resumable=stage.resumable)
    return artifact


def rows_artifact(store, key: str, name: str, rows: list[dict]):
    """A hand-made artifact holding one JSON-lines file (e.g. a filter artifact's `queries.jsonl`)."""
    artifact, _ = store.get_or_build(key, lambda out: beir.write_jsonl(rows, out.path / name), kind="queries",
                                     stage="filter", params={}, inputs={})
    return artifact


def sample_corpus(store):
    return build_stage(store, "corpus", {"dataset": "sample", "source": "builtin", "fingerprint": "test"}, {})


def synthetic_queries(corpus_artifact, n: int = 12) -> list[dict]:
    """Filter-artifact rows: one query per document made of its first words (so BM25 ranks it high)."""
    docs = list(beir.iter_corpus(corpus_artifact.file("corpus.jsonl")))[:n]
    return [{"query_id": f"syn-{d.id}", "doc_id": d.id, "query": " ".join(d.text.split()[:12]), "log_probs": [-0.5],
             "n_tokens": 3, "example_ids": [], "score": -0.5} for d in docs]


@pytest.fixture
def twin_corpus(store):
    """The sample corpus plus an exact duplicate of document d0000 (BEIR corpora hold such twins)."""
    sample = sample_corpus(store)
    docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in beir.iter_corpus(sample.file("corpus.jsonl"))]
    docs.append({**docs[0], "_id": "d0000-twin"})

    def write(out):
        beir.write_jsonl(docs, out.path / "corpus.jsonl")
        for name in ("queries.jsonl", "qrels/test.tsv"):
            (out.path / name).parent.mkdir(parents=True, exist_ok=True)
            (out.path / name).write_bytes(sample.file(name).read_bytes())

    corpus, _ = store.get_or_build("corpus-twins", write, kind="corpus", stage="corpus", params={}, inputs={})
    index = build_stage(store, "index", {"retriever": "bm25s"}, {"corpus": corpus})
    return corpus, index


def test_negatives_are_bm25_hits_never_the_positive_nor_its_twin(store, twin_corpus):
    from harness.retrieval import bm25s_backend

    corpus, index = twin_corpus
    rows = synthetic_queries(corpus)
    rows.insert(3, {**rows[3], "query_id": "syn-empty", "query": "  "})  # an empty query must not shift the others
    queries = rows_artifact(store, "filter-a", "queries.jsonl", rows)
    triples_art = build_stage(store, "negatives", {"retriever": "bm25s", "depth": 20, "n_negatives": 5},
                              {"corpus": corpus, "queries": queries, "index": index})
    triples = list(beir.read_jsonl(triples_art.file("triples.jsonl")))
    by_id = {r["query_id"]: r for r in rows}
    hits = bm25s_backend.search(index.path / "index", {r["query_id"]: r["query"] for r in rows if r["query"].strip()},
                                k=20)
    assert len(triples) == 5 * (len(rows) - 1)
    assert "syn-empty" not in {t["query_id"] for t in triples}
    assert triples_art.summary["empty"] == 1
    for t in triples:
        row = by_id[t["query_id"]]
        assert (t["query"], t["pos_id"]) == (row["query"], row["doc_id"])  # ids stay aligned
        assert t["neg_id"] != t["pos_id"] and t["negative"] != t["positive"]
        assert t["neg_id"] in {d for d, _ in hits[t["query_id"]]}
    # The positives are BM25's best hits (the exclusion matters), and d0000's exact twin is never its negative.
    assert all(hits[r["query_id"]][0][0].startswith(r["doc_id"]) for r in rows if r["query"].strip())
    assert "d0000-twin" not in {t["neg_id"] for t in triples if t["pos_id"] == "d0000"}


def test_draws_are_seeded_per_query(store):
    corpus = sample_corpus(store)
    index = build_stage(store, "index", {"retriever": "bm25s"}, {"corpus": corpus})
    rows = synthetic_queries(corpus, 10)

    def negatives(key, rows, **params):
        queries = rows_artifact(store, key, "queries.jsonl", rows)
        art = build_stage(store, "negatives", {"retriever": "bm25s", "depth": 50, "n_negatives": 2, **params},
                          {"corpus": corpus, "queries": queries, "index": index})
        return {(t["query_id"], t["neg_id"]) for t in beir.read_jsonl(art.file("triples.jsonl"))}

    full = negatives("filter-all", rows)
    assert negatives("filter-all-again", rows) == full
    # A query's negatives don't depend on the other queries (nor their order).
    assert negatives("filter-half", rows[::-2]) == {p for p in full if p[0] in {r["query_id"] for r in rows[::-2]}}
    assert negatives("filter-seed2", rows, seed=2) != full


def test_top_sampling_takes_the_best_ranked_non_positive():
    from harness.stages.negatives import pick_negatives, query_rng

    hits = ["a", "pos", "twin", "b", "c"]
    assert pick_negatives(hits, "pos", {"pos", "twin"}, 2, "top", query_rng(1, "q", "x")) == ["a", "b"]
    drawn = pick_negatives(hits, "pos", {"pos", "twin"}, 10, "random", query_rng(1, "q", "x"))
    assert sorted(drawn) == ["a", "b", "c"]


def test_read_published_triples(tmp_path):
    from harness.errors import HarnessError
    from harness.stages.negatives import read_published_triples

    path = tmp_path / "triples_train_v2.tsv"
    path.write_text("what is tea\tTea is a drink.\tCoffee beans.\n\nwhy bees\tBees pollinate.\tRocks.\n")
    rows = list(read_published_triples(path))
    assert rows[1] == {"query_id": None, "query": "why bees", "pos_id": None, "neg_id": None,
                       "positive": "Bees pollinate.", "negative": "Rocks."}
    path.write_text("only\ttwo\n")
    with pytest.raises(HarnessError, match="line 1"):
        list(read_published_triples(path))


def _in_memory_triples(corpus_path, rows, index_dir, depth, n_negatives, seed, sampling) -> list[dict]:
    """The stage's first implementation (whole corpus in memory, twins by text), the reference for streaming."""
    from harness.retrieval import bm25s_backend
    from harness.stages.negatives import pick_negatives, query_rng

    texts = {d.id: beir.doc_text(d.title, d.text) for d in beir.iter_corpus(corpus_path)}
    by_text: dict[str, set[str]] = {}
    for doc_id, text in texts.items():
        by_text.setdefault(text.strip(), set()).add(doc_id)
    usable = [n for n, r in enumerate(rows) if str(r.get("query", "")).strip() and r.get("doc_id") in texts]
    hits = bm25s_backend.search(index_dir, {str(n): rows[n]["query"] for n in usable}, k=depth)
    out = []
    for n in usable:
        row, positive = rows[n], rows[n]["doc_id"]
        query_id = row.get("query_id") or f"syn-{positive}"
        for negative in pick_negatives([d for d, _ in hits.get(str(n), [])], positive, by_text[texts[positive].strip()],
                                       n_negatives, sampling, query_rng(seed, query_id, row["query"])):
            out.append({"query_id": query_id, "query": row["query"], "pos_id": positive, "neg_id": negative,
                        "positive": texts[positive], "negative": texts[negative]})
    return out


@pytest.mark.parametrize("sampling", ["random", "top"])
def test_streaming_stage_writes_the_same_bytes_as_the_in_memory_reference(store, twin_corpus, tmp_path, sampling):
    corpus, index = twin_corpus
    rows = synthetic_queries(corpus, 30)
    rows.insert(2, {**rows[2], "query_id": "syn-empty", "query": " "})
    rows.insert(4, {**rows[4], "query_id": "syn-unknown", "doc_id": "no-such-document"})
    rows.insert(6, {k: v for k, v in rows[0].items() if k != "query_id"})  # a row without an id: syn-<doc_id>
    queries = rows_artifact(store, f"filter-ref-{sampling}", "queries.jsonl", rows)
    art = build_stage(store, "negatives", {"retriever": "bm25s", "depth": 30, "n_negatives": 3, "sampling": sampling},
                      {"corpus": corpus, "queries": queries, "index": index})
    expected = _in_memory_triples(corpus.file("corpus.jsonl"), rows, index.path / "index", 30, 3, 1, sampling)
    beir.write_jsonl(expected, tmp_path / "expected.jsonl")
    assert art.file("triples.jsonl").read_bytes() == (tmp_path / "expected.jsonl").read_bytes()
    assert (art.summary["empty"], art.summary["unknown_doc"], art.summary["triples"]) == (1, 1, len(expected))


def test_search_threads_default_to_the_cpus_and_stay_out_of_the_key():
    import os

    from harness.stages import index, negatives, retrieve

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert negatives.Params().threads == retrieve.Params().threads == index.Params().threads == cpus
    assert "threads" not in index.Params().key_params()
    assert "threads" not in negatives.Params().key_params() and "threads" not in retrieve.Params().key_params()
    assert negatives.Params(threads=1).key_params() == negatives.Params(threads=8).key_params()
