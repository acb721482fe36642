"""The bm25s backend: the index bm25s's own `BM25.index` builds from the analyzer's terms, and bm25s's scores.

The reference is the analyzer as its docstring states it, token by token (`_TOKEN.findall` of the lower-cased
text, possessive stripped, stop words dropped, each token Porter-stemmed by `stemWord`), indexed by bm25s from
those token lists (bm25s numbering the terms itself). The backend must give the same posting lists with the same
float32 scores, files that do not depend on the input's form, and the hits and scores of bm25s's `retrieve`,
ties ordered by document id.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer

from harness.errors import HarnessError
from harness.retrieval.bm25s_backend import _TOKEN, FIELDS, LUCENE_STOPWORDS, Analyzer, build_index, search

_STEM = Stemmer.Stemmer("porter").stemWord


def reference_terms(text: str) -> list[str]:
    """The analyzer as specified, one token at a time."""
    terms = []
    for token in _TOKEN.findall(text.lower()):
        if token.endswith(("'s", "’s")):
            token = token[:-2]
        if token and token not in LUCENE_STOPWORDS:
            stem = _STEM(token)
            if stem:
                terms.append(stem)
    return terms


# Words and pieces that exercise the analyzer and the chunking: stop words, possessives, inner and outer
# joiners, digits, underscores, non-ASCII letters and case mappings that change length (İ, ß, ǅ), combining
# marks, scripts without case, symbols, a NUL character (must not be taken for the batch separator), a lone
# surrogate, and tokens around the 8/16/24-byte key boundaries, some sharing their first 24 bytes.
WORDS = (  # noqa: SIM905 (a list literal of 60 words reads worse)
    "the The AND of a cats cat's Cats’s dogs’ dog’s it’s don't rock'n'roll 'quoted' e.g. U.S.A. 3.14 1.2.3.4 "
    "end. .. a..b x.'y snake_case __init__ 2024 x2 well-known a/b mail@host.org http://x.y/z?q=1 running runs "
    "ran Café CAFÉ naïve Straße STRASSE İstanbul ǅemal Ελληνικά ΣΟΦΙΑ 日本語テキスト ١٢٣ １２３ éclair 🙂 "
    "abcdefg abcdefgh abcdefghi abcdefghijklmno abcdefghijklmnop abcdefghijklmnopq "
    "abcdefghijklmnopqrstuvw abcdefghijklmnopqrstuvwx abcdefghijklmnopqrstuvwxy "
    "abcdefghijklmnopqrstuvwxyz0 abcdefghijklmnopqrstuvwxyz1 pneumonoultramicroscopicsilicovolcanoconiosis "
    "pneumonoultramicroscopicsilicovolcanoconiosis's generalizations generalization generalize"
).split() + ["x\x00y", "\ud800", "a\u0301b", "zero\u200bwidth", "nb\u00a0sp"]
SEPARATORS = [" ", "  ", ", ", "\n", "\t", "-", "/", "; ", " (", ") "]


def make_docs(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)

    def text(most: int) -> str:
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, most))]
        return "".join(word + rng.choice(SEPARATORS) for word in words).strip(" ") if words else ""

    docs = [(f"d{i}", text(4), text(40)) for i in range(n)]
    docs += [("empty", "", ""), ("stops", "The", "of the and a"), ("copy", docs[0][1], docs[0][2])]
    rng.shuffle(docs)
    return docs


def reference_index(docs: list[tuple[str, str, str]], out_dir: Path, fields: str) -> None:
    """bm25s's own path: each document's terms, then `BM25.index` of the token lists."""
    out_dir.mkdir(parents=True)
    for field in FIELDS[fields]:
        if fields == "flat":
            texts = [f"{title} {text}" for _, title, text in docs]
        else:
            texts = [text if field == "contents" else title for _, title, text in docs]
        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        retriever.index([reference_terms(text) for text in texts], show_progress=False)
        retriever.save(str(out_dir / field), show_progress=False)
    (out_dir / "docids.json").write_text(json.dumps([doc_id for doc_id, _, _ in docs]))


def postings(index_dir: Path) -> tuple[int, dict]:
    """(documents, term → [(document, score)]) of one saved field index; scores as stored (float32)."""
    retriever = bm25s.BM25.load(str(index_dir), mmap=False)
    scores = retriever.scores
    dtypes = (scores["data"].dtype, scores["indices"].dtype, scores["indptr"].dtype)
    assert dtypes == (np.float32, np.int32, np.int64)
    data, indices, indptr = scores["data"].tolist(), scores["indices"].tolist(), scores["indptr"].tolist()
    assert retriever.vocab_dict[""] == len(indptr) - 1  # bm25s's empty-token placeholder, past the columns
    table = {
        term: list(zip(indices[indptr[column] : indptr[column + 1]], data[indptr[column] : indptr[column + 1]],
                       strict=True))
        for term, column in retriever.vocab_dict.items()
        if term
    }
    return scores["num_docs"], table


QUERIES = {"q1": "cats running", "q2": "Café naïve Straße", "q3": "the of", "q4": "abcdefghijklmnopqrstuvwxyz0 e.g.",
           "q5": "日本語テキスト İstanbul", "q6": "nothing-here", "q7": "d1 well-known dog’s"}


@pytest.fixture(scope="module")
def docs():
    return make_docs(300, seed=5)


@pytest.fixture(scope="module")
def reference(docs, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    for fields in FIELDS:
        reference_index(docs, root / fields, fields)
    return root


@pytest.mark.parametrize("fields", list(FIELDS))
def test_index_equals_bm25s_own_index(docs, reference, tmp_path, fields):
    summary = build_index(iter(docs), tmp_path / "index", fields)
    assert summary["documents"] == len(docs) and summary["bm25s"] == bm25s.__version__
    for field in FIELDS[fields]:
        assert postings(tmp_path / "index" / field) == postings(reference / fields / field), field
    assert search(tmp_path / "index", QUERIES, k=50, fields=fields) == search(reference / fields, QUERIES, k=50,
                                                                               fields=fields)


def test_index_files_do_not_depend_on_the_input_form_or_the_process(docs, tmp_path):
    """Byte for byte, from the documents or their corpus.jsonl, here or in another process (terms are numbered in
    order of first appearance, not in the order of Python's string hashing, which changes with each process)."""
    import subprocess
    import sys

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                              for i, t, x in docs))  # ASCII: the lone surrogate escaped
    build_index(iter(docs), tmp_path / "one", "multifield")
    code = (f"from pathlib import Path; from harness.retrieval.bm25s_backend import build_index; "
            f"build_index(Path({str(corpus)!r}), Path({str(tmp_path / 'two')!r}), 'multifield')")
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ, "PYTHONHASHSEED": "7"})
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_query_analysis_matches_the_reference():
    rng = random.Random(11)
    analyze = Analyzer()
    for _ in range(500):
        text = "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 12)))
        assert analyze(text) == reference_terms(text), text
    assert analyze("The cat's dogs’ e.g. RUNNING") == ["cat", "dog", "e.g", "run"]


