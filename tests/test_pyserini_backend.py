"""Tests of the Lucene BM25 backend: a tiny in-test corpus, pyserini's prebuilt indexes (from its cache, offline),
and SciFact against pyserini's 2CR numbers and published index statistics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("pyserini")
pytest.importorskip("jnius_config")  # not `jnius`: importing it would start a JVM without Anserini

from harness.errors import HarnessError
from harness.retrieval import java
from harness.retrieval.pyserini_backend import batch_search, build_index, search

try:
    java.find_java21()
except HarnessError as error:  # pragma: no cover - depends on the machine
    pytest.skip(f"no Java 21: {error}", allow_module_level=True)

DOCS = [
    ("cat", "Domestic cats", "Cats purr and chase mice around the house."),
    ("dog", "Loyal dogs", "Dogs bark at strangers and fetch sticks."),
    ("q-fish", "Goldfish", "Goldfish swim in a bowl; cats watch the goldfish."),
    ("zebra", "Zebra stripes", "The animal has black and white stripes."),
    ("empty", "", ""),
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    summaries = {fields: build_index(iter(DOCS), root / fields, fields=fields) for fields in ("flat", "multifield")}
    return root, summaries


def test_import_needs_no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lucene = java.import_pyserini("pyserini.search.lucene")
    assert hasattr(lucene, "LuceneSearcher")
    assert "OPENAI_API_KEY" not in os.environ  # the placeholder does not outlive the import


def test_start_jvm_is_idempotent():
    assert java.start_jvm() is java.start_jvm()
    assert os.environ["JAVA_HOME"] == str(java.find_java21().home)


def test_build_summary(indexes):
    root, summaries = indexes
    flat, multi = summaries["flat"], summaries["multifield"]
    assert flat["documents"] == 4 and flat["skipped"] == 1  # empty docs are skipped, as Anserini does
    assert (flat["fields"], multi["fields"]) == ("flat", "multifield")
    assert flat["pyserini_version"] and flat["lucene_version"]
    # The temporary JSONL collection is gone; only the two indexes remain.
    assert sorted(p.name for p in root.iterdir()) == ["flat", "multifield"]


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_top_hit_and_order(indexes, fields):
    root, _ = indexes
    run = search(root / fields, {"q1": "cats purr", "q2": "barking dogs", "none": "xylophone"}, k=10, fields=fields)
    assert run["q1"][0][0] == "cat"
    assert run["q2"][0][0] == "dog"
    assert run["none"] == []
    for hits in run.values():
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True)


def test_multifield_indexes_title_separately(indexes):
    root, _ = indexes
    # "domestic" is only in a title: flat has it in contents; multifield only in its title field.
    assert search(root / "flat", {"q": "domestic"}, fields="flat")["q"][0][0] == "cat"
    assert search(root / "multifield", {"q": "domestic"}, fields="multifield")["q"][0][0] == "cat"
    assert search(root / "multifield", {"q": "domestic"}, fields="flat")["q"] == []  # contents only


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_remove_query_drops_the_query_document_after_retrieving_k(indexes, fields):
    root, _ = indexes
    queries = {"q-fish": "goldfish cats"}
    kept = search(root / fields, queries, k=2, fields=fields)["q-fish"]
    assert [doc for doc, _ in kept] == ["q-fish", "cat"]
    # pyserini's --remove-query filters the k hits it retrieved, so one fewer hit remains.
    removed = search(root / fields, queries, k=2, fields=fields, remove_query=True)["q-fish"]
    assert [doc for doc, _ in removed] == ["cat"]


def test_bm25_parameters_change_scores(indexes):
    root, _ = indexes
    default = search(root / "flat", {"q": "goldfish"})["q"]
    other = search(root / "flat", {"q": "goldfish"}, k1=1.2, b=0.75)["q"]
    assert [d for d, _ in default] == [d for d, _ in other] == ["q-fish"]
    assert default[0][1] != other[0][1]


def test_errors_are_harness_errors(indexes, tmp_path):
    root, _ = indexes
    with pytest.raises(HarnessError, match="not empty"):
        build_index(DOCS, root / "flat")
    with pytest.raises(HarnessError, match="Unknown index fields"):
        build_index(DOCS, tmp_path / "x", fields="title")
    with pytest.raises(HarnessError, match="No Lucene index"):
        search(tmp_path, {"q": "cats"})
    with pytest.raises(HarnessError, match="No documents"):
        build_index([], tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


# Documents with equal scores for most queries (same length, same words): ties broken by id, scores adjusted.
TIED_DOCS = [(f"t{i:02d}", "", "alpha beta gamma delta") for i in (7, 3, 11, 0, 5)] + [
    ("z9", "Beta", "alpha beta beta gamma"),
    ("a1", "", "alpha gamma"),
    ("m5", "Delta", "alpha beta gamma delta epsilon"),
    ("m4", "Delta", "alpha beta gamma delta epsilon"),
]


def _six(run: dict) -> dict:
    """A run's scores as the run file writes them (harness.data.trec.write_run: 6 decimals)."""
    return {qid: [(doc, f"{score:.6f}") for doc, score in hits] for qid, hits in run.items()}


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_search_collection_gives_the_batch_search_oracle_hits(tmp_path, fields):
    """search (Anserini's SearchCollection) against pyserini's batch_search: hits, order, scores (6 decimals),
    with and without removing the query's own document, queries with tabs, line breaks, no text or no hits,
    a doc id with a space."""
    build_index(iter([*TIED_DOCS, *DOCS, ("sp ace", "Omega", "alpha omega")]), tmp_path / fields, fields=fields)
    queries = {"q1": "alpha", "q10": "omega", "q-fish": "goldfish cats", "t03": "alpha beta\tgamma\ndelta",
               "q6": "the of", "q7": "nothing-matches-this", "q8": "Delta", "blank": " ",
               "q9": "Café “quoted” naïve beta"}
    for k in (1, 2, 1000):
        for remove in (False, True):
            got = search(tmp_path / fields, queries, k=k, fields=fields, remove_query=remove, threads=2)
            oracle = batch_search(tmp_path / fields, queries, k=k, fields=fields, remove_query=remove)
            assert list(got) == list(oracle) and _six(got) == _six(oracle), (k, remove)
    assert search(tmp_path / fields, {"q10": "omega"}, fields=fields)["q10"][0][0] == "sp ace"
    assert search(tmp_path / fields, {"blank": ""}, fields=fields) == {"blank": []}
    with pytest.raises(HarnessError, match="Query id"):
        search(tmp_path / fields, {"a\tb": "alpha"}, fields=fields)
    with pytest.raises(HarnessError, match="Query id"):
        search(tmp_path / fields, {"a b": "alpha"}, fields=fields)


