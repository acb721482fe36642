"""BM25 without Java: bm25s with Lucene's BM25 variant and a tokenizer shaped like Anserini's analyzer.

Anserini's default English analyzer (what pyserini's BEIR indexes use): Lucene's StandardTokenizer,
possessive `'s` removed, lower-casing, Lucene's 33-word English stop list, then the (original) Porter
stemmer. Here: a regex approximation of StandardTokenizer (word characters, joined across inner
apostrophes and periods), the same possessive rule, stop list and Porter stemmer (PyStemmer's
`porter`). Scores use bm25s's `lucene` method with pyserini's BEIR defaults k1=0.9, b=0.4. Remaining
differences from Lucene: its one-byte document-length encoding and Unicode segmentation corner cases,
hence close, not identical, scores.

The index is the one bm25s's own `BM25.index` builds from each document's terms, built without a Python loop
per token (see "indexing" below); search computes bm25s's scores from its saved index.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from itertools import chain, compress
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
# document once and each new distinct chunk a few times; per token, only numpy and scipy work.
# A batch of documents becomes one byte string (`batch_bytes`), which numpy cuts into chunks (`_chunks`); each
# chunk gets the id of its distinct value, numbered across batches in order of first appearance (`_ChunkIds`:
# hash tables in numpy, exact: chunks are compared by their bytes). At the end, the distinct chunks are
# analyzed, once each (`Analyzer.chunk_terms`, one `stemWords` call), every chunk occurrence becomes its
# terms' occurrences, scipy counts those into the term-frequency matrix and numpy computes bm25s's scores from
# it (`_FieldIndex`). A corpus of several batches is indexed by a forked child process per field, while this
# process reads the corpus (`_ForkedFieldIndex`). Tests compare the result with bm25s's own `index` of the
# same terms (tests/test_bm25s_backend.py).

_SEPARATOR = "\x00"  # a one-byte chunk before each document of a batch (normalized text never holds it)
_MAX_KEY_WORDS = 3  # chunks of up to 8 * _MAX_KEY_WORDS bytes are compared as integers, longer in Python
_BATCH_CHARS = 1 << 22  # characters of text per batch: bounds the batch's arrays (about 100 bytes a chunk)
_PADDING = b" " * 8 * _MAX_KEY_WORDS  # ends the bytes that `_chunks` cuts
_FORK_FROM = _BATCH_CHARS  # characters of text from which `build_index` forks (one batch: nothing to overlap)
_QUEUED = 8  # batches read ahead of a forked child at most


def _chunk_keys(data: bytes, starts, lengths, n_words: int) -> list:
    """The bytes of chunks of 8 * n_words - 7 to 8 * n_words bytes as n_words little-endian uint64 words, zero
    past the chunk's end: equal keys mean equal chunks (chunks hold no zero byte except the one-byte separator
    chunk, so a shorter chunk's last word has zero bytes where a longer one's has its own).
    """
    import numpy as np

    # The 8-byte word starting at every byte offset: unaligned views of the same buffer, no copy (`data` ends
    # with `_PADDING`, so that the words of the last chunk are inside it).
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    keys = [words[starts + 8 * k] for k in range(n_words - 1)]
    # masks[n]: the first n bytes of a word.
    masks = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)
    keys.append(words[starts + 8 * (n_words - 1)] & masks[lengths - 8 * (n_words - 1)])
    return keys


def _hash_slots(rows: list, multipliers, bits: int):
    """Slots (uint64, below 2**bits) for rows of uint64 keys: the top bits of a multiply-add hash."""
    import numpy as np

    slot = rows[0] * multipliers[0]
    for row, multiplier in zip(rows[1:], multipliers[1:]):
        slot += row * multiplier  # wraps around at 2**64
    slot >>= np.uint64(64 - bits)
    return slot


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
        slot = _hash_slots(rows, multipliers, bits)
        table = np.full(1 << bits, n, dtype=np.int32)
        np.minimum.at(table, slot, todo)
        winner = table[slot]
        first[todo] = winner  # right where the keys are the same, replaced in the next rounds elsewhere
        same = np.logical_and.reduce([key[winner] == row for key, row in zip(keys, rows)])
        todo = todo[~same]
        rows = [key[todo] for key in keys]
    return first


def _chunks(data: bytes) -> tuple:
    """(starts, lengths) of the chunks of `data`: runs of bytes other than a space (`data` ends with `_PADDING`)."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    inside = np.zeros(len(buf) + 2, dtype=bool)
    inside[1:-1] = buf != ord(" ")
    edges = np.flatnonzero(inside[1:] != inside[:-1])
    return edges[0::2], edges[1::2] - edges[0::2]