def test_flat_search_gives_bm25s_retrieve_hits_and_scores(docs, reference):
    """bm25s's own `retrieve` over all documents is the oracle: the same documents (those scoring above 0) with
    the same scores; equal scores ordered by document id, descending."""
    retriever = bm25s.BM25.load(str(reference / "flat" / "contents"))
    doc_ids = json.loads((reference / "flat" / "docids.json").read_text())
    run = search(reference / "flat", QUERIES, k=len(docs), fields="flat")
    for qid, text in QUERIES.items():
        terms = [t for t in reference_terms(text) if t in retriever.vocab_dict]
        expected = {}
        if terms:
            found, scores = retriever.retrieve([terms], k=len(docs), show_progress=False)
            expected = {doc_ids[i]: s for i, s in zip(found[0].tolist(), scores[0].tolist(), strict=True) if s > 0}
        assert dict(run[qid]) == expected, qid
        assert run[qid] == sorted(run[qid], key=lambda hit: (hit[1], hit[0]), reverse=True), qid


def test_multifield_scores_are_the_sum_of_the_fields_bm25s_scores(docs, reference):
    fields = [bm25s.BM25.load(str(reference / "multifield" / field)) for field in FIELDS["multifield"]]
    doc_ids = json.loads((reference / "multifield" / "docids.json").read_text())
    for qid, hits in search(reference / "multifield", QUERIES, k=len(docs), fields="multifield").items():
        terms = reference_terms(QUERIES[qid])
        total = np.zeros(len(doc_ids), dtype=np.float32)
        for field in fields:
            known = [t for t in terms if t in field.vocab_dict]
            if known:
                total += field.get_scores(known)
        assert dict(hits) == {doc_ids[i]: float(total[i]) for i in np.flatnonzero(total > 0).tolist()}, qid


def test_ties_at_the_kth_place_are_taken_by_document_id(tmp_path):
    """Ten documents with the same score: the top 3 are the three largest ids, whatever the order of the corpus."""
    docs = [(f"d{i}", "", "alpha beta") for i in (4, 9, 0, 7, 2, 5, 8, 1, 6, 3)] + [("x", "", "gamma")]
    build_index(iter(docs), tmp_path / "index")
    assert [d for d, _ in search(tmp_path / "index", {"q": "alpha"}, k=3)["q"]] == ["d9", "d8", "d7"]
    removed = search(tmp_path / "index", {"d9": "alpha"}, k=3, remove_query=True)["d9"]
    assert [d for d, _ in removed] == ["d8", "d7", "d6"]  # the query's own document dropped, k hits remain


def test_documents_without_terms_give_an_index_that_matches_nothing(tmp_path):
    summary = build_index(iter([("a", "", ""), ("b", "The", "of and the"), ("c", "", "!!")]), tmp_path / "i")
    assert summary["documents"] == 3
    assert search(tmp_path / "i", {"q": "the", "r": "anything"}) == {"q": [], "r": []}
    with pytest.raises(HarnessError, match="No documents"):
        build_index(iter([]), tmp_path / "none")


@pytest.mark.slow
def test_scifact_index_equals_bm25s_own_index(beir_dir, tmp_path):
    from harness.data import beir

    corpus = beir_dir / "scifact" / "corpus.jsonl"
    docs = [(doc.id, doc.title, doc.text) for doc in beir.iter_corpus(corpus)]
    for fields in FIELDS:
        reference_index(docs, tmp_path / "reference" / fields, fields)
        build_index(corpus, tmp_path / fields, fields)
        for field in FIELDS[fields]:
            assert postings(tmp_path / fields / field) == postings(tmp_path / "reference" / fields / field), field