def _pyserini_reference(index_dir: Path, queries: dict, k: int, fields: str) -> dict:
    """What pyserini's own LuceneSearcher returns, called as its documentation shows."""
    lucene = java.import_pyserini("pyserini.search.lucene")
    searcher = lucene.LuceneSearcher(str(index_dir))
    try:
        searcher.set_bm25(0.9, 0.4)
        weights = {"contents": 1.0, "title": 1.0} if fields == "multifield" else {}
        results = searcher.batch_search(list(queries.values()), list(queries), k=k, threads=1, fields=weights)
        return {qid: [(str(h.docid), float(h.score)) for h in results.get(qid, [])] for qid in queries}
    finally:
        searcher.close()


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_same_hits_scores_and_order_as_pyserini(tmp_path, fields):
    build_index(iter(TIED_DOCS + DOCS), tmp_path / fields, fields=fields)
    queries = {"q1": "alpha", "q2": "gamma delta", "q3": "beta", "q4": "delta epsilon alpha", "q5": "cats goldfish",
               "q6": "the of", "q7": "nothing-matches-this", "q8": "Delta"}
    for k in (1, 3, 1000):
        expected = _pyserini_reference(tmp_path / fields, queries, k, fields)
        assert batch_search(tmp_path / fields, queries, k=k, fields=fields) == expected, k
        # search: Anserini's run file, whose scores have 6 decimals; the same hits in the same order.
        assert _six(search(tmp_path / fields, queries, k=k, fields=fields)) == _six(expected), k
        assert _six(search(tmp_path / fields, queries, k=k, fields=fields, threads=3)) == _six(expected), k
    tied = search(tmp_path / fields, {"q": "alpha"}, fields=fields)["q"]
    assert [d for d, _ in tied[:5]] == sorted(d for d, _ in tied[:5])  # equal scores: ids in ascending order


def test_corpus_file_is_copied_as_the_collection_it_would_be_written_as(tmp_path):
    """A corpus.jsonl as the corpus stage writes it becomes the same collection files, byte for byte, as its
    documents do (its lines are copied, no JSON parsed and written again)."""
    from harness.data import beir
    from harness.retrieval.pyserini_backend import _write_collection

    docs = TIED_DOCS + DOCS + [("é1", "Café “quoted”", "naïve\ttab"), ("n2", "", "x\u2028y")]
    corpus = tmp_path / "corpus.jsonl"
    beir.write_jsonl(({"_id": i, "title": t, "text": x} for i, t, x in docs), corpus)
    for files in (1, 3):
        assert _write_collection(iter(docs), tmp_path / f"docs{files}", files) == len(docs)
        assert _write_collection(corpus, tmp_path / f"file{files}", files) == len(docs)
        names = sorted(p.name for p in (tmp_path / f"docs{files}").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"file{files}").iterdir()) and len(names) == files
        for name in names:
            assert (tmp_path / f"docs{files}" / name).read_bytes() == (tmp_path / f"file{files}" / name).read_bytes()