def _key_groups(data: bytes, starts, lengths) -> Iterator[tuple]:
    """(n_words, rows, keys) per group of chunks, by size: chunks of 1 to 8 bytes, 9 to 16 and 17 to 24 keyed by
    integers (`_chunk_keys` of 1, 2, 3 words), longer ones (n_words 0) by their bytes (an object array). Equal
    chunks are in the same group."""
    import numpy as np

    n_words = (lengths + 7) >> 3
    for k in range(1, _MAX_KEY_WORDS + 1):
        rows = np.flatnonzero(n_words == k)
        if len(rows):
            yield k, rows, _chunk_keys(data, starts[rows], lengths[rows], k)
    rows = np.flatnonzero(n_words > _MAX_KEY_WORDS)
    if len(rows):
        chunks = [data[s : s + n] for s, n in zip(starts[rows].tolist(), lengths[rows].tolist())]
        yield 0, rows, [np.array(chunks, dtype=object)]


def _gather(data: bytes, starts, lengths) -> bytes:
    """The chunks at `starts` (of `lengths`), each followed by a space (as every chunk of `data` is)."""
    import numpy as np

    size = lengths + 1
    at = np.cumsum(size) - size
    return np.frombuffer(data, dtype=np.uint8)[np.repeat(starts - at, size) + np.arange(int(size.sum()))].tobytes()


class _KeyTable:
    """Distinct keys (rows of n uint64 words) and their ids, in hash tables probed in rounds as in `_first_equal`,
    kept from one `add` to the next. A key is in the table of the first round whose slot for it was free when
    it was added (the lowest row wins a slot several new keys hash to): a look-up ends at a free slot (the key
    is absent) or at the key. At most a quarter of a table's slots are taken, so most keys are in round 0.
    """

    _FREE = (1 << 31) - 1

    def __init__(self):
        import numpy as np

        self._keys: list = []  # per word, the keys' words (uint64), in the order added
        self._ids = np.empty(0, dtype=np.int32)
        self._bits = 10
        self._tables: list = []  # per round: the row of `_keys` held by each slot, or _FREE
        self._rng = np.random.default_rng(0)
        self._multipliers: list = []  # per round

    def _slots(self, rows: list, round_: int):
        """The slots of `rows` in the table of round `round_` (its multipliers drawn when first needed)."""
        while len(self._multipliers) <= round_:
            self._multipliers.append(self._rng.integers(1, 1 << 63, size=len(rows), dtype="u8") | 1)
        return _hash_slots(rows, self._multipliers[round_], self._bits)

    def find(self, keys: list):
        """The ids (int32) of the rows of `keys`, -1 for keys not added."""
        import numpy as np

        found = np.full(len(keys[0]), -1, dtype=np.int32)
        todo = np.arange(len(keys[0]))
        for round_, table in enumerate(self._tables):
            rows = [key[todo] for key in keys]
            held = table[self._slots(rows, round_)]
            free = held == self._FREE
            held[free] = 0
            same = ~free & np.logical_and.reduce([key[held] == row for key, row in zip(self._keys, rows)])
            found[todo[same]] = self._ids[held[same]]
            todo = todo[~(same | free)]
            if not len(todo):
                break
        return found

    def add(self, keys: list, ids) -> None:
        """Add keys (rows of `keys`, distinct and absent) with their ids."""
        import numpy as np

        old = len(self._ids)
        self._keys = [np.concatenate([mine, key]) for mine, key in zip(self._keys, keys)] if old else list(keys)
        self._ids = np.concatenate([self._ids, ids])
        if 4 * len(self._ids) > 1 << self._bits:  # grown: all keys into new, larger tables
            self._bits = (4 * len(self._ids)).bit_length()
            self._tables, old = [], 0
        todo = np.arange(old, len(self._ids), dtype=np.int32)
        round_ = 0
        while len(todo):
            if round_ == len(self._tables):
                self._tables.append(np.full(1 << self._bits, self._FREE, dtype=np.int32))
            table = self._tables[round_]
            slot = self._slots([key[todo] for key in self._keys], round_)
            free = table[slot] == self._FREE
            np.minimum.at(table, slot[free], todo[free])
            todo = todo[table[slot] != todo]
            round_ += 1

    first_equal = staticmethod(_first_equal)


