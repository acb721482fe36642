"""Registry, lock, fetch, verify and publish against a local server that speaks the Hub's API."""

from __future__ import annotations

import json

import pytest

from harness import hub as hub_client
from harness.data.trec import read_run
from harness.errors import HarnessError
from harness.fetch import fetch, fetch_for_stage
from harness.hub import NetworkUnavailable
from harness.lock import lock
from harness.publish import publish
from harness.registry import Entry, Registry
from harness.verify import verify

QUERIES = "\n".join(
    json.dumps({"doc_id": f"d{i}", "text": "doc", "query": f"what is {i}", "log_probs": [-0.5, -0.25, -0.1],
                "prompt_text": "p", "fewshot_examples": [], "score": 1.0 - i / 10})
    for i in range(5)
) + "\n"
RUN = "q1 Q0 d1 1 9.5 bm25\nq1 Q0 d2 2 8.0 bm25\nq2 Q0 d2 1 7.0 bm25\n"


@pytest.fixture
def hub(local_hub, store, tmp_path, monkeypatch):
    """The local Hub with repos laid out like the published ones; project lock redirected to tmp."""
    monkeypatch.setattr("harness.registry.project_lock", lambda: tmp_path / "registry.lock")
    monkeypatch.setattr(hub_client, "BACKOFF_S", 0.01)
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", _NoSleep())  # huggingface_hub's own backoff, not this test's subject
    from harness.models.tiny import materialize

    model_dir = materialize("tiny:t5", tmp_path / "models")
    local_hub.add_repo("inpars/generated-data", "dataset", {"scifact/queries_filtered_v2.jsonl": QUERIES,
                                                            "scifact/queries.jsonl": QUERIES})
    local_hub.add_repo("unicamp-dl/beir-runs", "dataset", {"bm25/run.beir-v1.0.0-scifact-flat.trec": RUN})
    local_hub.add_repo("zeta-alpha-ai/monot5-3b-inpars-v2-scifact", "model",
                       {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()})
    return local_hub


class _NoSleep:
    def __getattr__(self, name):
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(_seconds):
        return None


IDS = ["inpars-v2/scifact/queries-filtered", "bm25/scifact/flat-run", "inpars-v2/scifact/reranker"]


def test_lock_then_fetch_each_then_served_from_store_and_offline(hub, store, monkeypatch):
    registry = Registry(store.root)
    for entry_id in IDS:
        locked = lock(registry, entry_id, store, echo=lambda _: None)
        assert len(locked.revision) == 40 and locked.files
    for entry_id in IDS:
        artifact, fetched = fetch(entry_id, store, echo=lambda _: None)
        assert fetched and artifact.manifest["source"]["revision"] == registry.lock_of(entry_id).revision
    model = registry.lock_of("inpars-v2/scifact/reranker")
    assert "model.safetensors" in model.files and not any(f.endswith(".py") for f in model.files)
    seen = len(hub.requests)
    for entry_id in IDS:
        assert fetch(entry_id, store, echo=lambda _: None)[1] is False
    assert len(hub.requests) == seen  # served from the store without a request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    hub.down()
    run, _ = fetch_for_stage("bm25/scifact/flat-run", "retrieve", store, echo=lambda _: None)
    assert (run.path / "run.trec").read_text().startswith("q1 Q0 d1 1 9.500000")


def test_unlocked_entry_is_pinned_on_first_use_and_says_so(hub, store):
    said = []
    artifact, _ = fetch_for_stage("inpars-v2/scifact/queries-filtered", "filter", store, echo=said.append)
    assert any("not locked yet: pinning it now" in s for s in said)
    rows = [json.loads(line) for line in (artifact.path / "queries.jsonl").read_text().splitlines()]
    assert rows[0]["query_id"] == "syn-d0" and rows[0]["n_tokens"] == 3 and rows[0]["score"] == 1.0
    assert Registry(store.root).lock_of("inpars-v2/scifact/queries-filtered") is not None


def test_file_changed_on_server_after_locking_is_refused(hub, store):
    registry = Registry(store.root)
    lock(registry, "bm25/scifact/flat-run", store, echo=lambda _: None)
    hub.replace_file_in_place("unicamp-dl/beir-runs", "dataset", "bm25/run.beir-v1.0.0-scifact-flat.trec",
                              RUN.replace("9.5", "9.6").encode())
    with pytest.raises(HarnessError, match=r"has sha256 [0-9a-f]{64} .* the lock says [0-9a-f]{64}.*not using it"):
        fetch("bm25/scifact/flat-run", store, echo=lambda _: None)
    assert store.keys() == []  # nothing unverified in the store


