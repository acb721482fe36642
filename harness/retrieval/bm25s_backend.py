"""BM25 without Java: bm25s with Lucene's BM25 variant and a tokenizer shaped like Anserini's analyzer.

Anserini's default English analyzer (what pyserini's BEIR indexes use): Lucene's StandardTokenizer,
possessive `'s` removed, lower-casing, Lucene's 33-word English stop list, then the (original) Porter
stemmer. Here: a regex approximation of StandardTokenizer (word characters, joined across inner
apostrophes and periods), the same possessive rule, stop list and Porter stemmer (PyStemmer's
`porter`). Scores use bm25s's `lucene` method with pyserini's BEIR defaults k1=0.9, b=0.4. Remaining
differences from Lucene: its one-byte document-length encoding and Unicode segmentation corner cases,
hence close, not identical, scores.

The index is the one bm25s's own `BM25.index` builds from each document's terms, built without a Python loop
per token (see "indexing" below); search is bm25s's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from itertools import compress
from operator import itemgetter
from pathlib import Path

from harness.errors import HarnessError

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+(?:['’.]\w+)*")
FIELDS = {"flat": ("contents",), "multifield": ("contents", "title")}


_WORD_CHAR = re.compile(r"\w")
_JOINERS = "'’."  # joined inside a token by _TOKEN when between word characters
_JOINER = re.compile(f"[{_JOINERS}]")


def _char_class(char: str) -> str:
    """What a (lower-case) character becomes before splitting: itself inside tokens, a space between them."""
    return char if char in _JOINERS or _WORD_CHAR.fullmatch(char) else " "


# ASCII text: lower-case and separate in one str.translate (CPython's fast path for ASCII-to-ASCII tables).
_ASCII_TABLE = str.maketrans({chr(c): _char_class(chr(c).lower()) for c in range(128)})


def normalize(text: str) -> str:
    """The text lower-cased, every character that cannot be part of a token replaced by a space: the text falls
    apart at spaces into chunks that hold whole tokens."""
    if text.isascii():
        return text.translate(_ASCII_TABLE)
    text = text.lower()
    new = set(text).difference(_KNOWN)
    if new:
        _TABLE.update((ord(char), _char_class(char)) for char in new)
        _KNOWN.update(new)
    return text.translate(_TABLE)


# For lower-cased text with non-ASCII characters: grown with each new character seen.
_TABLE: dict[int, str] = {c: _char_class(chr(c)) for c in range(128)}
_KNOWN = {chr(c) for c in range(128)}


class Analyzer:
    """Text → terms, as close to Anserini's DefaultEnglishAnalyzer as Python gets cheaply.

    The terms are those of `_TOKEN.findall(text.lower())`, possessive stripped, stop words dropped, each token
    Porter-stemmed, computed in two steps: `normalize` (one `str.translate`) cuts the text into chunks at
    spaces; `chunk_terms` gives the terms of a list of chunks, stemmed by PyStemmer's `stemWords` in one call.
    Indexing analyzes each distinct chunk of the corpus once (`_FieldIndex`); a query is analyzed on its own.
    """

    def __init__(self):
        import Stemmer

        # maxCacheSize 0: PyStemmer's own cache costs more than the stemming (chunks are analyzed once).
        self._stem_words = Stemmer.Stemmer("porter", 0).stemWords

    def chunk_terms(self, chunks: list[str]):
        """(terms, counts): the terms of the chunks (pieces of normalized text between spaces), in order, and how
        many of them each chunk has (a numpy array).

        A chunk without joiners is one token; only the others are cut by `_TOKEN` (and may lose a possessive).
        """
        import numpy as np

        words = chunks
        n_tokens = np.ones(len(chunks), dtype=np.int64)
        joined = "\n".join(chunks)
        joiners = [match.start() for match in _JOINER.finditer(joined)]
        if joiners:
            ends = np.cumsum(np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) + 1)
            words = []
            done = 0
            for i in np.unique(np.searchsorted(ends, joiners, side="right")).tolist():
                tokens = [t[:-2] if t.endswith(("'s", "’s")) else t for t in _TOKEN.findall(chunks[i])]
                words += chunks[done:i]
                words += tokens
                n_tokens[i] = len(tokens)
                done = i + 1
            words += chunks[done:]
        stems = self._stem_words(words)
        kept = [bool(stem) and word not in LUCENE_STOPWORDS for word, stem in zip(words, stems)]
        chunk_of_word = np.repeat(np.arange(len(chunks)), n_tokens)
        counts = np.bincount(chunk_of_word[np.array(kept, dtype=bool)], minlength=len(chunks))
        return list(compress(stems, kept)), counts

    def __call__(self, text: str) -> list[str]:
        return self.chunk_terms(normalize(text).split())[0]


# --- indexing: many documents at once, in numpy ------------------------------------------------------------
#
# bm25s's own `index` loops in Python over every token of every document (vocabulary, document frequencies,
# term counts), as did analyzing document by document: about 2 µs per token. Here Python touches each
# document once and each distinct chunk of a batch a few times; per token, only numpy and scipy work.
# A batch of documents becomes one byte string, which numpy cuts into chunks and numbers by distinct value
# (`_distinct_chunks`, exact: chunks are compared by their bytes). At the end, the batches' distinct chunks
# are numbered across batches the same way, each one analyzed once (`Analyzer.chunk_terms`, one `stemWords`
# call), every chunk occurrence becomes its terms' occurrences, scipy counts those into the term-frequency
# matrix and numpy computes bm25s's scores from it (`_FieldIndex`). Tests compare the result with bm25s's own
# `index` of the same terms (tests/test_bm25s_backend.py).

_SEPARATOR = "\x00"  # a one-byte chunk before each document of a batch (normalized text never holds it)
_MAX_KEY_WORDS = 3  # chunks of up to 8 * _MAX_KEY_WORDS - 1 bytes are compared as integers, longer in Python
_BATCH_CHARS = 1 << 22  # characters of text per batch: bounds the batch's arrays (about 100 bytes a chunk)
_PADDING = b" " * 8 * _MAX_KEY_WORDS  # ends the bytes that `_distinct_chunks` cuts


def _chunk_keys(data: bytes, starts, lengths, n_words: int) -> list:
    """Each chunk's first 8 * n_words bytes as little-endian uint64 words, zero past the chunk's end.

    Chunks hold no zero byte except the one-byte separator chunk, and a chunk of at most 8 * n_words - 1 bytes
    leaves the last word's top byte zero where a longer one's is not: equal keys mean equal chunks, except
    between chunks of 8 * n_words bytes or more.
    """
    import numpy as np

    # The 8-byte word starting at every byte offset: unaligned views of the same buffer, no copy (`data` ends
    # with `_PADDING`, so that the words of the last chunk are inside it).
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    capped = np.minimum(lengths, 8 * n_words)
    keys = []
    for k in range(n_words):
        # masks[length]: the bytes of word k that a chunk of that length covers.
        masks = np.array([(1 << (8 * min(max(n - 8 * k, 0), 8))) - 1 for n in range(8 * n_words + 1)], np.uint64)
        keys.append(words[starts + 8 * k] & masks[capped])
    return keys


def _first_equal(keys: list):
    """For each row of `keys` (parallel uint64 arrays), the index of the first row equal to it (int32).

    A hash table in numpy, probed in rounds: each round, every remaining row hashes into a table and the
    lowest row index in each slot wins it; rows whose keys equal their winner's (compared in full, so
    hash collisions cost a round, never a wrong answer) are done: the winner is the first row with those
    keys. The others hash again with other multipliers. No sort, and a few rounds. The table has a quarter
    to a half as many slots as rows: rows repeat (words do), and a small table stays in the CPU's caches.
    """
    import numpy as np

    n = len(keys[0])
    first = np.empty(n, dtype=np.int32)
    todo = np.arange(n, dtype=np.int32)
    rng = np.random.default_rng(0)
    rows = keys
    while len(todo):
        bits = max(len(todo).bit_length() - 2, 4)
        multipliers = rng.integers(1, 1 << 63, size=len(keys), dtype=np.uint64) | np.uint64(1)
        slot = rows[0] * multipliers[0]
        for key, multiplier in zip(rows[1:], multipliers[1:]):
            slot += key * multiplier  # wraps around at 2**64
        slot = (slot >> np.uint64(64 - bits)).astype(np.intp)
        table = np.full(1 << bits, n, dtype=np.int32)
        np.minimum.at(table, slot, todo)
        winner = table[slot]
        same = np.logical_and.reduce([key[winner] == row for key, row in zip(keys, rows)])
        first[todo[same]] = winner[same]
        todo = todo[~same]
        rows = [key[todo] for key in keys]
    return first


def _distinct_chunks(data: bytes) -> tuple:
    """(number, distinct): the chunks of `data`: runs of bytes other than a space (`data` ends with `_PADDING`).

    `number` gives each chunk's number (int32) among the distinct chunks, counted in order of first appearance;
    `distinct` holds those distinct chunks, each followed by a space.
    """
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    inside = np.zeros(len(buf) + 2, dtype=bool)
    inside[1:-1] = buf != ord(" ")
    edges = np.flatnonzero(inside[1:] != inside[:-1])
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    n_words = min(_MAX_KEY_WORDS, int(lengths.max(initial=0)) // 8 + 1)
    first = _first_equal(_chunk_keys(data, starts, lengths, n_words))
    long = np.flatnonzero(lengths >= 8 * n_words)
    if len(long):  # longer than their keys: compared in Python
        seen: dict[bytes, int] = {}
        first[long] = [seen.setdefault(data[s:e], i) for i, s, e in zip(long.tolist(), starts[long].tolist(),
                                                                          ends[long].tolist())]
    is_first = first == np.arange(len(first), dtype=np.int32)
    number = (np.cumsum(is_first, dtype=np.int32) - 1)[first]
    # The first occurrences with the space after each (every chunk is followed by one), gathered.
    distinct = np.flatnonzero(is_first)
    size = lengths[distinct] + 1
    at = np.cumsum(size) - size
    return number, buf[np.repeat(starts[distinct] - at, size) + np.arange(int(size.sum()))].tobytes()


class _FieldIndex:
    """One field of an index: its batches' chunks, then its terms and scores."""

    def __init__(self, analyzer: Analyzer):
        self.analyzer = analyzer
        self._batches: list[tuple] = []  # `_distinct_chunks` of each batch

    def add(self, texts: list[str]) -> None:
        """Add a batch of documents' texts: normalized, each after the separator chunk (so that chunk 0 is the
        separator), in one byte string cut into chunks."""
        separator = f" {_SEPARATOR} "
        data = (separator + separator.join(map(normalize, texts))).encode() + _PADDING
        self._batches.append(_distinct_chunks(data))

    def _term_occurrences(self):
        """(vocab, lengths, docs, terms): the terms, numbered in order of first appearance; each document's number
        of terms; the document and term id of each term occurrence, in document order (int32). Consumes the
        batches.

        The batches' distinct chunks are numbered across batches the same way (`_distinct_chunks`) and
        analyzed, once each; then each chunk occurrence becomes its terms' occurrences.
        """
        import numpy as np

        number, distinct = _distinct_chunks(b"".join(distinct for _, distinct in self._batches) + _PADDING)
        # Chunk 0 is the separator, which has no terms.
        chunk_terms, counts = self.analyzer.chunk_terms(distinct.decode().split(" ")[1:-1])
        counts = np.concatenate([[0], counts])
        vocab = dict.fromkeys(chunk_terms)
        vocab = dict(zip(vocab, range(len(vocab))))
        flat = np.fromiter(map(vocab.__getitem__, chunk_terms), dtype=np.int32, count=len(chunk_terms))
        starts = np.cumsum(counts) - counts
        # Per batch, per distinct chunk of it (small arrays, so the look-ups per chunk stay in the CPU's caches):
        # where its terms start in `flat`, and how many it has.
        ends = np.cumsum([distinct.count(b" ") for _, distinct in self._batches])
        chunks = [number[end - n : end] for end, n in zip(ends.tolist(), np.diff(ends, prepend=0).tolist())]
        local = [(starts[chunk], counts[chunk]) for chunk in chunks]
        total = sum(int(n_terms[batch].sum()) for (batch, _), (_, n_terms) in zip(self._batches, local))
        docs = np.empty(total, dtype=np.int32)
        terms = np.empty(total, dtype=np.int32)
        lengths = []  # per batch: each document's number of terms
        done = n_docs = 0
        for (first_term, n_terms), (batch, _) in zip(local, self._batches):
            # Chunk occurrence i contributes n_terms[batch[i]] terms: flat[first_term[batch[i]]:][:n_terms[..]].
            per_chunk = n_terms[batch]
            at = np.cumsum(per_chunk)
            size = int(at[-1])
            skip = np.repeat(first_term[batch] - (at - per_chunk), per_chunk)
            skip += np.arange(size)
            np.take(flat, skip, out=terms[done : done + size])
            doc = np.cumsum(batch == 0, dtype=np.int32)  # 0: the separator chunk that starts each document
            doc -= 1
            lengths.append(np.bincount(doc, weights=per_chunk, minlength=int(doc[-1]) + 1).astype(np.int64))
            doc += np.int32(n_docs)
            docs[done : done + size] = np.repeat(doc, per_chunk)
            done += size
            n_docs = int(doc[-1]) + 1
        self._batches = []
        return vocab, np.concatenate(lengths), docs, terms

    def scores(self, k1: float, b: float) -> tuple[dict[str, int], dict]:
        """The vocabulary and bm25s's `scores` of the field (its `lucene` method): documents × terms, CSC.

        The same arithmetic as bm25s's `build_index_from_ids` (`_score_idf_lucene`, `_score_tfc_lucene`:
        float32 idf and scores, float64 in between), vectorized: the term frequencies come from scipy's
        COO → CSC conversion, which sums duplicates and orders entries by term, then document, as bm25s does.
        """
        import numpy as np
        import scipy.sparse as sp

        vocab, lengths, docs, terms = self._term_occurrences()
        n_docs = len(lengths)
        tf = sp.csc_matrix((np.ones(len(docs), dtype=np.int32), (docs, terms)), shape=(n_docs, len(vocab)))
        del docs, terms
        df = np.diff(tf.indptr)
        # idf per document frequency, in Python floats (math.log) as bm25s computes it, stored as float32.
        dfs = np.unique(df)
        idf_of = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) for d in dfs.tolist()], dtype=np.float32)
        idf = np.repeat(idf_of[np.searchsorted(dfs, df)], df)  # per entry
        average = lengths.mean() or 1.0  # 0 only if no document has a term, and then nothing is scored
        norm = k1 * ((1 - b) + b * lengths / average)  # per document, float64
        # idf * tf / (norm + tf), a slice of entries at a time (float64 temporaries that stay in the caches).
        data = np.empty(len(tf.data), dtype=np.float32)
        step = 1 << 16
        for at in range(0, len(data), step):
            part = slice(at, at + step)
            scores = tf.data[part].astype(np.float64)
            denominator = norm[tf.indices[part]]
            denominator += scores
            scores /= denominator
            scores *= idf[part]
            data[part] = scores
        return vocab, {"data": data, "indices": tf.indices.astype(np.int32, copy=False),
                       "indptr": tf.indptr.astype(np.int64, copy=False), "num_docs": n_docs}


