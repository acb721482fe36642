"""Stage `retrieve`: the first-stage BM25 run (top k per evaluation query), as a TREC run file."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from harness.data import beir
from harness.data.catalog import get_dataset
from harness.data.trec import write_run
from harness.retrieval import backend
from harness.stages import Stage, StageParams


def search_threads() -> int:
    """Default search threads: the CPUs this process may use. Search results do not depend on the count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class Params(StageParams):
    retriever: Literal["pyserini", "bm25s"] = "pyserini"
    fields: Literal["flat", "multifield"] = "flat"
    k: int = Field(1000, ge=1)
    split: str | None = None  # None: the dataset's evaluation split
    # None: as the dataset requires (ArguAna and Quora drop the query's own document).
    remove_query: bool | None = None
    limit_queries: int | None = Field(None, ge=1)
    threads: int = Field(default_factory=search_threads, ge=1)  # how, not what: not in the key
    not_in_key = frozenset({"threads"})


def eval_queries(corpus, dataset: str, split: str | None, limit: int | None) -> dict[str, str]:
    """The queries of the evaluation split (judged ones), limited to a deterministic subset if asked."""
    split = split or get_dataset(dataset).split
    qrels = beir.read_qrels(corpus.file(f"qrels/{split}.tsv"))
    queries = beir.read_queries(corpus.file("queries.jsonl"))
    return {q: queries[q] for q in beir.limit_queries([q for q in qrels if q in queries], limit)}


def run(inputs: dict, params: Params, out, ctx) -> None:
    queries = eval_queries(inputs["corpus"], ctx.dataset, params.split, params.limit_queries)
    remove = get_dataset(ctx.dataset).remove_query if params.remove_query is None else params.remove_query
    hits = backend(params.retriever).search(
        inputs["index"].path / "index", queries, k=params.k, fields=params.fields, remove_query=remove,
        threads=params.threads,
    )
    write_run(hits, out.path / "run.trec", tag=f"bm25-{params.fields}")
    out.summary.update({"queries": len(queries), "hits": sum(map(len, hits.values())), "remove_query": remove})


# v2: bm25s ranks the documents tied with the k-th one by id (before: as numpy's argpartition left them).
STAGE = Stage(name="retrieve", version=2, kind="run", params=Params, run=run,
              inputs={"corpus": "corpus", "index": "index"}, own_inputs={"index": ("retriever", "fields")},
              published_kinds=("run",), publish_kind="run", judged=True)
