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
from pathlib import Path
from typing import Iterable

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+(?:['’.]\w+)*")
FIELDS = {"flat": ("contents",), "multifield": ("contents", "title")}


class Analyzer:
    """Text → terms, as close to Anserini's DefaultEnglishAnalyzer as Python gets cheaply."""

    def __init__(self):
        import Stemmer

        self._stem = Stemmer.Stemmer("porter").stemWord
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        terms = []
        for token in _TOKEN.findall(text.lower()):
            if token.endswith(("'s", "’s")):
                token = token[:-2]
            if not token or token in LUCENE_STOPWORDS:
                continue
            stem = self._cache.get(token)
            if stem is None:
                stem = self._cache[token] = self._stem(token)
            if stem:
                terms.append(stem)
        return terms


def build_index(docs: Iterable[tuple[str, str, str]], out_dir: Path, fields: str = "flat", threads: int = 1) -> dict:
    """Index (doc_id, title, text) triples into `out_dir`, one bm25s index per field."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build step at DEBUG
    if fields not in FIELDS:
        raise ValueError(f"fields must be one of {sorted(FIELDS)}")
    analyze = Analyzer()
    ids: list[str] = []
    per_field: dict[str, list[list[str]]] = {f: [] for f in FIELDS[fields]}
    for doc_id, title, text in docs:
        ids.append(doc_id)
        for field in FIELDS[fields]:
            if field == "title":
                content = title
            elif fields == "flat":
                content = f"{title} {text}"
            else:
                content = text
            per_field[field].append(analyze(content))
    out_dir.mkdir(parents=True, exist_ok=True)
    for field, tokens in per_field.items():
        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        retriever.index(tokens, show_progress=False)
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