class _BytesTable:
    """`_KeyTable` for chunks too long for integer keys: keys are [an object array of the chunks' bytes]."""

    def __init__(self):
        self._ids: dict[bytes, int] = {}

    def find(self, keys: list):
        import numpy as np

        return np.array([self._ids.get(key, -1) for key in keys[0]], dtype=np.int32)

    def add(self, keys: list, ids) -> None:
        self._ids.update(zip(keys[0].tolist(), ids.tolist()))

    @staticmethod
    def first_equal(keys: list):
        import numpy as np

        seen: dict[bytes, int] = {}
        return np.array([seen.setdefault(key, row) for row, key in enumerate(keys[0])], dtype=np.int32)


class _ChunkIds:
    """Chunk ids across batches: distinct chunks numbered in order of first appearance, kept in a table per key
    size (`_key_groups`), and those chunks, in that order."""

    def __init__(self):
        self._tables = [_BytesTable()] + [_KeyTable() for _ in range(_MAX_KEY_WORDS)]  # by n_words
        self._chunks: list[bytes] = []  # the new chunks of each `ids` call, each followed by a space
        self.count = 0

    def ids(self, data: bytes):
        """The id (int32) of each chunk of `data` (`_chunks`): that of a chunk seen before; the next ids, in order
        of first appearance in `data`, for the others."""
        import numpy as np

        starts, lengths = _chunks(data)
        ids = np.empty(len(starts), dtype=np.int32)
        new = []  # per group: the table, rows and keys of the chunks not seen before, and their first occurrences
        for n_words, rows, keys in _key_groups(data, starts, lengths):
            table = self._tables[n_words]
            ids[rows] = found = table.find(keys)
            absent = found < 0
            if absent.any():
                keys = [key[absent] for key in keys]
                new.append((table, rows[absent], keys, rows[absent][table.first_equal(keys)]))
        if new:
            firsts = np.sort(np.concatenate([rows[first == rows] for _, rows, _, first in new]))
            for table, rows, keys, first in new:
                ids[rows] = self.count + np.searchsorted(firsts, first)
                is_first = first == rows
                table.add([key[is_first] for key in keys], ids[rows[is_first]])
            self.count += len(firsts)
            self._chunks.append(_gather(data, starts[firsts], lengths[firsts]))
        return ids

    def chunks(self) -> bytes:
        """All distinct chunks, in the order of their ids, each followed by a space."""
        return b"".join(self._chunks)


def batch_bytes(texts: list[str]) -> bytes:
    """A batch of documents' texts as `_FieldIndex.add` takes them: normalized, each after the separator chunk
    (so that chunk 0 is the separator), in one byte string.

    A batch of ASCII texts (the usual case) is normalized as bytes, in one `bytes.translate`, several times
    faster than `normalize` text by text; the bytes are the same (tests/test_bm25s_backend.py)."""
    if all(map(str.isascii, texts)):
        return _ASCII_SEPARATOR.join(["", *texts]).encode("latin-1").translate(_ASCII_BYTES) + _PADDING
    return f" {_SEPARATOR} ".join(["", *map(normalize, texts)]).encode() + _PADDING