@pytest.mark.parametrize("fields", ["flat", "multifield"])
def test_threads_and_corpus_file_give_the_same_hits(tmp_path, fields):
    """More indexing threads number the documents in another order; search gives the same hits, scores and
    order all the same (index-wide statistics; equal scores ordered by id): the index stage may use every CPU."""
    from harness.data import beir

    docs = TIED_DOCS + DOCS
    corpus = tmp_path / "corpus.jsonl"
    beir.write_jsonl(({"_id": i, "title": t, "text": x} for i, t, x in docs), corpus)
    one = build_index(iter(docs), tmp_path / "one", fields=fields, threads=1)
    three = build_index(corpus, tmp_path / "three", fields=fields, threads=3)
    counts = ("documents", "skipped")
    assert [one[key] for key in counts] == [three[key] for key in counts]
    queries = {"q1": "alpha", "q2": "gamma delta", "q3": "beta", "q4": "delta epsilon alpha", "q5": "cats goldfish",
               "q6": "the of", "q8": "Delta", "q9": "alpha beta gamma delta epsilon cats dogs"}
    for k in (1, 3, 1000):
        assert search(tmp_path / "three", queries, k=k, fields=fields) == search(tmp_path / "one", queries, k=k,
                                                                                   fields=fields), k


PREBUILT = "beir-v1.0.0-scifact.flat"


def _cached_prebuilt(cache: Path, name: str) -> Path:
    """Where pyserini's `download_prebuilt_index` finds prebuilt index `name` in its cache folder `cache`: the
    table's archive name without `.tar.gz`, a dot, its MD5 (pyserini/util.py, `download_and_unpack_index`)."""
    info = java.import_pyserini("pyserini.prebuilt_index_info").TF_INDEX_INFO[name]
    return cache / "indexes" / f"{info['filename'].removesuffix('.tar.gz')}.{info['md5']}"


@pytest.fixture
def cached_prebuilt(indexes, tmp_path, monkeypatch):
    """The tiny flat index placed in a fresh pyserini cache as if it were pyserini's prebuilt SciFact index, with
    the table's statistics set to the tiny index's (pyserini checks them; tested for real on SciFact below)."""
    from harness.retrieval.pyserini_backend import index_stats

    root, _ = indexes
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "pyserini-cache"))
    import shutil

    shutil.copytree(root / "flat", _cached_prebuilt(tmp_path / "pyserini-cache", PREBUILT))
    info = java.import_pyserini("pyserini.prebuilt_index_info").TF_INDEX_INFO[PREBUILT]
    stats = index_stats(root / "flat")
    for key in ("documents", "unique_terms", "total_terms"):
        monkeypatch.setitem(info, key, stats[key])
    return root / "flat"


def test_prebuilt_index_comes_from_pyserini_cache_with_the_local_index_hits(cached_prebuilt, monkeypatch):
    from harness.retrieval.pyserini_backend import fetch_prebuilt, prebuilt_name

    assert prebuilt_name("scifact", "flat") == PREBUILT
    assert prebuilt_name("cqadupstack/android", "multifield") == "beir-v1.0.0-cqadupstack-android.multifield"
    assert prebuilt_name("sample", "flat") is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # in the cache: no request needed
    path = fetch_prebuilt(PREBUILT)
    assert path == _cached_prebuilt(Path(os.environ["PYSERINI_CACHE"]), PREBUILT)
    queries = {"q1": "cats purr", "q2": "goldfish bowl", "q3": "stripes"}
    assert search(path, queries) == search(cached_prebuilt, queries)
    lucene = java.import_pyserini("pyserini.search.lucene")
    searcher = lucene.LuceneSearcher.from_prebuilt_index(PREBUILT)  # pyserini's own way finds the same folder
    assert Path(searcher.index_dir) == path


def _corpus(store):
    """A corpus artifact of DOCS in `store`."""
    from harness.data import beir

    def write(out):
        beir.write_jsonl(({"_id": i, "title": t, "text": x} for i, t, x in DOCS), out.path / "corpus.jsonl")

    artifact, _ = store.get_or_build("corpus-tiny", write, kind="corpus", stage="corpus", params={}, inputs={})
    return artifact