def test_cut_download_is_retried_and_verified(hub, store):
    registry = Registry(store.root)
    lock(registry, "inpars-v2/scifact/queries-filtered", store, echo=lambda _: None)
    hub.cut_after("scifact/queries_filtered_v2.jsonl", 50)
    artifact, fetched = fetch("inpars-v2/scifact/queries-filtered", store, echo=lambda _: None)
    assert fetched and not store.check(artifact.key, full=True)


def test_server_errors_then_down(hub, store):
    registry = Registry(store.root)
    hub.fail_next(2, 503)
    lock(registry, "bm25/scifact/flat-run", store, echo=lambda _: None)  # a 503 burst is retried
    hub.down()
    with pytest.raises(NetworkUnavailable, match="cannot be reached|did not answer"):
        fetch("bm25/scifact/flat-run", store, echo=lambda _: None)


def test_missing_repo_and_file_get_one_sentence(hub, store):
    registry = Registry(store.root)
    registry.add_entry(Entry(id="user/x/run", kind="run", repo="nobody/nothing", files=["a.trec"], provenance="t"))
    with pytest.raises(HarnessError, match="repository does not exist"):
        lock(registry, "user/x/run", store, echo=lambda _: None)
    registry.add_entry(Entry(id="user/y/run", kind="run", repo="unicamp-dl/beir-runs", files=["nope.trec"],
                             provenance="t"))
    with pytest.raises(HarnessError, match="lacks"):
        lock(registry, "user/y/run", store, echo=lambda _: None)


def test_corrupted_store_file_is_found_by_verify_and_refetched(hub, store):
    said = []
    artifact, _ = fetch_for_stage("bm25/scifact/flat-run", "retrieve", store, echo=said.append)
    raw_key = artifact.manifest["inputs"]["download"]
    raw_file = next((store.path(raw_key) / "files").rglob("*.trec"))
    raw_file.write_text(RUN.replace("9.5", "1.5"))
    assert verify(store, echo=said.append) == 1 and any(raw_key in s for s in said)
    again, fetched = fetch("bm25/scifact/flat-run", store, echo=said.append)
    assert fetched and any("is corrupt" in s and "Fetching it again" in s for s in said)
    assert not store.check(again.key, full=True)


def test_entries_cannot_name_paths_outside_the_store():
    for bad in ("../etc/passwd", "/abs/path", "a/../../b"):
        with pytest.raises(Exception, match="leave the store"):
            Entry(id="user/a/run", kind="run", repo="a/b", files=[bad], provenance="t")


def test_publish_then_fetch_back(hub, store, tmp_path):
    def build(out):
        (out.path / "run.trec").write_text(RUN)

    artifact, _ = store.get_or_build("rerank-abc", build, kind="run", stage="rerank", params={}, inputs={})
    entry = publish(store, artifact.key, "me/my-runs", echo=lambda _: None)
    assert entry.id == "user/me--my-runs/run"
    fetched, _ = fetch_for_stage(entry.id, "retrieve", store, echo=lambda _: None)
    original = tmp_path / "original.trec"
    original.write_text(RUN)
    assert read_run(fetched.path / "run.trec") == read_run(original)


def test_reproduce_in_fetch_mode_evaluates_the_published_run(hub, store, sample_dir, tmp_path, capsys):
    """bm25-flat --mode fetch scores the published run instead of retrieving; same score as regenerating."""
    from harness.cli import main

    common = ["-q", "reproduce", "bm25-flat", "-d", "sample", "--retriever", "bm25s", "--data-dir", str(sample_dir),
              "--results-dir", str(tmp_path / "res")]
    assert main([*common, "--mode", "regenerate"]) == 0
    regenerated = json.loads(next((tmp_path / "res").rglob("sample.json")).read_text())
    run_key = next(s["key"] for s in regenerated["stages"] if s["stage"] == "retrieve")
    run_text = (store.path(run_key) / "run.trec").read_bytes()
    hub.add_repo("me/sample-runs", "dataset", {"bm25/run.sample-flat.trec": run_text})
    Registry(store.root).add_entry(Entry(id="bm25/sample/flat-run", kind="run", repo="me/sample-runs",
                                         files=["bm25/run.sample-flat.trec"], provenance="test"))
    capsys.readouterr()
    assert main([*common, "--mode", "fetch"]) == 0
    out = capsys.readouterr().out
    assert "retrieve  fetch" in out and "index" not in out  # no retrieval: the run came from the Hub
    fetched = json.loads(next((tmp_path / "res").rglob("sample.json")).read_text())
    assert fetched["metrics"]["nDCG@10"] == pytest.approx(regenerated["metrics"]["nDCG@10"], abs=1e-6)


