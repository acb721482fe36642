"""BM25 without Java: bm25s's Lucene BM25 variant over terms from an analyzer shaped like Anserini's.

Anserini's default English analyzer (what pyserini's BEIR indexes use): Lucene's StandardTokenizer,
possessive `'s` removed, lower-casing, Lucene's 33-word English stop list, then the (original) Porter
stemmer. Here: a regex approximation of StandardTokenizer (word characters, joined across inner
apostrophes and periods), the same possessive rule, stop list and Porter stemmer (PyStemmer's
`porter`). Scores use bm25s's `lucene` method with pyserini's BEIR defaults k1=0.9, b=0.4. Remaining
differences from Lucene: its one-byte document-length encoding and Unicode segmentation corner cases,
hence close, not identical, scores.

Indexing and scoring are bm25s's own (`BM25.index`, `save`, `load`, `get_scores`); a multifield index is one
bm25s index per field, whose scores are summed, as Anserini sums the fields' scores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
LUCENE_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will",
    "with",
})
_TOKEN = re.compile(r"\w+(?:['’.]\w+)*")
FIELDS = {"flat": ("contents",), "multifield": ("contents", "title")}
K1, B = 0.9, 0.4


class Analyzer:
    """Text → terms: `_TOKEN.findall` of the lower-cased text, possessive stripped, stop words dropped, each
    token Porter-stemmed (empty stems dropped)."""

    def __init__(self):
        import Stemmer

        self._stem_words = Stemmer.Stemmer("porter").stemWords

    def __call__(self, text: str) -> list[str]:
        tokens = [t[:-2] if t.endswith(("'s", "’s")) else t for t in _TOKEN.findall(text.lower())]
        return [stem for stem in self._stem_words([t for t in tokens if t and t not in LUCENE_STOPWORDS]) if stem]


def _field_texts(title: str, text: str, fields: str) -> tuple[str, ...]:
    """A document's text per field of FIELDS[fields]: flat indexes title and text as one field."""
    return (f"{title} {text}",) if fields == "flat" else (text, title)


def build_index(docs: Iterable[tuple[str, str, str]] | Path, out_dir: Path, fields: str = "flat",
                threads: int = 1) -> dict:
    """Index (doc_id, title, text) triples, or those of a BEIR corpus.jsonl, into `out_dir`: one bm25s index per
    field and the document ids. `threads` is not used (bm25s indexes in one thread)."""
    import bm25s

    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {sorted(FIELDS)}")
    if isinstance(docs, Path):
        from harness.data import beir

        docs = ((doc.id, doc.title, doc.text) for doc in beir.iter_corpus(docs))
    analyze = Analyzer()
    ids: list[str] = []
    # Per field: each document's term ids, the terms numbered in order of first appearance (so that the files
    # do not depend on Python's string hashing, as bm25s's own numbering of a token-list corpus does).
    vocabs: list[dict[str, int]] = [{} for _ in FIELDS[fields]]
    term_ids: list[list[list[int]]] = [[] for _ in FIELDS[fields]]
    for doc_id, title, text in docs:
        ids.append(doc_id)
        for vocab, field_ids, field_text in zip(vocabs, term_ids, _field_texts(title, text, fields), strict=True):
            field_ids.append([vocab.setdefault(term, len(vocab)) for term in analyze(field_text)])
    if not ids:
        raise HarnessError(f"No documents to index into {out_dir}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for field, vocab, field_ids in zip(FIELDS[fields], vocabs, term_ids, strict=True):
        retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
        # bm25s's placeholder term "" goes after the last term; a field without terms gets none (it cannot).
        retriever.index((field_ids, vocab), create_empty_token=bool(vocab), show_progress=False)
        retriever.save(str(out_dir / field), show_progress=False)
    (out_dir / "docids.json").write_text(json.dumps(ids))
    return {"documents": len(ids), "fields": fields, "bm25s": bm25s.__version__}


def _ranked(doc_ids: list[str], scores, k: int) -> list[tuple[str, float]]:
    """The top `k` (document id, score) of the documents scoring above 0: score descending, ties by document id
    descending (the order trec_eval uses), also at the k-th place."""
    import numpy as np

    scored = np.flatnonzero(scores > 0)
    if len(scored) > k:  # every document tied with the k-th one stays a candidate
        kth = np.partition(scores[scored], len(scored) - k)[len(scored) - k]
        scored = scored[scores[scored] >= kth]
    hits = sorted(((float(scores[i]), doc_ids[i]) for i in scored.tolist()), reverse=True)[:k]
    return [(doc_id, score) for score, doc_id in hits]


def search(
    index_dir: Path,
    queries: dict[str, str],
    k: int = 1000,
    fields: str = "flat",
    remove_query: bool = False,
    threads: int = 1,
) -> dict[str, list[tuple[str, float]]]:
    """Top-k BM25 hits per query; multifield sums the fields' scores (weights 1.0), as Anserini does.
    `remove_query` drops the query's own document, k hits remaining. `threads` is not used."""
    import bm25s
    import numpy as np

    doc_ids = json.loads((index_dir / "docids.json").read_text())
    indexes = [bm25s.BM25.load(str(index_dir / field), mmap=True, show_progress=False) for field in FIELDS[fields]]
    analyze = Analyzer()
    run: dict[str, list[tuple[str, float]]] = {}
    for qid, text in queries.items():
        terms = analyze(text)
        scores = np.zeros(len(doc_ids), dtype=np.float32)
        for index in indexes:
            # Repeated query terms count once per occurrence (Anserini boosts a term by its count).
            known = [term for term in terms if term in index.vocab_dict]
            if known:
                scores += index.get_scores(known)
        hits = _ranked(doc_ids, scores, k + 1 if remove_query else k)
        if remove_query:
            hits = [hit for hit in hits if hit[0] != qid]
        run[qid] = hits[:k]
    return run
