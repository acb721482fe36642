"""Stage `index`: a BM25 index of the corpus (pyserini/Lucene or bm25s), built once and shared, or pyserini's prebuilt
one."""

from __future__ import annotations

import logging
import shutil
from typing import Literal

from pydantic import Field

from harness.errors import HarnessError
from harness.retrieval import backend
from harness.stages import Stage, StageParams
from harness.stages.retrieve import search_threads

log = logging.getLogger(__name__)


class Params(StageParams):
    retriever: Literal["pyserini", "bm25s"] = "pyserini"
    fields: Literal["flat", "multifield"] = "flat"
    # How, not what (not in the key): either backend's search gives the same hits, scores and order from an
    # index built with any number of threads (ties are broken by document id, not by Lucene's doc number).
    # Default: the CPUs this process may use, as for search (benchmarks/bench_bm25.py: the fastest way).
    threads: int = Field(default_factory=search_threads, ge=1)
    # pyserini's prebuilt BEIR index of the dataset (`beir-v1.0.0-<name>.<fields>`), where it publishes one:
    # `fetch` takes it (an error if it cannot be had), `auto` takes it or builds locally if it cannot be had,
    # `never` builds locally. The runner sets it from --mode (regenerate: never). Not in the key: the prebuilt
    # index is the one built here from the same BEIR corpus with the same Anserini collection and analyzer
    # (pyserini checks its document, term and unique-term counts; tests/test_pyserini_backend.py checks that local
    # SciFact indexes pass that check, and that an index taken from pyserini's cache gives the local one's hits).
    prebuilt: Literal["fetch", "auto", "never"] = "auto"
    not_in_key = frozenset({"threads", "prebuilt"})


def _prebuilt(params: Params, dataset: str):
    """The folder of pyserini's prebuilt index to take, or None to build locally."""
    if params.retriever != "pyserini" or params.prebuilt == "never":
        return None
    from harness.retrieval import pyserini_backend

    name = pyserini_backend.prebuilt_name(dataset, params.fields)
    if name is None:
        return None
    try:
        return pyserini_backend.fetch_prebuilt(name)
    except HarnessError as exc:
        if params.prebuilt == "fetch":
            raise
        log.warning("%s Building the index locally instead.", exc)
        return None


def run(inputs: dict, params: Params, out, ctx) -> None:
    corpus = inputs["corpus"]
    total = corpus.summary.get("documents")
    prebuilt = _prebuilt(params, ctx.dataset)
    if prebuilt is not None:
        from harness.retrieval import pyserini_backend

        shutil.copytree(prebuilt, out.path / "index")
        info = {"fields": params.fields, "prebuilt": prebuilt.name, **pyserini_backend.versions()}
        out.summary.update({"documents": pyserini_backend.index_stats(out.path / "index")["documents"], **info})
        return
    with ctx.bar(total, f"index ({params.retriever}, {params.fields})") as bar:
        # The backend reads the corpus artifact's file itself.
        info = backend(params.retriever).build_index(
            corpus.file("corpus.jsonl"), out.path / "index", params.fields, params.threads
        )
        bar.update(total or 0)
    out.summary.update(info)


# v2: bm25s through its own BM25.index (the same files), pyserini through its indexer entry point; the summary
# says which pyserini built the index, or which prebuilt index it is.
STAGE = Stage(name="index", version=2, kind="index", params=Params, run=run, inputs={"corpus": "corpus"},
              include="input", units=lambda params, documents, queries: documents)