# In ASCII batches, bytes 0x80 and 0x81 (in no ASCII text) stand for the separator chunk and the spaces around it.
_ASCII_SEPARATOR = "\x81\x80\x81"
_ASCII_BYTES = bytes([ord(_char_class(chr(c).lower())) for c in range(128)] + [ord(_SEPARATOR)] + [ord(" ")] * 127)


class _FieldIndex:
    """One field of an index: its batches' chunks, then its terms and scores, saved."""

    def __init__(self):
        self._chunk_ids = _ChunkIds()
        self._batches: list = []  # the chunk id of each chunk occurrence (int32), per batch

    def add(self, data: bytes) -> None:
        """Add a batch (`batch_bytes`): cut into chunks, which get their ids (the same chunk, the same id)."""
        self._batches.append(self._chunk_ids.ids(data))

    def save(self, path: Path) -> None:
        """Save the field as bm25s saves what its `index` sets: the scores, the vocabulary with its empty-token
        placeholder "" (an id past the matrix's columns), and no non-occurrence array (the lucene method has
        none)."""
        import bm25s

        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        vocab, retriever.scores = self.scores(retriever.k1, retriever.b)
        retriever.vocab_dict = {**vocab, "": len(vocab)}
        retriever.nonoccurrence_array = None
        retriever.save(str(path), show_progress=False)

    def wait(self) -> None:
        """Nothing to wait for: `save` has saved."""

    def stop(self) -> None:
        """Nothing to stop."""

    def _term_occurrences(self):
        """(vocab, lengths, terms): the terms, numbered in order of first appearance; each document's number of
        terms (int64); the term id of each term occurrence, in document order (int32). Consumes the batches.

        The distinct chunks are analyzed, once each, in the order of their ids (so that terms come in order of
        first appearance); then each chunk occurrence becomes its terms' occurrences.
        """
        import numpy as np

        # Chunk 0 is the separator (the first chunk of every batch), which has no terms.
        chunk_terms, counts = Analyzer().chunk_terms(self._chunk_ids.chunks().decode().split(" ")[1:-1])
        counts = np.concatenate([[0], counts]).astype(np.int32)
        vocab = dict.fromkeys(chunk_terms)
        vocab = dict(zip(vocab, range(len(vocab))))
        flat = np.fromiter(map(vocab.__getitem__, chunk_terms), dtype=np.int32, count=len(chunk_terms))
        starts = np.cumsum(counts) - counts
        single = np.full(len(counts), -1, dtype=np.int32)  # the term of each chunk that has one
        single[counts == 1] = flat[starts[counts == 1]]
        several = counts > 1 if counts.max() > 1 else None  # the chunks with several terms, if any
        # Each document's number of terms: those of its chunks, from its separator chunk on.
        lengths = np.concatenate([np.add.reduceat(counts[batch], np.flatnonzero(batch == 0), dtype=np.int64)
                                  for batch in self._batches])
        terms = np.empty(int(lengths.sum()), dtype=np.int32)
        done = 0
        self._batches.reverse()
        while self._batches:
            batch = self._batches.pop()  # freed once used: its memory serves the next arrays
            if several is not None and several[batch].any():
                term = _occurrence_terms(batch, starts, counts, flat)
                terms[done : done + len(term)] = term
            else:  # the usual case: a look-up per occurrence, those of chunks without terms left out
                term = single[batch]
                keep = term >= 0
                term = np.compress(keep, term, out=terms[done : done + np.count_nonzero(keep)])
            done += len(term)
        return vocab, lengths, terms

    def scores(self, k1: float, b: float) -> tuple[dict[str, int], dict]:
        """The vocabulary and bm25s's `scores` of the field (its `lucene` method): documents × terms, CSC.

        The same arithmetic as bm25s's `build_index_from_ids` (`_score_idf_lucene`, `_score_tfc_lucene`:
        float32 idf and scores, float64 in between), vectorized: the term frequencies come from scipy's
        CSR → CSC conversion of the term occurrences, by document, and its sum of duplicates; entries are ordered
        by term, then document, as bm25s orders them.
        """
        import numpy as np
        import scipy.sparse as sp

        vocab, lengths, terms = self._term_occurrences()
        n_docs = len(lengths)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        # A term frequency is at most its document's length: the smallest type that holds the longest one.
        tf_type = next(t for t in (np.uint8, np.uint16, np.int32) if lengths.max(initial=0) <= np.iinfo(t).max)
        tf = sp.csr_matrix((np.ones(len(terms), dtype=tf_type), terms, indptr), shape=(n_docs, len(vocab))).tocsc()
        del terms
        tf.sum_duplicates()
        df = np.diff(tf.indptr)
        # idf per document frequency, in Python floats (math.log) as bm25s computes it, stored as float32.
        dfs = np.unique(df)
        idf_of = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) for d in dfs.tolist()], dtype=np.float32)
        idf = idf_of[np.searchsorted(dfs, df)]  # per term
        average = lengths.mean() or 1.0  # 0 only if no document has a term, and then nothing is scored
        norm = k1 * ((1 - b) + b * lengths / average)  # per document, float64
        # idf * tf / (norm + tf), a slice of entries at a time (float64 temporaries that stay in the caches).
        data = np.empty(len(tf.data), dtype=np.float32)
        step = 1 << 16
        for at in range(0, len(data), step):
            part = slice(at, min(at + step, len(data)))
            scores = tf.data[part].astype(np.float64)
            denominator = norm[tf.indices[part]]
            denominator += scores
            scores /= denominator
            # The terms of the slice's entries (columns first to last), each repeated for its entries there.
            first, last = np.searchsorted(tf.indptr, [part.start, part.stop - 1], side="right") - 1
            scores *= np.repeat(idf[first : last + 1], np.diff(np.clip(tf.indptr[first : last + 2], part.start,
                                                                        part.stop)))
            data[part] = scores
        return vocab, {"data": data, "indices": tf.indices.astype(np.int32, copy=False),
                       "indptr": tf.indptr.astype(np.int64, copy=False), "num_docs": n_docs}


