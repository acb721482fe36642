"""Lucene BM25 through pyserini/Anserini: build a BEIR flat or multifield index and batch-search it.

The indexes are built exactly like pyserini's 2CR BEIR indexes ``beir-v1.0.0-<name>.flat`` / ``.multifield``
(Anserini regressions ``beir-v1.0.0-*.flat.yaml`` / ``*.multifield.yaml``): the BEIR corpus JSONL read by
Anserini's ``BeirFlatCollection`` (one ``contents`` field = title + "\\n" + text; the analyzer treats the newline
like a space) or ``BeirMultifieldCollection`` (``contents`` = text plus a ``title`` field, ``-fields title``),
``DefaultLuceneDocumentGenerator``, ``-storePositions -storeDocvectors -storeRaw``. Search gives the hits and
scores of pyserini's ``LuceneSearcher`` with BM25 k1=0.9 b=0.4, as ``python -m pyserini.search.lucene --bm25
[--remove-query] [--fields contents=1.0 title=1.0]``, but calls the Java classes that searcher wraps directly
(see :class:`_LuceneBM25`): importing ``pyserini.search.lucene`` costs tens of seconds (it pulls torch,
transformers, openai...), and its searcher loads every hit's stored document to read its id.

Indexing and search run in-process (Anserini's classes through pyjnius, the JVM started once by
:mod:`harness.retrieval.java`), so no second JVM, no CLI parsing of our own arguments, and no pyserini import.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from harness.errors import HarnessError
from harness.retrieval.java import anserini_jar, java_class

FIELDS = ("flat", "multifield")
# Anserini collection class per index layout (what the 2CR BEIR indexes were built with).
_COLLECTION = {"flat": "BeirFlatCollection", "multifield": "BeirMultifieldCollection"}
# Query-time field weights of pyserini's `--fields contents=1.0 title=1.0` for the multifield indexes.
MULTIFIELD_WEIGHTS = {"contents": 1.0, "title": 1.0}


def _check_fields(fields: str) -> None:
    if fields not in FIELDS:
        raise HarnessError(f"Unknown index fields {fields!r}: use one of {', '.join(FIELDS)}.")


def _write_collection(docs: Iterable[tuple[str, str, str]] | Path, folder: Path, files: int) -> int:
    """Write the collection Anserini indexes: BEIR corpus JSONL lines, round-robin into ``files`` files; the count.

    ``docs`` is an iterable of (doc_id, title, text), each written as ``{"_id", "title", "text"}``, or the path of
    a corpus.jsonl whose lines already are exactly that, as the corpus stage writes them (``beir.write_jsonl``):
    its lines are copied as they are, the same bytes without parsing and writing JSON again.
    """
    folder.mkdir(parents=True)
    count = 0
    with contextlib.ExitStack() as stack:
        if isinstance(docs, Path):
            if docs.suffix == ".gz":
                raise HarnessError(f"{docs}: give build_index the documents of a gzipped corpus, not its path.")
            lines: Iterable[bytes] = (
                line if line.endswith(b"\n") else line + b"\n"
                for line in stack.enter_context(open(docs, "rb"))
                if not line.isspace()
            )
        else:
            lines = (
                json.dumps({"_id": str(doc_id), "title": title or "", "text": text or ""}, ensure_ascii=False).encode()
                + b"\n"
                for doc_id, title, text in docs
            )
        handles = [stack.enter_context(open(folder / f"docs{i:02d}.jsonl", "wb")) for i in range(files)]
        for count, line in enumerate(lines, start=1):
            handles[(count - 1) % files].write(line)
    return count


def _versions() -> dict:
    """Anserini (from the jar name) and Lucene versions in use."""
    match = re.match(r"anserini-(.+)-fatjar\.jar$", anserini_jar().name)
    return {
        "anserini_version": match.group(1) if match else None,
        "lucene_version": str(java_class("org.apache.lucene.util.Version").LATEST.toString()),
    }


def build_index(
    docs: Iterable[tuple[str, str, str]] | Path, out_dir: Path, fields: str = "flat", threads: int = 1
) -> dict:
    """Index (doc_id, title, text) docs, or a corpus.jsonl as the corpus stage writes it (see
    :func:`_write_collection`), into ``out_dir`` as a BEIR flat or multifield Lucene index; a summary.

    ``threads`` > 1 splits the collection into that many files indexed in parallel. Lucene then numbers the
    documents in another order than ``threads=1`` (which matches the 2CR indexes), but the hits, scores and
    order that :func:`search` gives do not change: scores use index-wide statistics, and equal scores are
    ordered by document id, not number (Lucene 9 indexes, see :class:`_LuceneBM25`).
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
        written = _write_collection(docs, collection_dir, threads)
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


