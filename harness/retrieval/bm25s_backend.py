"""BM25 without Java: bm25s with Lucene's BM25 variant and a tokenizer shaped like Anserini's analyzer.

Anserini's default English analyzer (what pyserini's BEIR indexes use): Lucene's StandardTokenizer,
possessive `'s` removed, lower-casing, Lucene's 33-word English stop list, then the (original) Porter
stemmer. Here: a regex approximation of StandardTokenizer (word characters, joined across inner
apostrophes and periods), the same possessive rule, stop list and Porter stemmer (PyStemmer's
`porter`). Scores use bm25s's `lucene` method with pyserini's BEIR defaults k1=0.9, b=0.4. Remaining
differences from Lucene: its one-byte document-length encoding and Unicode segmentation corner cases,
hence close, not identical, scores.
"""

from __future__ import annotations

import json
import logging
import re
from itertools import chain
from pathlib import Path
from typing import Iterable

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+(?:['’.]\w+)*")
FIELDS = {"flat": ("contents",), "multifield": ("contents", "title")}


_WORD_CHAR = re.compile(r"\w")
_JOINERS = "'’."  # joined inside a token by _TOKEN when between word characters


def _char_class(char: str) -> str:
    """What a (lower-case) character becomes before splitting: itself inside tokens, a space between them."""
    return char if char in _JOINERS or _WORD_CHAR.fullmatch(char) else " "


# ASCII text: lower-case and separate in one str.translate (CPython's fast path for ASCII-to-ASCII tables).
_ASCII_TABLE = str.maketrans({chr(c): _char_class(chr(c).lower()) for c in range(128)})


class _ChunkTerms(dict):
    """chunk → tuple of its terms, computed on first look-up (`dict.__missing__`)."""

    def __init__(self, stem):
        super().__init__()
        self._stem = stem

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        terms = []
        for token in _TOKEN.findall(chunk):
            if token.endswith(("'s", "’s")):
                token = token[:-2]
            if token and token not in LUCENE_STOPWORDS:
                stem = self._stem(token)
                if stem:
                    terms.append(stem)
        value = self[chunk] = tuple(terms)
        return value


class Analyzer:
    """Text → terms, as close to Anserini's DefaultEnglishAnalyzer as Python gets cheaply.

    The terms are those of `_TOKEN.findall(text.lower())`, possessive stripped, stop words dropped, each token
    Porter-stemmed, computed faster: every character that cannot be in a token becomes a space (one
    `str.translate`, which also lower-cases ASCII text), `str.split` cuts the text into chunks that hold
    whole tokens, and each distinct chunk's terms are computed once and cached, so a text costs one
    `str.translate`, one `str.split` and a dict look-up per chunk, all in C.
    """

    def __init__(self):
        import Stemmer

        # maxCacheSize 0: PyStemmer's own cache costs more than the stemming (and chunks are cached here).
        self._chunks = _ChunkTerms(Stemmer.Stemmer("porter", 0).stemWord)
        self._table: dict[int, str] = {c: _char_class(chr(c)) for c in range(128)}  # for lower-cased text
        self._known = {chr(c) for c in range(128)}

    def chunks(self, text: str) -> list[str]:
        """The text lower-cased and cut at every character that cannot be part of a token."""
        if text.isascii():
            return text.translate(_ASCII_TABLE).split()
        text = text.lower()
        new = set(text).difference(self._known)
        if new:
            self._table.update((ord(char), _char_class(char)) for char in new)
            self._known.update(new)
        return text.translate(self._table).split()

    def chunk_terms(self, chunk: str) -> tuple[str, ...]:
        """The terms of one chunk."""
        return self._chunks[chunk]

    def __call__(self, text: str) -> list[str]:
        return list(chain.from_iterable(map(self._chunks.__getitem__, self.chunks(text))))


class _TermIds(dict):
    """chunk → tuple of its terms' ids in `vocab` (new terms get the next id), computed on first look-up."""

    def __init__(self, analyzer: Analyzer):
        super().__init__()
        self.analyzer = analyzer
        self.vocab: dict[str, int] = {}

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        vocab = self.vocab
        value = self[chunk] = tuple(vocab.setdefault(term, len(vocab)) for term in self.analyzer.chunk_terms(chunk))
        return value

    def of(self, text: str) -> list[int]:
        """The term ids of a text: those of the analyzer's terms."""
        return list(chain.from_iterable(map(self.__getitem__, self.analyzer.chunks(text))))

def build_index(docs: Iterable[tuple[str, str, str]], out_dir: Path, fields: str = "flat", threads: int = 1) -> dict:
    """Index (doc_id, title, text) triples into `out_dir`, one bm25s index per field."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build step at DEBUG
    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {sorted(FIELDS)}")
    analyzer = Analyzer()
    ids: list[str] = []
    # Per field: each document's term ids and the vocabulary (term → id), handed to bm25s as they are, so it
    # need not map tokens to ids itself. Ids are numbered in order of first appearance; scores do not depend
    # on the numbering.
    term_ids = {f: _TermIds(analyzer) for f in FIELDS[fields]}
    per_field: dict[str, list[list[int]]] = {f: [] for f in FIELDS[fields]}
    for doc_id, title, text in docs:
        ids.append(doc_id)
        for field in FIELDS[fields]:
            if field == "title":
                content = title
            elif fields == "flat":
                content = f"{title} {text}"
            else:
                content = text
            per_field[field].append(term_ids[field].of(content))
    out_dir.mkdir(parents=True, exist_ok=True)
    for field, corpus_ids in per_field.items():
        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        retriever.index((corpus_ids, term_ids[field].vocab), show_progress=False)
        retriever.save(str(out_dir / field))
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
        # Score descending, ties by document id descending: the order trec_eval uses.
        order = sorted(top.tolist(), key=lambda i: ids[i], reverse=True)
        order.sort(key=lambda i: -scores[i])
        hits = [(ids[i], float(scores[i])) for i in order if not (remove_query and ids[i] == qid)]
        run[qid] = hits[:k]
    return run