def _occurrence_terms(batch, first_term, n_terms, flat):
    """The term ids of a batch's chunk occurrences, in order: occurrence i, of chunk `batch[i]`, has the terms
    flat[first_term[batch[i]]:][:n_terms[batch[i]]]."""
    import numpy as np

    per_chunk = n_terms[batch]
    at = np.cumsum(per_chunk)
    skip = np.repeat(first_term[batch] - (at - per_chunk), per_chunk)
    skip += np.arange(int(at[-1]))
    return flat[skip]


class _ForkedFieldIndex:
    """A `_FieldIndex` in a forked child process: it cuts and numbers each batch, then computes and saves the
    field, while this process reads the next batches. `add` and `save` hand their work over and return; `wait`
    waits for the child to have saved."""

    def __init__(self):
        import multiprocessing

        import numpy  # noqa: F401 (imported once, here, rather than by each child)

        context = multiprocessing.get_context("fork")
        # `put` returns at once (a thread of this process feeds the child) unless _QUEUED batches wait already.
        self._queue = context.Queue(_QUEUED)
        self._result, result = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(self._queue, result, os.getpid()), daemon=True)
        self._process.start()
        result.close()  # the child's end, which the child holds: `recv` here ends (EOFError) when the child does

    def add(self, data: bytes) -> None:
        self._put(data)

    def save(self, path: Path) -> None:
        self._put(path)

    def _put(self, item) -> None:
        """Queue `item` for the child, waiting while _QUEUED items wait already; raise if the child has stopped."""
        import queue

        while True:
            try:
                return self._queue.put(item, timeout=1)
            except queue.Full:
                if not self._process.is_alive():
                    self.wait()  # raises what stopped it
                    raise HarnessError("The bm25s indexing process ended early.") from None

    def wait(self) -> None:
        """Wait for the child to have saved the field and ended; raise what stopped it if it did not save."""
        try:
            error = self._result.recv()
        except EOFError:  # ended without a word (killed)
            self._process.join()
            raise HarnessError(f"The bm25s indexing process ended before saving (exit code "
                               f"{self._process.exitcode}).") from None
        self._process.join()
        if error is not None:
            raise error

    def stop(self) -> None:
        """End the child if it still runs (this process stopped before `wait`), and the thread that feeds it."""
        if self._process.is_alive():
            self._process.kill()
            self._queue.cancel_join_thread()  # what the child did not read is dropped
            self._process.join()
        self._queue.close()