class _LuceneBM25:
    """Anserini's ``SimpleSearcher`` BM25 search, rebuilt from its parts so hits carry only their ids.

    ``SimpleSearcher._search`` (Anserini 1.7.1, what pyserini's ``LuceneSearcher.batch_search`` calls) does:
    ``BagOfWordsQueryGenerator.buildQuery`` ("contents", or the field->boost map for multifield) with
    ``IndexCollection.DEFAULT_ANALYZER``; an ``IndexSearcher`` with ``BM25Similarity(k1, b)``; then for an
    index written by Lucene 9 (``"lucene.version=9"`` in the reader's description) the top k sorted by score,
    ties by the ``id`` doc value (``BREAK_SCORE_TIES_BY_DOCID``), then ``ScoreTiesAdjusterReranker``
    (scores rounded to 4 decimals, tied scores lowered by 1e-6 steps); for older indexes the plain top k
    (ties by Lucene's doc number) with raw scores. It then loads every hit's whole stored document
    (``StoredFields.document``, a block decompression per hit) only to read its ``id``: at 1,000 hits per query
    that is nearly all the time. Here the id comes from the sort values (the ``id`` doc values the index
    already holds), and each query's hits cross into Python as one string (``Arrays.toString`` of the hits,
    composed with the field getter as one ``MethodHandle`` so that pyjnius never converts the array).
    """

    def __init__(self, index_dir: Path, fields: str, k1: float, b: float):
        paths = java_class("java.nio.file.Paths")
        directory = java_class("org.apache.lucene.store.FSDirectory").open(paths.get(str(index_dir)))
        self.reader = java_class("org.apache.lucene.index.DirectoryReader").open(directory)
        self.searcher = java_class("org.apache.lucene.search.IndexSearcher")(
            self.reader, signature="(Lorg/apache/lucene/index/IndexReader;)V"
        )
        self.searcher.setSimilarity(java_class("org.apache.lucene.search.similarities.BM25Similarity")(k1, b))
        self.analyzer = java_class("io.anserini.index.IndexCollection").DEFAULT_ANALYZER
        self.generator = java_class("io.anserini.search.query.BagOfWordsQueryGenerator")()
        if fields == "multifield":
            # A java.util.HashMap of java.lang.Float, as pyserini passes: its iteration order fixes the order of
            # the per-field clauses, and so the order in which their scores are summed.
            self.field = java_class("java.util.HashMap")()
            float_class = java_class("java.lang.Float")
            for name, boost in MULTIFIELD_WEIGHTS.items():
                self.field.put(name, float_class(boost))
        else:
            self.field = "contents"
        # SimpleSearcher's test for its backwardsCompatibilityLucene8 mode, word for word.
        self.adjust_ties = "lucene.version=9" in str(self.reader.toString())
        sort_class = java_class("org.apache.lucene.search.Sort")
        sort_field = java_class("org.apache.lucene.search.SortField")
        if self.adjust_ties:
            self.sort = java_class("io.anserini.search.SimpleSearcher").BREAK_SCORE_TIES_BY_DOCID
        else:
            # Same order as IndexSearcher.search(query, k) (score, then doc number); the id only rides along.
            self.sort = sort_class(
                [sort_field.FIELD_SCORE, sort_field.FIELD_DOC, sort_field("id", sort_field.Type.STRING_VAL)]
            )
        self.to_text = _hits_to_text()
        self.array_list = java_class("java.util.ArrayList")

    def hits_text(self, query: str, k: int) -> str:
        """The top-``k`` hits of one query as ``Arrays.toString`` of Lucene's ``FieldDoc``s (runs in any thread)."""
        top = self.searcher.search(self.generator.buildQuery(self.field, self.analyzer, query), k, self.sort, True)
        args = self.array_list()
        args.add(top)
        return self.to_text.invokeWithArguments(args)

    def close(self) -> None:
        self.reader.close()


