"""Stage `index`: a BM25 index of the corpus (pyserini/Lucene or bm25s), built once and shared."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.data import beir
from harness.retrieval import backend
from harness.stages import Stage, StageParams


class Params(StageParams):
    retriever: Literal["pyserini", "bm25s"] = "pyserini"
    fields: Literal["flat", "multifield"] = "flat"
    threads: int = Field(1, ge=1)
    not_in_key = frozenset({"threads"})


def run(inputs: dict, params: Params, out, ctx) -> None:
    corpus = inputs["corpus"]
    total = corpus.summary.get("documents")
    with ctx.bar(total, f"index ({params.retriever}, {params.fields})") as bar:
        def docs():
            for doc in beir.iter_corpus(corpus.file("corpus.jsonl")):
                bar.update()
                yield doc.id, doc.title, doc.text

        info = backend(params.retriever).build_index(docs(), out.path / "index", params.fields, params.threads)
    out.summary.update(info)


STAGE = Stage(name="index", version=1, kind="index", params=Params, run=run)