def _text_batches(docs: Iterable[tuple[str, str, str]], fields: str, ids: list[str]) -> Iterator[list[list[str]]]:
    """The documents' texts in batches of about _BATCH_CHARS characters, one list per field of FIELDS[fields]
    (flat indexes title and text as one field); appends each document's id to `ids`."""
    batch: list[tuple[str, ...]] = []
    size = 0
    for doc_id, title, text in docs:
        ids.append(doc_id)
        batch.append((f"{title} {text}",) if fields == "flat" else (text, title))
        size += len(text) + len(title)
        if size >= _BATCH_CHARS:
            yield [list(texts) for texts in zip(*batch)]
            batch, size = [], 0
    if batch:
        yield [list(texts) for texts in zip(*batch)]


def build_index(
    docs: Iterable[tuple[str, str, str]] | Path, out_dir: Path, fields: str = "flat", threads: int = 1
) -> dict:
    """Index (doc_id, title, text) triples, or those of a BEIR corpus.jsonl, into `out_dir`, one bm25s index per
    field. `threads` is not used: the work is numpy's, in this thread."""
    import bm25s

    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {sorted(FIELDS)}")
    if isinstance(docs, Path):
        from harness.data import beir

        docs = ((doc.id, doc.title, doc.text) for doc in beir.iter_corpus(docs))
    indexes = [_FieldIndex(Analyzer()) for _ in FIELDS[fields]]
    ids: list[str] = []
    for batch in _text_batches(docs, fields, ids):
        for index, texts in zip(indexes, batch):
            index.add(texts)
    if not ids:
        raise HarnessError(f"No documents to index into {out_dir}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for field, index in zip(FIELDS[fields], indexes):
        # bm25s saves what its `index` sets: the scores, the vocabulary with its empty-token placeholder ""
        # (an id past the matrix's columns), and no non-occurrence array (the lucene method has none).
        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        vocab, retriever.scores = index.scores(retriever.k1, retriever.b)
        retriever.vocab_dict = {**vocab, "": len(vocab)}
        retriever.nonoccurrence_array = None
        retriever.save(str(out_dir / field), show_progress=False)
    (out_dir / "docids.json").write_text(json.dumps(ids))
    return {"documents": len(ids), "fields": fields, "bm25s": bm25s.__version__}


def search(
    index_dir: Path,
    queries: dict[str, str],
    k: int = 1000,
    fields: str = "flat",
    remove_query: bool = False,
    threads: int = 1,
) -> dict[str, list[tuple[str, float]]]:
    """Top-k BM25 hits per query; multifield sums the fields' scores (weights 1.0), as Anserini does."""
    import bm25s
    import numpy as np

    ids = json.loads((index_dir / "docids.json").read_text())
    doc_ids = np.array(ids, dtype=object)
    retrievers = [bm25s.BM25.load(str(index_dir / f), mmap=False) for f in FIELDS[fields]]
    analyze = Analyzer()
    run: dict[str, list[tuple[str, float]]] = {}
    for qid, text in queries.items():
        terms = analyze(text)
        scores = np.zeros(len(ids), dtype=np.float32)
        matched = False
        for retriever in retrievers:
            # Repeated query terms count once per occurrence (Anserini boosts a term by its count).
            # bm25s keeps an empty-token placeholder ("") in the vocabulary with no row in the matrix.
            term_ids = [retriever.vocab_dict[t] for t in terms if t and t in retriever.vocab_dict]
            if term_ids:
                scores += retriever.get_scores_from_ids(term_ids)
                matched = True
        if not matched:
            run[qid] = []
            continue
        depth = min(k + (1 if remove_query else 0), len(ids))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[scores[top] > 0]
        # Score descending, ties by document id descending (the order trec_eval uses): sorted by id, then
        # stably by score (reverse=True keeps equal scores in their order).
        hits = sorted(zip(doc_ids[top].tolist(), scores[top].tolist()), reverse=True)
        hits.sort(key=itemgetter(1), reverse=True)
        if remove_query:
            hits = [hit for hit in hits if hit[0] != qid]
        run[qid] = hits[:k]
    return run
