"""Stage `index`: a BM25 index of the corpus (pyserini/Lucene or bm25s), built once and shared."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.retrieval import backend
from harness.stages import Stage, StageParams
from harness.stages.retrieve import search_threads


class Params(StageParams):
    retriever: Literal["pyserini", "bm25s"] = "pyserini"
    fields: Literal["flat", "multifield"] = "flat"
    # How, not what (not in the key): either backend's search gives the same hits, scores and order from an
    # index built with any number of threads (ties are broken by document id, not by Lucene's doc number).
    # Default: the CPUs this process may use, as for search (benchmarks/bench_bm25.py: the fastest way).
    threads: int = Field(default_factory=search_threads, ge=1)
    not_in_key = frozenset({"threads"})


def run(inputs: dict, params: Params, out, ctx) -> None:
    corpus = inputs["corpus"]
    total = corpus.summary.get("documents")
    with ctx.bar(total, f"index ({params.retriever}, {params.fields})") as bar:
        # The backend reads the corpus artifact's file itself: Anserini indexes its lines as they are (no JSON
        # parsed in Python and written again), bm25s reads them in batches.
        info = backend(params.retriever).build_index(
            corpus.file("corpus.jsonl"), out.path / "index", params.fields, params.threads
        )
        bar.update(total or 0)
    out.summary.update(info)


STAGE = Stage(name="index", version=1, kind="index", params=Params, run=run, inputs={"corpus": "corpus"},
              include="input", units=lambda params, documents, queries: documents)
