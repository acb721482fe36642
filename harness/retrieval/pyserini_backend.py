"""Lucene BM25 through pyserini/Anserini: build a BEIR flat or multifield index and batch-search it.

The indexes are built exactly like pyserini's 2CR BEIR indexes ``beir-v1.0.0-<name>.flat`` / ``.multifield``
(Anserini regressions ``beir-v1.0.0-*.flat.yaml`` / ``*.multifield.yaml``): the BEIR corpus JSONL read by
Anserini's ``BeirFlatCollection`` (one ``contents`` field = title + "\\n" + text; the analyzer treats the newline
like a space) or ``BeirMultifieldCollection`` (``contents`` = text plus a ``title`` field, ``-fields title``),
``DefaultLuceneDocumentGenerator``, ``-storePositions -storeDocvectors -storeRaw``. Search is pyserini's
``LuceneSearcher`` with BM25 k1=0.9 b=0.4, as ``python -m pyserini.search.lucene --bm25 [--remove-query]
[--fields contents=1.0 title=1.0]``.

Indexing runs in-process (Anserini's ``IndexCollection`` through pyjnius, the JVM started once by
:mod:`harness.retrieval.java`), so no second JVM and no CLI parsing of our own arguments.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError
from harness.retrieval.java import anserini_jar, import_pyserini, java_class

FIELDS = ("flat", "multifield")
# Anserini collection class per index layout (what the 2CR BEIR indexes were built with).
_COLLECTION = {"flat": "BeirFlatCollection", "multifield": "BeirMultifieldCollection"}
# Query-time field weights of pyserini's `--fields contents=1.0 title=1.0` for the multifield indexes.
MULTIFIELD_WEIGHTS = {"contents": 1.0, "title": 1.0}
# Queries sent to Java per batch_search call: bounds the Java-side result map, does not change results.
_SEARCH_BATCH = 1024


def _check_fields(fields: str) -> None:
    if fields not in FIELDS:
        raise HarnessError(f"Unknown index fields {fields!r}: use one of {', '.join(FIELDS)}.")


def _write_beir_jsonl(docs: Iterable[tuple[str, str, str]], folder: Path, files: int) -> int:
    """Write docs as BEIR corpus JSONL ({"_id", "title", "text"}) round-robin into ``files`` files; the count."""
    folder.mkdir(parents=True)
    count = 0
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(open(folder / f"docs{i:02d}.jsonl", "w", encoding="utf-8")) for i in range(files)
        ]
        for count, (doc_id, title, text) in enumerate(docs, start=1):
            record = {"_id": str(doc_id), "title": title or "", "text": text or ""}
            handles[(count - 1) % files].write(json.dumps(record, ensure_ascii=False) + "\n")
    return count


def _versions() -> dict:
    """Anserini (from the jar name) and Lucene versions in use."""
    match = re.match(r"anserini-(.+)-fatjar\.jar$", anserini_jar().name)
    return {
        "anserini_version": match.group(1) if match else None,
        "lucene_version": str(java_class("org.apache.lucene.util.Version").LATEST.toString()),
    }


def build_index(docs: Iterable[tuple[str, str, str]], out_dir: Path, fields: str = "flat", threads: int = 1) -> dict:
    """Index (doc_id, title, text) docs into ``out_dir`` as a BEIR flat or multifield Lucene index; a summary.

    ``threads`` > 1 splits the collection into that many files indexed in parallel. Lucene numbers documents
    in the order they are added, so with several threads the order (and so the order of equal-score hits)
    may vary between builds; ``threads=1`` matches the 2CR indexes.
    """
    _check_fields(fields)
    if threads < 1:
        raise HarnessError(f"Indexing threads must be at least 1, got {threads}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HarnessError(f"Index directory {out_dir} already exists and is not empty: remove it or pick another.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    # Build next to out_dir and move into place at the end, so a failed build never leaves a half index.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        collection_dir = staging / "collection"
        written = _write_beir_jsonl(docs, collection_dir, threads)
        if written == 0:
            raise HarnessError(f"No documents to index into {out_dir}.")
        staged_index = staging / "index"
        argv = [
            "-collection", _COLLECTION[fields],
            "-input", str(collection_dir),
            "-index", str(staged_index),
            "-generator", "DefaultLuceneDocumentGenerator",
            "-threads", str(threads),
            "-storePositions", "-storeDocvectors", "-storeRaw",
            "-quiet",
        ]  # fmt: skip
        if fields == "multifield":
            argv += ["-fields", "title"]
        # Parse with Anserini's own args4j parser so the options mean exactly what they mean on its CLI.
        args = java_class("io.anserini.index.IndexCollection$Args")()
        jargv = java_class("java.util.ArrayList")()
        for arg in argv:
            jargv.add(arg)
        java_class("org.kohsuke.args4j.CmdLineParser")(args).parseArgument(jargv)
        indexer = java_class("io.anserini.index.IndexCollection")(args)
        indexer.run()
        counters = indexer.getCounters()
        counts = {
            name: int(getattr(counters, name).get())
            for name in ("indexed", "empty", "unindexable", "skipped", "errors")
        }
        accounted = counts["indexed"] + counts["empty"] + counts["skipped"] + counts["unindexable"]
        if counts["errors"] or accounted != written:
            raise HarnessError(
                f"Anserini indexed {counts['indexed']} of {written} documents with {counts['errors']} errors "
                f"while building {out_dir}: see the Java log above."
            )
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above; rename needs the name free
        staged_index.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    return {
        "documents": counts["indexed"],
        "empty": counts["empty"],  # e.g. multifield docs with an empty text, skipped as in the 2CR indexes
        "skipped": counts["skipped"] + counts["unindexable"],
        "fields": fields,
        "collection": _COLLECTION[fields],
        "threads": threads,
        "seconds": round(time.perf_counter() - started, 3),
        **_versions(),
    }


def search(
    index_dir: Path,
    queries: dict[str, str],
    k: int = 1000,
    fields: str = "flat",
    remove_query: bool = False,
    threads: int = 1,
    k1: float = 0.9,
    b: float = 0.4,
) -> dict[str, list[tuple[str, float]]]:
    """BM25 top-``k`` (doc_id, score) per query id, best first; queries without hits map to [].

    ``remove_query`` drops hits whose doc id equals the query id after retrieving ``k``, as pyserini's
    ``--remove-query`` does, so such a query gets ``k - 1`` hits.
    """
    _check_fields(fields)
    index_dir = Path(index_dir)
    if not (index_dir.is_dir() and any(index_dir.glob("segments_*"))):
        raise HarnessError(f"No Lucene index in {index_dir}: build it first.")
    lucene = import_pyserini("pyserini.search.lucene")
    searcher = lucene.LuceneSearcher(str(index_dir))
    try:
        searcher.set_bm25(k1, b)
        weights = MULTIFIELD_WEIGHTS if fields == "multifield" else {}
        qids = [str(qid) for qid in queries]
        texts = [queries[qid] for qid in queries]
        run: dict[str, list[tuple[str, float]]] = {}
        for start in range(0, len(qids), _SEARCH_BATCH):
            batch_ids = qids[start : start + _SEARCH_BATCH]
            batch_texts = texts[start : start + _SEARCH_BATCH]
            results = searcher.batch_search(batch_texts, batch_ids, k=k, threads=threads, fields=weights)
            for qid in batch_ids:
                hits = [(str(hit.docid), float(hit.score)) for hit in results.get(qid, [])]
                if remove_query:
                    hits = [hit for hit in hits if hit[0] != qid]
                run[qid] = hits  # Lucene already orders by score desc (ties by internal doc number)
    finally:
        searcher.close()
    return run
