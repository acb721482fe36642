"""Lucene BM25 through pyserini: build a BEIR flat or multifield index (or take pyserini's prebuilt one), search it.

The indexes are built as pyserini's 2CR BEIR indexes ``beir-v1.0.0-<name>.flat`` / ``.multifield`` are
(Anserini regressions ``beir-v1.0.0-*.flat.yaml`` / ``*.multifield.yaml``), by pyserini's indexer entry point
(``python -m pyserini.index.lucene``, which calls Anserini's ``IndexCollection.main``), run in this process: the
BEIR corpus JSONL read by ``BeirFlatCollection`` (one ``contents`` field = title + "\\n" + text) or
``BeirMultifieldCollection`` (``contents`` = text plus a ``title`` field, ``-fields title``),
``DefaultLuceneDocumentGenerator``, ``-storePositions -storeDocvectors -storeRaw``. Search is Anserini's search
entry point as its BEIR regressions run it (``SearchCollection.main``: ``-topicReader TsvString -bm25 -bm25.k1 0.9
-bm25.b 0.4 -hits k [-removeQuery] [-fields contents=1.0 title=1.0]``), in this process, writing the TREC run in
Java; it gives the run file of pyserini's ``LuceneSearcher.batch_search`` (``python -m pyserini.search.lucene
--bm25``), kept here as :func:`batch_search`, the tests' oracle, byte for byte, without importing
``pyserini.search.lucene`` (torch, transformers) or building a Java object per hit (BENCHMARKS.md, BM25).
pyserini and Anserini's classes are reached through :mod:`harness.retrieval.java`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError
from harness.retrieval.java import import_pyserini, java_class

FIELDS = ("flat", "multifield")
# Anserini collection class per index layout (what the 2CR BEIR indexes were built with).
_COLLECTION = {"flat": "BeirFlatCollection", "multifield": "BeirMultifieldCollection"}
# Query-time field weights of pyserini's `--fields contents=1.0 title=1.0` for the multifield indexes.
MULTIFIELD_WEIGHTS = {"contents": 1.0, "title": 1.0}


def _check_fields(fields: str) -> None:
    if fields not in FIELDS:
        raise HarnessError(f"Unknown index fields {fields!r}: use one of {', '.join(FIELDS)}.")


def _write_collection(docs: Iterable[tuple[str, str, str]] | Path, folder: Path, files: int) -> int:
    """Write the collection Anserini indexes: BEIR corpus JSONL lines, round-robin into ``files`` files (Anserini
    indexes one file per thread); the count. A corpus.jsonl path (as the corpus stage writes it) is copied line by
    line, (doc_id, title, text) triples are written as ``{"_id", "title", "text"}``."""
    folder.mkdir(parents=True)
    count = 0
    with contextlib.ExitStack() as stack:
        if isinstance(docs, Path):
            lines: Iterable[bytes] = (line.rstrip(b"\n") + b"\n" for line in stack.enter_context(open(docs, "rb"))
                                      if not line.isspace())
        else:
            lines = (json.dumps({"_id": str(i), "title": title or "", "text": text or ""}, ensure_ascii=False).encode()
                     + b"\n" for i, title, text in docs)
        handles = [stack.enter_context(open(folder / f"docs{i:02d}.jsonl", "wb")) for i in range(files)]
        for count, line in enumerate(lines, start=1):
            handles[(count - 1) % files].write(line)
    return count


def index_stats(index_dir: Path) -> dict:
    """pyserini's statistics of a Lucene index (documents, non_empty_documents, unique_terms, total_terms)."""
    return dict(import_pyserini("pyserini.index.lucene").LuceneIndexReader(str(index_dir)).stats())


def build_index(
    docs: Iterable[tuple[str, str, str]] | Path, out_dir: Path, fields: str = "flat", threads: int = 1
) -> dict:
    """Index (doc_id, title, text) docs, or a corpus.jsonl, into ``out_dir`` as a BEIR flat or multifield Lucene
    index; a summary. ``threads`` > 1 indexes that many files in parallel: Lucene numbers the documents in another
    order, but the hits, scores and order of :func:`search` do not change (equal scores are ordered by id)."""
    _check_fields(fields)
    if threads < 1:
        raise HarnessError(f"Indexing threads must be at least 1, got {threads}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HarnessError(f"Index directory {out_dir} already exists and is not empty: remove it or pick another.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    collection = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.collection-", dir=out_dir.parent))
    try:
        written = _write_collection(docs, collection / "docs", threads)
        if written == 0:
            raise HarnessError(f"No documents to index into {out_dir}.")
        args = ["-collection", _COLLECTION[fields], "-input", str(collection / "docs"), "-index", str(out_dir),
                "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads),
                "-storePositions", "-storeDocvectors", "-storeRaw", "-quiet"]
        if fields == "multifield":
            args += ["-fields", "title"]
        java_class("io.anserini.index.IndexCollection").main(args)  # what `python -m pyserini.index.lucene` runs
    finally:
        shutil.rmtree(collection, ignore_errors=True)
    if not any(out_dir.glob("segments_*")):
        raise HarnessError(f"Anserini wrote no index into {out_dir}: see its log above.")
    stats = index_stats(out_dir)
    # Anserini skips documents with nothing to index (e.g. multifield documents with an empty text), as in 2CR.
    return {"documents": stats["documents"], "skipped": written - stats["documents"], "fields": fields,
            "collection": _COLLECTION[fields], **versions()}


def versions() -> dict:
    """The pyserini and Lucene versions in use."""
    from importlib.metadata import version

    return {"pyserini_version": version("pyserini"),
            "lucene_version": str(java_class("org.apache.lucene.util.Version").LATEST.toString())}


def prebuilt_name(dataset: str, fields: str) -> str | None:
    """The name of pyserini's prebuilt index of the BEIR dataset with ``fields``, None where it publishes none."""
    name = f"beir-v1.0.0-{dataset.replace('/', '-')}.{fields}"
    return name if name in import_pyserini("pyserini.prebuilt_index_info").TF_INDEX_INFO else None


def fetch_prebuilt(name: str) -> Path:
    """pyserini's prebuilt index ``name``, in pyserini's cache (``PYSERINI_CACHE``, downloaded there unless it is
    there already), checked against pyserini's published statistics; HarnessError if it cannot be had."""
    util = import_pyserini("pyserini.util")
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} and not util.check_downloaded(name):
        raise HarnessError(f"pyserini's prebuilt index {name} is not in pyserini's cache and HF_HUB_OFFLINE is set: "
                           "unset it to download the index, or build it locally with --mode regenerate.")
    try:
        path = Path(util.download_prebuilt_index(name, verbose=False))
        import_pyserini("pyserini.index.lucene").LuceneIndexReader(str(path)).validate(name)
    except (ValueError, OSError, AssertionError) as exc:  # pyserini's download and check errors
        raise HarnessError(f"Could not get pyserini's prebuilt index {name} ({exc}): check the network, "
                           "or build the index locally with --mode regenerate.") from exc
    return path