# --- the paper's triples from the published ones ---------------------------------------------------
# Three queries, with 3, 1 and 2 published negatives, as `triples_train_v2.tsv` lays them out (one line
# per (query, negative) pair, a query's lines together, in BM25 rank order).
TRIPLES = "".join(f"{q}\tpos {q}\tneg {q} {n}\n" for q, k in (("what is a", 3), ("what is b", 1), ("what is c", 2))
                  for n in range(k))


def test_published_triples_become_one_negative_per_query(tmp_path):
    """The papers train one epoch over the filtered queries with one negative each (toolkit paper, arXiv
    2307.04601 section 3: "From this set, a random document is selected as the negative example"); the
    published file holds up to 100 per query (InPars 9865521 legacy/inpars-v1/generate_triples_train.py lines 18
    and 52, run by legacy/inpars-v2/train_inpars.py line 91)."""
    from harness.fetch import paper_triples
    from harness.stages.negatives import read_published_triples

    path = tmp_path / "triples_train_v2.tsv"
    path.write_text(TRIPLES)
    rows = list(paper_triples(read_published_triples(path)))
    assert [r["query"] for r in rows] == ["what is a", "what is b", "what is c"]
    for row in rows:
        assert row["positive"] == f"pos {row['query']}" and row["negative"].startswith(f"neg {row['query']} ")
    # The choice is a function of the query text: the same whatever the order of the lines.
    path.write_text("".join(reversed(TRIPLES.splitlines(keepends=True))))
    again = {r["query"]: r["negative"] for r in paper_triples(read_published_triples(path))}
    assert again == {r["query"]: r["negative"] for r in rows}
    # ... and a seeded draw, not always the first line: over many queries every position is chosen.
    many = "".join(f"q{i}\tp\tn{j}\n" for i in range(200) for j in range(3))
    path.write_text(many)
    chosen = {r["negative"] for r in paper_triples(read_published_triples(path))}
    assert chosen == {"n0", "n1", "n2"}


