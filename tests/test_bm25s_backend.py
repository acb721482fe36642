"""The bm25s backend: its vectorized index is the one bm25s's own `BM25.index` builds from the same terms.

The reference is the analyzer as its docstring states it, document by document (`_TOKEN.findall` of the
lower-cased text, possessive stripped, stop words dropped, each token Porter-stemmed by `stemWord`), and
bm25s's own indexing of those token lists (its Python vocabulary, counts and scores). The backend must give
the same vocabulary, the same posting lists with the same float32 scores, and so the same runs, whatever the
batch size, in this process or in forked ones; its search must score as bm25s's does.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from harness.errors import HarnessError
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


def test_ascii_batches_are_normalized_as_other_batches():
    """ASCII batches, normalized as bytes: the same bytes as `normalize`, text by text, gives (every character)."""
    rng = random.Random(7)
    texts = ["".join(map(chr, range(128)))] + ["".join(chr(rng.randrange(128)) for _ in range(rng.randint(0, 60)))
                                               for _ in range(500)]
    padding = bm25s_backend._PADDING
    ascii_batch = bm25s_backend.batch_bytes(texts)
    assert bm25s_backend.batch_bytes([*texts, "Été"]) == ascii_batch[: -len(padding)] + " \x00 été".encode() + padding


def test_chunk_ids_number_chunks_by_their_bytes_across_batches():
    """Chunks told apart by their bytes, also long ones sharing their first 24 bytes, numbered in order of first
    appearance across batches; chunks made of the same bytes as others' keys would be are never merged with them."""
    rng = random.Random(3)
    alphabet = [bytes([c]) for c in range(1, 256) if c != 0x20]
    pool = [b"\x00"] + [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(200)]
    pool += [b"p" * 24 + bytes([c]) for c in b"abc"] + [b"p" * 23, b"p" * 24, b"p" * 16, b"q" * 8, b"q" * 7]
    chunk_ids = bm25s_backend._ChunkIds()
    first_seen: dict[bytes, int] = {}
    for _ in range(60):
        chunks = [rng.choice(pool) for _ in range(rng.randint(0, 400))]
        data = b"".join(chunk + b" " * rng.randint(1, 3) for chunk in chunks) + bm25s_backend._PADDING
        assert chunk_ids.ids(data).tolist() == [first_seen.setdefault(chunk, len(first_seen)) for chunk in chunks]
    assert chunk_ids.chunks() == b"".join(chunk + b" " for chunk in first_seen)


def test_first_equal_finds_the_first_equal_row():
    rng = np.random.default_rng(0)
    for n, values in [(0, 5), (1, 5), (1000, 3), (5000, 1 << 62), (20000, 40)]:
        keys = [rng.integers(0, values, n, dtype=np.uint64) for _ in range(2)]
        rows = list(zip(*(key.tolist() for key in keys)))
        first: dict = {}
        expected = [first.setdefault(row, i) for i, row in enumerate(rows)]
        assert bm25s_backend._first_equal(keys).tolist() == expected


@pytest.mark.parametrize("fields", list(FIELDS))
def test_forked_indexing_writes_the_same_files(docs, tmp_path, monkeypatch, fields):
    """A child process per field, fed batch by batch while this one reads: the same bytes as in this process."""
    monkeypatch.setattr(bm25s_backend, "_BATCH_CHARS", 500)
    build_index(iter(docs), tmp_path / "here", fields, fork_from=1 << 40)
    build_index(iter(docs), tmp_path / "forked", fields, fork_from=0)
    files = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "forked") for p in (tmp_path / "forked").rglob("*") if p.is_file())
    for name in files:
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "forked" / name).read_bytes(), name


def _index_in(docs, out, fields):
    build_index(iter(docs), out, fields, fork_from=0)


def test_a_daemonic_process_indexes_without_a_child(docs, tmp_path):
    """A daemonic process (a pool's worker) may not have children: it indexes in itself, the same files."""
    import multiprocessing

    process = multiprocessing.get_context("fork").Process(target=_index_in, args=(docs, tmp_path / "d", "flat"),
                                                          daemon=True)
    process.start()
    process.join()
    assert process.exitcode == 0
    build_index(iter(docs), tmp_path / "here", "flat", fork_from=1 << 40)
    for path in (tmp_path / "here").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "d" / path.relative_to(tmp_path / "here")).read_bytes()


def test_errors_of_forked_indexing_are_raised_here(docs, tmp_path, monkeypatch):
    import multiprocessing

    def unreadable():
        yield from docs[:100]
        raise HarnessError("corpus.jsonl line 101: not valid JSON.")

    with pytest.raises(HarnessError, match="line 101"):
        build_index(unreadable(), tmp_path / "a", "multifield", fork_from=0)

    def fail(self, path):
        raise ValueError(f"cannot save {path.name}")

    monkeypatch.setattr(bm25s_backend._FieldIndex, "save", fail)  # the children inherit it
    with pytest.raises(ValueError, match="cannot save contents"):
        build_index(iter(docs), tmp_path / "b", "multifield", fork_from=0)

    def fail_to_add(self, data):
        raise MemoryError

    # Stopped at its first batch, while this process queues the next ones (more than fit in its queue).
    monkeypatch.setattr(bm25s_backend._FieldIndex, "add", fail_to_add)
    monkeypatch.setattr(bm25s_backend, "_BATCH_CHARS", 100)
    with pytest.raises(MemoryError):
        build_index(iter(docs), tmp_path / "c", "flat", fork_from=0)
    assert not multiprocessing.active_children()


def test_a_forked_index_ends_when_its_parent_is_killed(tmp_path):
    """A child left waiting for batches ends by itself once its parent is gone (killed: no clean-up ran)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    script = f"""
import multiprocessing, time
from pathlib import Path
from harness.retrieval import bm25s_backend

def docs():
    yield "d0", "a title", "some text"  # a batch: the child starts
    print(multiprocessing.active_children()[0].pid, flush=True)
    time.sleep(600)

bm25s_backend._BATCH_CHARS = 1
bm25s_backend.build_index(docs(), Path({str(tmp_path / "index")!r}), fork_from=0)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def running() -> bool:
        try:
            return "zombie" not in Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    if running():
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child still ran 30 s after its parent was killed")


def test_field_scores_are_bm25s_scores(reference):
    retriever = bm25s.BM25.load(str(reference / "flat" / "contents"))
    field = bm25s_backend._field_index(reference / "flat" / "contents")
    n_docs = retriever.scores["num_docs"]
    for term_ids in ([0], [3, 1, 3], list(range(len(field[0]) - 1))):
        expected = retriever.get_scores_from_ids(term_ids)
        assert np.array_equal(bm25s_backend._field_scores(field, term_ids, n_docs), expected), term_ids


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