@functools.cache
def _hits_to_text():
    """A ``MethodHandle`` (TopDocs) -> String: ``Arrays.toString(topDocs.scoreDocs)``, all on the Java side."""
    forname = java_class("java.lang.Class").forName
    method_type = java_class("java.lang.invoke.MethodType")
    handles = java_class("java.lang.invoke.MethodHandles")
    lookup = handles.publicLookup()
    getter = lookup.unreflectGetter(forname("org.apache.lucene.search.TopDocs").getField("scoreDocs"))
    to_string = lookup.findStatic(
        forname("java.util.Arrays"), "toString",
        method_type.methodType(forname("java.lang.String"), forname("[Ljava.lang.Object;")),
    ).asType(method_type.methodType(forname("java.lang.String"), forname("[Lorg.apache.lucene.search.ScoreDoc;")))
    return handles.filterReturnValue(getter, to_string)


# One FieldDoc as printed by Lucene 9: "doc=12 score=3.4 shardIndex=-1 fields=[3.4, [69 64]]" (with a doc
# number before the id bytes for the doc-number sort). BytesRef prints each byte as unpadded lower-case hex.
_FIELD_DOC = re.compile(r"doc=(\d+) score=\S+ shardIndex=-?\d+ fields=\[([^,\]]+), (?:\d+, )?\[([0-9a-f ]*)\]\]")
_F32 = struct.Struct("<f")


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (Java's ``(float)`` of a double)."""
    return _F32.unpack(_F32.pack(value))[0]


def _above_f32_threshold(threshold: float) -> tuple[float, bool]:
    """(m, tie_up) such that ``_f32(x) > threshold`` iff ``x > m or (x == m and tie_up)``, for float32 ``threshold``.

    m is the midpoint between ``threshold`` and the next float32 up; a double exactly there rounds to the
    even one of the two.
    """
    bits = _F32.unpack(_F32.pack(threshold))[0]
    (as_int,) = struct.unpack("<I", struct.pack("<f", bits))
    above = struct.unpack("<f", struct.pack("<I", as_int + 1))[0]
    return (bits + above) / 2, (as_int + 1) % 2 == 0


# The float constants of ScoreTiesAdjusterReranker: a gap of more than 1e-4f ends a run of ties; each score
# in a run is lowered by 1e-6f times its position in the run.
_TIE_GAP_MID, _TIE_GAP_TIE_UP = _above_f32_threshold(1e-4)
_TIE_STEP = _f32(1e-6)

def _decode_id(hex_bytes: str) -> str:
    try:
        raw = bytes.fromhex(hex_bytes)
    except ValueError:  # a byte below 0x10 is printed as one digit
        raw = bytes(int(part, 16) for part in hex_bytes.split())
    return raw.decode("utf-8")


def _adjust_ties(scores: list[float]) -> list[float]:
    """Anserini's ``ScoreTiesAdjusterReranker`` on float32 scores, best first, with Java's float arithmetic.

    Each score becomes ``(float) (Math.round(score * 10000.0) / 10000.0)``; then each one within 1e-4 of the
    (already adjusted) previous one is lowered by 1e-6 times its rank in that run of ties. Java rounds every
    float operation to float32; here exact double arithmetic is rounded to float32 at the same points.
    """
    import numpy as np

    scaled = np.asarray(scores, dtype=np.float64) * 10000.0
    rounded = np.floor(scaled)
    rounded += (scaled - rounded) >= 0.5  # Math.round: half up
    adjusted = (rounded / 10000.0).astype(np.float32).astype(np.float64).tolist()
    # Differences of two float32 values, products of a float32 by a small int, and differences between
    # those are exact or correctly double-rounded in doubles (53 >= 2 * 24 + 2 bits), so rounding the double
    # result to float32 gives what Java's float arithmetic gives; the gap test needs no rounding at all.
    dup = 0
    previous = adjusted[0] if adjusted else 0.0
    for i in range(1, len(adjusted)):
        score = adjusted[i]
        gap = previous - score
        if gap > _TIE_GAP_MID or (gap == _TIE_GAP_MID and _TIE_GAP_TIE_UP):
            dup = 0
        else:
            dup += 1
            score = adjusted[i] = _f32(score - _f32(_TIE_STEP * dup))
        previous = score
    return adjusted


def _parse_hits(text: str, adjust_ties: bool, ids: dict[str, str]) -> list[tuple[str, float]]:
    """(doc_id, score) pairs from :meth:`_LuceneBM25.hits_text`; ``ids`` caches doc number -> id across queries."""
    import numpy as np

    found = _FIELD_DOC.findall(text)
    if len(found) != text.count("doc="):
        raise HarnessError(f"Unexpected hit list from Lucene (no id doc values in the index?): {text[:300]!r}")
    if not found:
        return []
    # Float.toString is the shortest decimal that reads back as the same float32.
    scores = np.array([score for _, score, _ in found], dtype=np.float64).astype(np.float32).astype(np.float64)
    scores = _adjust_ties(scores) if adjust_ties else scores.tolist()
    hits = []
    for (number, _, hex_id), score in zip(found, scores):
        doc_id = ids.get(number)
        if doc_id is None:
            doc_id = ids[number] = _decode_id(hex_id)
        hits.append((doc_id, score))
    return hits


def _ordered_parallel(fn: Callable[[str], str], items: list[str], threads: int) -> Iterator[str]:
    """``fn(item)`` for each item, in order, computed by ``threads`` threads at most a few items ahead.

    The calls are Java calls that release the GIL, so they run in parallel while the caller parses results.
    """
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    from jnius import detach

    ahead = threading.Semaphore(4 * threads)  # results computed but not yet consumed, bounded
    lock = threading.Lock()
    done: dict[int, tuple[bool, object]] = {}
    ready = threading.Condition(lock)
    position = iter(range(len(items)))
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                ahead.acquire()
                with lock:
                    i = next(position, None)
                if i is None or stop.is_set():
                    return
                try:
                    outcome = (True, fn(items[i]))
                except BaseException as error:  # noqa: BLE001 (handed to the consumer, which re-raises it)
                    outcome = (False, error)
                with ready:
                    done[i] = outcome
                    ready.notify_all()
        finally:
            detach()  # pyjnius: a thread that used the JVM must detach before it ends

    workers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, len(items)))]
    for worker in workers:
        worker.start()
    try:
        for i in range(len(items)):
            with ready:
                while i not in done:
                    ready.wait()
                ok, value = done.pop(i)
            ahead.release()
            if not ok:
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        for _ in workers:
            ahead.release()  # wake workers blocked on the bound so they see `stop`
        for worker in workers:
            worker.join()


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

    The same hits, scores and order as pyserini's ``LuceneSearcher`` with ``set_bm25(k1, b)`` and
    ``batch_search(..., fields=...)`` (see :class:`_LuceneBM25`); ``threads`` only changes the speed.
    ``remove_query`` drops hits whose doc id equals the query id after retrieving ``k``, as pyserini's
    ``--remove-query`` does, so such a query gets ``k - 1`` hits.
    """
    _check_fields(fields)
    if threads < 1:
        raise HarnessError(f"Search threads must be at least 1, got {threads}.")
    index_dir = Path(index_dir)
    if not (index_dir.is_dir() and any(index_dir.glob("segments_*"))):
        raise HarnessError(f"No Lucene index in {index_dir}: build it first.")
    searcher = _LuceneBM25(index_dir, fields, k1, b)
    qids = [str(qid) for qid in queries]
    results = _ordered_parallel(lambda text: searcher.hits_text(text, k), [queries[qid] for qid in queries], threads)
    try:
        ids: dict[str, str] = {}  # Lucene doc number → doc id, decoded once
        run: dict[str, list[tuple[str, float]]] = {}
        for qid, text in zip(qids, results):
            hits = _parse_hits(text, searcher.adjust_ties, ids)
            if remove_query:
                hits = [hit for hit in hits if hit[0] != qid]
            run[qid] = hits
    finally:
        results.close()  # stops and joins the search threads before the index is closed under them
        searcher.close()
    return run
