"""The bm25s backend: its vectorized index is the one bm25s's own `BM25.index` builds from the same terms.

The reference is the analyzer as its docstring states it, document by document (`_TOKEN.findall` of the
lower-cased text, possessive stripped, stop words dropped, each token Porter-stemmed by `stemWord`), and
bm25s's own indexing of those token lists (its Python vocabulary, counts and scores). The backend must give
the same vocabulary, the same posting lists with the same float32 scores, and so the same runs, whatever the
batch size.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from harness.retrieval import bm25s_backend
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
        term: list(zip(indices[indptr[column] : indptr[column + 1]], data[indptr[column] : indptr[column + 1]]))
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
@pytest.mark.parametrize("batch_chars", [1 << 22, 97, 5000])
def test_index_equals_bm25s_own_index(docs, reference, tmp_path, monkeypatch, fields, batch_chars):
    monkeypatch.setattr(bm25s_backend, "_BATCH_CHARS", batch_chars)
    summary = build_index(iter(docs), tmp_path / "index", fields)
    assert summary["documents"] == len(docs)
    for field in FIELDS[fields]:
        assert postings(tmp_path / "index" / field) == postings(reference / fields / field), field
    assert search(tmp_path / "index", QUERIES, k=50, fields=fields) == search(reference / fields, QUERIES, k=50,
                                                                               fields=fields)


def test_index_files_do_not_depend_on_batches_or_input_form(docs, tmp_path, monkeypatch):
    """Byte for byte: terms are numbered in order of first appearance, however the corpus is cut."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                              for i, t, x in docs))  # ASCII: the lone surrogate escaped
    build_index(iter(docs), tmp_path / "one", "multifield")
    monkeypatch.setattr(bm25s_backend, "_BATCH_CHARS", 61)
    build_index(corpus, tmp_path / "many", "multifield")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "many") for p in (tmp_path / "many").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name


def test_query_analysis_matches_the_reference():
    rng = random.Random(11)
    analyze = Analyzer()
    for _ in range(500):
        text = "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 12)))
        assert analyze(text) == reference_terms(text), text
    assert analyze("The cat's dogs’ e.g. RUNNING") == ["cat", "dog", "e.g", "run"]


def test_distinct_chunks_numbers_chunks_by_their_bytes():
    """Chunks told apart by their bytes, also long ones sharing their first 24 bytes, numbered by first
    appearance; chunks made of the same bytes as others' keys would be are never merged with them."""
    rng = random.Random(3)
    alphabet = [bytes([c]) for c in range(1, 256) if c != 0x20]
    pool = [b"\x00"] + [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(60)]
    pool += [b"p" * 24 + bytes([c]) for c in b"abc"] + [b"p" * 23, b"p" * 24, b"p" * 16, b"q" * 8, b"q" * 7]
    for _ in range(50):
        chunks = [rng.choice(pool) for _ in range(rng.randint(0, 400))]
        data = b"".join(chunk + b" " * rng.randint(1, 3) for chunk in chunks) + bm25s_backend._PADDING
        number, distinct = bm25s_backend._distinct_chunks(data)
        first_seen = list(dict.fromkeys(chunks))
        assert number.tolist() == [first_seen.index(chunk) for chunk in chunks]
        assert distinct == b"".join(chunk + b" " for chunk in first_seen)


def test_first_equal_finds_the_first_equal_row():
    rng = np.random.default_rng(0)
    for n, values in [(0, 5), (1, 5), (1000, 3), (5000, 1 << 62), (20000, 40)]:
        keys = [rng.integers(0, values, n, dtype=np.uint64) for _ in range(2)]
        rows = list(zip(*(key.tolist() for key in keys)))
        first: dict = {}
        expected = [first.setdefault(row, i) for i, row in enumerate(rows)]
        assert bm25s_backend._first_equal(keys).tolist() == expected


def test_documents_without_terms_give_an_index_that_matches_nothing(tmp_path):
    summary = build_index(iter([("a", "", ""), ("b", "The", "of and the"), ("c", "", "!!")]), tmp_path / "i")
    assert summary["documents"] == 3
    assert search(tmp_path / "i", {"q": "the", "r": "anything"}) == {"q": [], "r": []}


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