def _keep_freed_memory() -> None:
    """Have glibc's malloc keep freed memory for the next allocations instead of giving it back to the kernel.

    By default, blocks of more than a few MB are unmapped when freed and the heap is trimmed, so every batch's
    arrays are fresh memory, paid for in page faults (a fifth of the indexing time here). For a forked child,
    which exits once its field is saved. Elsewhere than glibc: nothing."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD


def _serve(queue, result, parent: int) -> None:
    """The child of a `_ForkedFieldIndex`: adds the batches that come from `queue` until a path comes, saves the
    field there and sends back None, or the exception that stopped it; ends if its parent has ended."""
    _keep_freed_memory()
    try:
        import bm25s  # noqa: F401 (for `save`: imported while the parent reads the next batches)

        index = _FieldIndex()
        while isinstance(item := _next(queue, parent), bytes):
            index.add(item)
        if item is not None:
            index.save(item)
            result.send(None)
    except BaseException as exc:  # noqa: BLE001 (sent to the parent, which raises it)
        result.send(exc)


def _next(queue, parent: int):
    """The next item from `queue`, or None once the process `parent` has ended (killed: this process holds the
    queue's other end too, so it would wait for ever)."""
    import queue as queues

    while True:
        try:
            return queue.get(timeout=1)
        except queues.Empty:
            if os.getppid() != parent:
                return None


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


def _should_fork(batches: Iterator[list[list[str]]], fork_from: int) -> tuple[bool, Iterator[list[list[str]]]]:
    """(fork, batches): whether the corpus has at least `fork_from` characters of text and this system forks
    safely (not macOS, not inside a daemonic process, which may not have children), and the same batches, read
    ahead as far as the answer needed."""
    import multiprocessing

    read = []
    if (sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon):
        chars = 0
        for batch in batches:
            read.append(batch)
            chars += sum(len(text) for texts in batch for text in texts)
            if chars >= fork_from:
                return True, chain(read, batches)
    return False, chain(read, batches)


def build_index(
    docs: Iterable[tuple[str, str, str]] | Path,
    out_dir: Path,
    fields: str = "flat",
    threads: int = 1,
    fork_from: int = _FORK_FROM,
) -> dict:
    """Index (doc_id, title, text) triples, or those of a BEIR corpus.jsonl, into `out_dir`, one bm25s index per
    field. A corpus of at least `fork_from` characters of text is indexed by a forked child process per field
    while this process reads it, a smaller one in this process: the files are the same. `threads` is not used."""
    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {sorted(FIELDS)}")
    if isinstance(docs, Path):
        from harness.data import beir

        docs = ((doc.id, doc.title, doc.text) for doc in beir.iter_corpus(docs))
    ids: list[str] = []
    fork, batches = _should_fork(_text_batches(docs, fields, ids), fork_from)
    indexes: list = []
    try:
        for _ in FIELDS[fields]:
            indexes.append(_ForkedFieldIndex() if fork else _FieldIndex())
        for batch in batches:
            for index, texts in zip(indexes, batch):
                index.add(batch_bytes(texts))
        if not ids:
            raise HarnessError(f"No documents to index into {out_dir}.")
        out_dir.mkdir(parents=True, exist_ok=True)
        for field, index in zip(FIELDS[fields], indexes):
            index.save(out_dir / field)
        (out_dir / "docids.json").write_text(json.dumps(ids))
        for index in indexes:
            index.wait()
    finally:
        for index in indexes:
            index.stop()
    params = json.loads((out_dir / FIELDS[fields][0] / "params.index.json").read_text())
    return {"documents": len(ids), "fields": fields, "bm25s": params["version"]}


def _field_index(path: Path) -> tuple:
    """(vocab, data, indices, indptr) of a field index as bm25s saves it; the arrays memory-mapped, so that a
    search reads the posting lists of its terms only."""
    import numpy as np

    vocab = json.loads((path / "vocab.index.json").read_text(encoding="utf-8"))
    return vocab, *(np.load(path / f"{name}.csc.index.npy", mmap_mode="r") for name in ("data", "indices", "indptr"))


def _field_scores(field: tuple, term_ids: list[int], n_docs: int):
    """Each document's score for the terms in one field: bm25s's `get_scores_from_ids` (its lucene method), the
    terms' precomputed scores added term by term (float32)."""
    import numpy as np

    _, data, indices, indptr = field
    scores = np.zeros(n_docs, dtype=data.dtype)
    for term in term_ids:
        np.add.at(scores, indices[indptr[term] : indptr[term + 1]], data[indptr[term] : indptr[term + 1]])
    return scores


def _ranked(doc_ids, scores, top) -> list[tuple[str, float]]:
    """(document id, score) of the documents numbered `top`: score descending, ties by document id descending
    (the order trec_eval uses)."""
    import numpy as np

    top = top[np.argsort(scores[top], kind="stable")[::-1]]
    score = scores[top]
    hits = list(zip(doc_ids[top].tolist(), score.tolist()))
    # Runs of equal scores, put in order by id.
    edges = np.flatnonzero(np.diff(score, prepend=np.inf, append=np.inf))
    for start, end in zip(edges[:-1].tolist(), edges[1:].tolist()):
        if end - start > 1:
            hits[start:end] = sorted(hits[start:end], reverse=True)
    return hits


def search(
    index_dir: Path,
    queries: dict[str, str],
    k: int = 1000,
    fields: str = "flat",
    remove_query: bool = False,
    threads: int = 1,
) -> dict[str, list[tuple[str, float]]]:
    """Top-k BM25 hits per query; multifield sums the fields' scores (weights 1.0), as Anserini does."""
    import numpy as np

    ids = json.loads((index_dir / "docids.json").read_text())
    doc_ids = np.array(ids, dtype=object)
    indexes = [_field_index(index_dir / field) for field in FIELDS[fields]]
    analyze = Analyzer()
    run: dict[str, list[tuple[str, float]]] = {}
    for qid, text in queries.items():
        terms = analyze(text)
        scores = np.zeros(len(ids), dtype=np.float32)
        matched = False
        for index in indexes:
            # Repeated query terms count once per occurrence (Anserini boosts a term by its count).
            # bm25s keeps an empty-token placeholder ("") in the vocabulary with no row in the matrix.
            vocab = index[0]
            term_ids = [vocab[t] for t in terms if t and t in vocab]
            if term_ids:
                scores += _field_scores(index, term_ids, len(ids))
                matched = True
        if not matched:
            run[qid] = []
            continue
        depth = min(k + (1 if remove_query else 0), len(ids))
        top = np.argpartition(-scores, depth - 1)[:depth]
        hits = _ranked(doc_ids, scores, top[scores[top] > 0])
        if remove_query:
            hits = [hit for hit in hits if hit[0] != qid]
        run[qid] = hits[:k]
    return run
