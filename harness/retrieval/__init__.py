"""First-stage retrieval backends: pyserini (Lucene, needs Java 21) and bm25s (pure Python)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from harness.errors import HarnessError, close_matches

BACKENDS = {"pyserini": "harness.retrieval.pyserini_backend", "bm25s": "harness.retrieval.bm25s_backend"}


def backend(name: str) -> ModuleType:
    """The module of a BM25 backend; each has `build_index(docs, out_dir, fields)` and `search(...)`."""
    if name not in BACKENDS:
        raise HarnessError(f"Unknown retriever {name!r}.{close_matches(name, BACKENDS)} Known: {', '.join(BACKENDS)}.")
    return import_module(BACKENDS[name])