def _check_search(index_dir: Path, threads: int, fields: str) -> None:
    _check_fields(fields)
    if threads < 1:
        raise HarnessError(f"Search threads must be at least 1, got {threads}.")
    if not (index_dir.is_dir() and any(index_dir.glob("segments_*"))):
        raise HarnessError(f"No Lucene index in {index_dir}: build it first.")


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
    """BM25 top-``k`` (doc_id, score) per query id, best first, from Anserini's ``SearchCollection`` command line
    (as its BEIR regressions run it) in this process; queries without hits map to []. The hits and their order
    are :func:`batch_search`'s; the scores are as Anserini writes them into its run (6 decimals). ``remove_query``
    drops hits whose doc id equals the query id after retrieving ``k`` (Anserini's ``-removeQuery``, as pyserini's
    ``--remove-query``), so such a query gets ``k - 1`` hits."""
    index_dir = Path(index_dir)
    _check_search(index_dir, threads, fields)
    for qid in queries:
        if not str(qid) or any(c.isspace() for c in str(qid)):
            raise HarnessError(f"Query id {qid!r} is empty or holds whitespace: fix the queries file.")
    with tempfile.TemporaryDirectory(prefix="harness-bm25-") as tmp:
        topics, output = Path(tmp) / "topics.tsv", Path(tmp) / "run.trec"
        # Tabs and line breaks are whitespace to the analyzer: spaces give the same query terms in a TSV line.
        # A query with no text is left out (Anserini finds no terms in it either).
        texts = {str(qid): " ".join(str(text).split()) for qid, text in queries.items()}
        topics.write_text("".join(f"{qid}\t{text}\n" for qid, text in texts.items() if text), encoding="utf-8")
        args = ["-index", str(index_dir), "-topics", str(topics), "-topicReader", "TsvString", "-output", str(output),
                "-bm25", "-bm25.k1", str(k1), "-bm25.b", str(b), "-hits", str(k), "-threads", str(threads), "-quiet"]
        if fields == "multifield":
            args += ["-fields", *(f"{field}={weight}" for field, weight in MULTIFIELD_WEIGHTS.items())]
        if remove_query:
            args.append("-removeQuery")
        run: dict[str, list[tuple[str, float]]] = {qid: [] for qid in texts}
        if any(texts.values()):
            java_class("io.anserini.search.SearchCollection").main(args)
            if not output.is_file():
                raise HarnessError(f"Anserini's SearchCollection wrote no run for {index_dir}: see its log above.")
            with open(output, encoding="utf-8") as fh:
                for line in fh:  # "qid Q0 docid rank score tag", ranked; a doc id may hold spaces
                    qid, rest = line.rstrip("\n").split(" ", 1)
                    docid, _, score, _ = rest.removeprefix("Q0 ").rsplit(" ", 3)
                    run[qid].append((docid, float(score)))
    return run


def batch_search(
    index_dir: Path,
    queries: dict[str, str],
    k: int = 1000,
    fields: str = "flat",
    remove_query: bool = False,
    threads: int = 1,
    k1: float = 0.9,
    b: float = 0.4,
) -> dict[str, list[tuple[str, float]]]:
    """BM25 top-``k`` (doc_id, score) per query id, best first, from pyserini's ``LuceneSearcher.batch_search``
    (the oracle the tests hold :func:`search` to);
    queries without hits map to []. ``remove_query`` drops hits whose doc id equals the query id after retrieving
    ``k``, as pyserini's ``--remove-query`` does, so such a query gets ``k - 1`` hits."""
    index_dir = Path(index_dir)
    _check_search(index_dir, threads, fields)
    searcher = import_pyserini("pyserini.search.lucene").LuceneSearcher(str(index_dir))
    try:
        searcher.set_bm25(k1, b)
        qids = [str(qid) for qid in queries]
        results = searcher.batch_search(list(queries.values()), qids, k=k, threads=threads,
                                        fields=MULTIFIELD_WEIGHTS if fields == "multifield" else {})
        run = {}
        for qid in qids:
            hits = [(str(hit.docid), float(hit.score)) for hit in results.get(qid, [])]
            run[qid] = [hit for hit in hits if hit[0] != qid] if remove_query else hits
        return run
    finally:
        searcher.close()