@pytest.mark.parametrize("mode", ["auto", "fetch"])
def test_index_stage_takes_the_prebuilt_index_in_auto_and_fetch_modes(cached_prebuilt, tmp_path, mode):
    from harness.store import Store
    from tests.test_negatives import build_stage

    local_store, prebuilt_store = Store(tmp_path / "local"), Store(tmp_path / "prebuilt")
    local = build_stage(local_store, "index", {"prebuilt": "never"}, {"corpus": _corpus(local_store)}, "scifact")
    index = build_stage(prebuilt_store, "index", {"prebuilt": mode}, {"corpus": _corpus(prebuilt_store)}, "scifact")
    assert "prebuilt" not in local.summary
    assert index.summary["prebuilt"] == _cached_prebuilt(tmp_path / "pyserini-cache", PREBUILT).name
    assert index.key == local.key  # not in the key: the same index
    queries = {"q1": "cats purr", "q2": "goldfish bowl", "q3": "white stripes"}
    assert search(index.path / "index", queries) == search(local.path / "index", queries)


def test_without_network_auto_builds_locally_and_fetch_says_why(tmp_path, monkeypatch, caplog):
    from harness.store import Store
    from tests.test_negatives import build_stage

    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    auto, fetch = Store(tmp_path / "auto"), Store(tmp_path / "fetch")
    index = build_stage(auto, "index", {"prebuilt": "auto"}, {"corpus": _corpus(auto)}, "scifact")
    assert "prebuilt" not in index.summary and index.summary["documents"] == 4
    assert "Building the index locally instead" in caplog.text
    with pytest.raises(HarnessError, match=f"prebuilt index {PREBUILT} is not in pyserini's cache") as error:
        build_stage(fetch, "index", {"prebuilt": "fetch"}, {"corpus": _corpus(fetch)}, "scifact")
    assert str(error.value).count(". ") == 0  # one sentence
    # A dataset pyserini publishes no index of is built, whatever the mode.
    assert "prebuilt" not in build_stage(fetch, "index", {"prebuilt": "fetch"}, {"corpus": _corpus(fetch)},
                                         "sample").summary


@pytest.mark.parametrize("mode, prebuilt", [("auto", "auto"), ("fetch", "fetch"), ("regenerate", "never")])
def test_the_runner_takes_prebuilt_indexes_in_fetch_and_auto_modes(store, mode, prebuilt):
    from harness import recipes
    from harness.runner import Runner

    steps = Runner(recipes.load("bm25-flat"), store, mode=mode).steps("sample")
    assert steps["index"].params.prebuilt == prebuilt


def _scifact_dir() -> Path | None:
    base = os.environ.get("HARNESS_BEIR_DIR")
    if base and (Path(base) / "scifact").is_dir():
        return Path(base) / "scifact"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_scifact_dir() is None, reason="set HARNESS_BEIR_DIR to a folder containing scifact/")
def test_scifact_matches_pyserini_2cr(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from harness.data.trec import write_run

    data = _scifact_dir()
    with open(data / "corpus.jsonl", encoding="utf-8") as lines:
        docs = [(d["_id"], d.get("title", ""), d.get("text", "")) for d in map(json.loads, lines)]
    qrels: dict[str, dict[str, int]] = {}
    with open(data / "qrels" / "test.tsv", encoding="utf-8") as lines:
        next(lines)  # header: query-id corpus-id score
        for line in lines:
            qid, docid, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[docid] = int(score)
    with open(data / "queries.jsonl", encoding="utf-8") as lines:
        queries = {q["_id"]: q["text"] for q in map(json.loads, lines) if q["_id"] in qrels}

    # pyserini 2CR: bm25-flat 0.6789, bm25-multifield 0.6647 (both run with --remove-query --hits 1000).
    expected = {"flat": 0.6789, "multifield": 0.6647}
    for fields, target in expected.items():
        build_index(docs, tmp_path / fields, fields=fields)
        # The same document, term and unique-term counts as pyserini's prebuilt index (its own check, unpatched).
        reader = java.import_pyserini("pyserini.index.lucene").LuceneIndexReader(str(tmp_path / fields))
        assert reader.validate(f"beir-v1.0.0-scifact.{fields}")
        run = search(tmp_path / fields, queries, k=1000, fields=fields, remove_query=True, threads=2)
        # Anserini's SearchCollection gives the batch_search oracle's run file, byte for byte.
        oracle = batch_search(tmp_path / fields, queries, k=1000, fields=fields, remove_query=True, threads=2)
        write_run(run, tmp_path / f"{fields}.trec", tag="t")
        write_run(oracle, tmp_path / f"{fields}.oracle.trec", tag="t")
        assert (tmp_path / f"{fields}.trec").read_bytes() == (tmp_path / f"{fields}.oracle.trec").read_bytes()
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"})
        per_query = evaluator.evaluate({qid: dict(hits) for qid, hits in run.items()})
        ndcg = sum(per_query.get(qid, {}).get("ndcg_cut_10", 0.0) for qid in qrels) / len(qrels)
        assert ndcg == pytest.approx(target, abs=0.0005), fields
