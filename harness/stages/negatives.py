"""Stage `negatives`: BM25 hard negatives for each synthetic query → training triples (query, positive, negative).

Each query is searched with BM25 over the corpus (the recipe's retriever, flat fields, depth 1,000), and
`n_negatives` documents are drawn from its hits with a per-query random generator seeded by (`seed`,
query id), so the draw does not depend on the order or the number of other queries. Unlike the authors'
toolkit, a negative is never the query's own source document, nor a document with the same text (BEIR
corpora hold duplicates), and triples carry the query id of their row, so ids stay aligned when a query is
empty or dropped.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from harness.data import beir
from harness.errors import HarnessError
from harness.retrieval import backend
from harness.stages import Stage, StageParams
from harness.stages.retrieve import search_threads

CHUNK = 2000  # queries searched at once: bounds the memory of depth-1,000 hit lists


class Params(StageParams):
    retriever: Literal["pyserini", "bm25s"] = "pyserini"
    fields: Literal["flat", "multifield"] = "flat"
    depth: int = 1000
    n_negatives: int = 1
    seed: int = 1
    sampling: Literal["random", "top"] = "random"  # random ranks of the hit list (the toolkit), or the best ones
    threads: int = Field(default_factory=search_threads, ge=1)  # search threads; how, not what: not in the key
    not_in_key = frozenset({"threads"})


def query_rng(seed: int, query_id: str, query: str) -> random.Random:
    """A generator for one query's draw, independent of every other query."""
    digest = hashlib.sha256(f"{seed}\t{query_id}\t{query}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pick_negatives(hits: list[str], positive: str, same_text: set[str], n: int, sampling: str,
                   rng: random.Random) -> list[str]:
    """Up to `n` negatives from `hits` (best first), never `positive` nor a document in `same_text`."""
    candidates = [d for d in hits if d != positive and d not in same_text]
    if sampling == "top":
        return candidates[:n]
    return rng.sample(candidates, min(n, len(candidates)))


def _text_digest(text: str) -> bytes:
    """What identifies a document's text for the twin test: sha1 of the stripped text (lone surrogates kept)."""
    return hashlib.sha1(text.strip().encode("utf-8", "surrogatepass")).digest()


def _corpus_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(doc_id, text as rerankers see it) for each document, streamed."""
    for doc in beir.iter_corpus(path):
        yield doc.id, beir.doc_text(doc.title, doc.text)


def run(inputs: dict, params: Params, out, ctx) -> None:
    # The corpus is streamed, never held: one pass finds the positives and their texts' digests, a second the
    # positives' twins (documents with the same stripped text), and after the search a last one reads the
    # texts of the documents that made it into triples.
    corpus_path = inputs["corpus"].file("corpus.jsonl")
    rows = list(beir.read_jsonl(inputs["queries"].file("queries.jsonl")))
    wanted = {row.get("doc_id") for row in rows}
    digest_of: dict[str, bytes] = {}  # positive → digest of its text
    for doc_id, text in _corpus_texts(corpus_path):
        if doc_id in wanted:
            digest_of[doc_id] = _text_digest(text)
    twins_of: dict[bytes, set[str]] = {digest: set() for digest in digest_of.values()}
    for doc_id, text in _corpus_texts(corpus_path):
        twins = twins_of.get(_text_digest(text))
        if twins is not None:
            twins.add(doc_id)
    search = backend(params.retriever).search
    index = inputs["index"].path / "index"
    counts = {"queries": len(rows), "empty": 0, "unknown_doc": 0, "no_negative": 0, "triples": 0}

    # Keys are row numbers, not query ids: two rows with one id (or an empty query) cannot shift others.
    usable = []
    for number, row in enumerate(rows):
        if not str(row.get("query", "")).strip():
            counts["empty"] += 1
        elif row.get("doc_id") not in digest_of:
            counts["unknown_doc"] += 1
        else:
            usable.append(number)
    drawn: list[tuple[int, str, list[str]]] = []  # (row number, query id, negatives) in output order
    with ctx.bar(len(usable), "negatives") as bar:
        for start in range(0, len(usable), CHUNK):
            chunk = usable[start : start + CHUNK]
            hits = search(index, {str(n): rows[n]["query"] for n in chunk}, k=params.depth, fields=params.fields,
                          remove_query=False, threads=params.threads)
            for n in chunk:
                row, positive = rows[n], rows[n]["doc_id"]
                query_id = row.get("query_id") or f"syn-{positive}"
                twins = twins_of[digest_of[positive]]
                rng = query_rng(params.seed, query_id, row["query"])
                negatives = pick_negatives([d for d, _ in hits.get(str(n), [])], positive, twins,
                                           params.n_negatives, params.sampling, rng)
                if not negatives:
                    counts["no_negative"] += 1
                counts["triples"] += len(negatives)
                drawn.append((n, query_id, negatives))
                bar.update()

    needed = {rows[n]["doc_id"] for n, _, _ in drawn} | {d for _, _, negatives in drawn for d in negatives}
    texts = {doc_id: text for doc_id, text in _corpus_texts(corpus_path) if doc_id in needed}

    def triples() -> Iterator[dict]:
        for n, query_id, negatives in drawn:
            row, positive = rows[n], rows[n]["doc_id"]
            for negative in negatives:
                yield {"query_id": query_id, "query": row["query"], "pos_id": positive, "neg_id": negative,
                       "positive": texts[positive], "negative": texts[negative]}

    beir.write_jsonl(triples(), out.path / "triples.jsonl")
    if counts["triples"] == 0:
        raise HarnessError(f"Stage negatives for {ctx.dataset}: no triples could be made from {counts['queries']} "
                           f"queries ({counts}); check the filter artifact {inputs['queries'].key}.")
    out.summary.update(counts)


def read_published_triples(path: Path) -> Iterator[dict]:
    """Rows of the authors' `triples_train_v2.tsv` (query, positive text, negative text) in the harness's shape.

    The published file carries no ids, so `query_id`, `pos_id` and `neg_id` are None.
    """
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise HarnessError(f"{path} line {number}: expected 3 tab-separated columns (query, positive, "
                                   f"negative), got {len(parts)}.")
            query, positive, negative = parts
            yield {"query_id": None, "query": query, "pos_id": None, "neg_id": None,
                   "positive": positive, "negative": negative}


# v2: bm25s ranks the documents tied with the depth-th one by id (before: as numpy's argpartition left them).
STAGE = Stage(name="negatives", version=2, kind="triples", params=Params, run=run,
              inputs={"corpus": "corpus", "queries": ("filter", "generate"), "index": "index"},
              own_inputs={"index": ("retriever", "fields")}, published_kinds=("triples",), publish_kind="triples",
              units=lambda params, documents, queries: 10_000)  # the filter's default top_k queries