def test_fetched_negatives_stage_gives_one_triple_per_query(hub, store):
    hub.commit("inpars/generated-data", "dataset", {"scifact/triples_train_v2.tsv": TRIPLES})
    artifact, _ = fetch_for_stage("inpars-v2/scifact/triples", "negatives", store, echo=lambda _: None)
    rows = [json.loads(line) for line in (artifact.path / "triples.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len({r["query"] for r in rows}) == 3
    assert artifact.summary["published_triples"] == 6 and artifact.summary["triples"] == 3


# --- the preferred revision and `harness lock --all` ------------------------------------------------
def test_entry_revision_locks_the_pull_request_ref_with_safetensors(hub, store, tmp_path):
    """`revision: refs/pr/1` (a safetensors conversion pull request) is what the lock pins, not `main`."""
    from harness.models.tiny import materialize

    model_dir = materialize("tiny:t5", tmp_path / "models")
    files = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file() and p.suffix != ".safetensors"}
    hub.add_repo("org/pickled", "model", {**files, "pytorch_model.bin": b"pickled weights"})
    hub.set_ref("org/pickled", "model", "refs/pr/1", "main", tag=False)  # the pull request adds safetensors
    pr = hub.commit("org/pickled", "model", {"model.safetensors": (model_dir / "model.safetensors").read_bytes()},
                    branch="refs/pr/1", message="Adding `safetensors` variant of this model")
    registry = Registry(store.root)
    registry.add_entry(Entry(id="user/org/pickled", kind="model", repo="org/pickled", repo_type="model",
                             files=["*.json", "*.safetensors", "*.bin"], revision="refs/pr/1", provenance="t"))
    locked = lock(registry, "user/org/pickled", store, echo=lambda _: None)
    assert locked.revision == pr != hub.head("org/pickled", "model", "main")
    assert "model.safetensors" in locked.files and "pytorch_model.bin" not in locked.files


def test_lock_all_fills_the_project_lock_and_lists_what_it_skips(hub, store, tmp_path):
    import yaml

    from harness.lock import lock_all

    path = tmp_path / "registry.yaml"
    usable = [{"id": i, **{k: v for k, v in Registry(store.root).get(i).model_dump(exclude_none=True).items()
                            if k != "id"}} for i in IDS]
    gap = {"id": "inpars-v2/x/reranker", "kind": "model", "repo": "a/b", "files": ["*.json"], "provenance": "t",
           "usable": False, "known_gap": "the repository is empty"}
    path.write_text(yaml.safe_dump({"version": 1, "entries": [*usable, gap]}))
    registry = Registry(store.root, path=path)
    said: list[str] = []
    locked = lock_all(registry, store, every_entry=True, echo=said.append)
    assert sorted(locked) == sorted(IDS)
    written = json.loads((tmp_path / "registry.lock").read_text())["entries"]  # the project lock, not the user's
    assert sorted(written) == sorted(IDS)
    for value in written.values():
        assert len(value["revision"]) == 40 and all(len(f["sha256"]) == 64 for f in value["files"].values())
    assert any("skipped inpars-v2/x/reranker: the repository is empty" in s for s in said)


def test_lock_all_names_every_failure_in_one_error(hub, store, tmp_path):
    import yaml

    from harness.lock import lock_all

    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "entries": [
        {"id": "bm25/scifact/flat-run", "kind": "run", "repo": "unicamp-dl/beir-runs",
         "files": ["bm25/run.beir-v1.0.0-scifact-flat.trec"], "provenance": "t"},
        {"id": "bm25/msmarco/flat-run", "kind": "run", "repo": "unicamp-dl/beir-runs",
         "files": ["bm25/run.beir-v1.0.0-msmarco-flat"], "provenance": "t"}]}))
    with pytest.raises(HarnessError, match=r"1 of 2 entries could not be locked \(bm25/msmarco/flat-run\)"):
        lock_all(Registry(store.root, path=path), store, every_entry=True, echo=lambda _: None)
    assert "bm25/scifact/flat-run" in json.loads((tmp_path / "registry.lock").read_text())["entries"]


def test_recipe_entry_ids_lists_published_stages_and_registry_references():
    from harness.lock import recipe_entry_ids

    used = recipe_entry_ids(["inpars-v2"])
    assert "inpars-v2/scifact/reranker" in used and "bm25/cqadupstack/android/flat-run" in used
    assert "models/castorini--monot5-3b-msmarco-10k" in used and used["inpars-v2/scifact/queries"] == ["inpars-v2"]


def test_hub_copy_of_a_cqadupstack_forum_is_a_beir_folder(hub, store, tmp_path):
    """`--source hub` for `cqadupstack/<forum>`: BeIR/cqadupstack and BeIR/cqadupstack-qrels hold a folder per forum."""
    import gzip

    from harness.fetch import download_beir

    corpus = gzip.compress(b'{"_id": "1", "title": "t", "text": "how do I root"}\n')
    queries = gzip.compress(b'{"_id": "q1", "text": "root android"}\n')
    hub.add_repo("BeIR/cqadupstack", "dataset", {"android/corpus.jsonl.gz": corpus,
                                                 "android/queries.jsonl.gz": queries,
                                                 "gis/corpus.jsonl.gz": corpus, "gis/queries.jsonl.gz": queries})
    hub.add_repo("BeIR/cqadupstack-qrels", "dataset", {"android/test.tsv": "query-id\tcorpus-id\tscore\nq1\t1\t1\n",
                                                       "gis/test.tsv": "query-id\tcorpus-id\tscore\n"})
    folder = download_beir("cqadupstack/android", store, tmp_path / "android")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "corpus.jsonl.gz", "qrels/test.tsv", "queries.jsonl.gz"]
    assert (folder / "qrels" / "test.tsv").read_text().endswith("q1\t1\t1\n")


def test_lock_all_on_the_command_line_fills_registry_lock(hub, store, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setattr("harness.lock.recipe_entry_ids", lambda: {i: ["inpars-v2"] for i in [*IDS, "no/such/entry"]})
    assert main(["lock", "--all"]) == 0
    out = capsys.readouterr().out
    assert "locked 3 entries in registry.lock" in out and "skipped no/such/entry: no registry entry" in out
    assert sorted(json.loads((tmp_path / "registry.lock").read_text())["entries"]) == sorted(IDS)
    assert main(["lock", "--all", "--user"]) == 2  # the project's lock only
