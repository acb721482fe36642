"""Tests of the LocalHub test server, driven through the real huggingface_hub/transformers clients.

They pin down the Hub behaviours the harness relies on (revisions, caching, error classes) and the
fault-injection knobs, so a change in the installed client libraries shows up here first.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests import localhub
from tests.localhub import LocalHub, files_from_dir

# Make the fixture visible here even before tests/conftest.py re-exports it.
local_hub = localhub.local_hub

MODEL = "org/tiny-model"
DATASET = "org/tiny-corpus"


def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


# --------------------------------------------------------------------------------------------------
# Wiring: the fixture isolates the client from the real Hub and the user's cache
# --------------------------------------------------------------------------------------------------


def test_fixture_points_clients_at_local_hub(local_hub: LocalHub, tmp_path_factory: pytest.TempPathFactory):
    assert local_hub.url.startswith("http://127.0.0.1:")
    assert os.environ["HF_ENDPOINT"] == local_hub.url
    assert hf_constants.ENDPOINT == local_hub.url
    assert hf_constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(local_hub.url + "/")
    assert huggingface_hub.hf_api.api.endpoint == local_hub.url
    assert Path(hf_constants.HF_HUB_CACHE).is_relative_to(tmp_path_factory.getbasetemp())
    assert not any(Path(hf_constants.HF_HUB_CACHE).glob("*"))  # each test starts with an empty cache
    assert hf_constants.HF_HUB_DISABLE_TELEMETRY
    assert "HF_TOKEN" not in os.environ
    assert hf_hub_url(MODEL, "a.txt").startswith(local_hub.url + "/org/tiny-model/resolve/main/")


def test_no_token_is_sent(local_hub: LocalHub):
    local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    hf_hub_download(MODEL, "a.txt")
    HfApi().model_info(MODEL)
    assert local_hub.request_log
    assert all("authorization" not in seen.headers for seen in local_hub.request_log)


# --------------------------------------------------------------------------------------------------
# Downloads and revisions
# --------------------------------------------------------------------------------------------------


def test_hf_hub_download_at_sha_and_main(local_hub: LocalHub):
    v1 = local_hub.add_repo(MODEL, files={"config.json": b'{"v": 1}'})
    v2 = local_hub.commit(MODEL, "model", {"config.json": b'{"v": 2}'})
    assert len(v1) == len(v2) == 40 and v1 != v2

    assert _read(hf_hub_download(MODEL, "config.json", revision=v1)) == b'{"v": 1}'
    assert _read(hf_hub_download(MODEL, "config.json", revision=v2)) == b'{"v": 2}'
    main_path = hf_hub_download(MODEL, "config.json")
    assert _read(main_path) == b'{"v": 2}'
    assert f"/snapshots/{v2}/" in main_path  # main was resolved to the newest commit
    assert HfApi().model_info(MODEL).sha == v2
    assert HfApi().model_info(MODEL, revision=v1[:10]).sha == v1  # short shas resolve too


def test_cached_download_at_sha_makes_no_request(local_hub: LocalHub):
    sha = local_hub.add_repo(MODEL, files={"config.json": b"{}"})
    first = hf_hub_download(MODEL, "config.json", revision=sha)
    local_hub.requests.clear()
    assert hf_hub_download(MODEL, "config.json", revision=sha) == first
    assert local_hub.requests == []


def test_etags_follow_hub_conventions(local_hub: LocalHub):
    weights = os.urandom(2048)
    sha = local_hub.add_repo(MODEL, files={"config.json": b"{}", "model.safetensors": weights})
    regular = huggingface_hub.get_hf_file_metadata(hf_hub_url(MODEL, "config.json"))
    lfs = huggingface_hub.get_hf_file_metadata(hf_hub_url(MODEL, "model.safetensors", revision=sha))
    assert regular.commit_hash == lfs.commit_hash == sha
    assert regular.etag == hashlib.sha1(b"blob 2\0{}").hexdigest()  # git blob sha1
    assert lfs.etag == hashlib.sha256(weights).hexdigest()
    assert (regular.size, lfs.size) == (2, 2048)
    assert lfs.xet_file_data is None  # never advertise Xet: downloads stay plain HTTP


def test_single_segment_repo_id(local_hub: LocalHub):
    # Canonical repos ("bert-base-uncased") have no namespace; urls must still route.
    sha = local_hub.add_repo("canonical-model", files={"config.json": b"{}"})
    assert HfApi().model_info("canonical-model").sha == sha
    assert _read(hf_hub_download("canonical-model", "config.json")) == b"{}"


def test_snapshot_download(local_hub: LocalHub):
    files = {
        "config.json": b"{}",
        "sub/dir/vocab.txt": b"a\nb\n",
        "model.safetensors": b"\0" * 64,
        "docs/read me \u00e9.txt": b"unicode and spaces",
    }
    sha = local_hub.add_repo(MODEL, files=files)
    folder = Path(snapshot_download(MODEL))
    assert folder.name == sha
    assert files_from_dir(folder) == files
    only_json = Path(snapshot_download(MODEL, revision=sha, allow_patterns=["*.json"], cache_dir=folder.parent / "x"))
    assert sorted(files_from_dir(only_json)) == ["config.json"]


def test_dataset_repo(local_hub: LocalHub):
    v1 = local_hub.add_repo(DATASET, "dataset", {"corpus.jsonl": b'{"id": 1}\n'})
    v2 = local_hub.commit(DATASET, "dataset", {"queries.jsonl": b'{"id": "q1"}\n'})
    api = HfApi()
    assert api.dataset_info(DATASET).sha == v2
    assert api.dataset_info(DATASET, revision=v1).sha == v1
    assert api.repo_info(DATASET, repo_type="dataset").sha == v2
    siblings = {s.rfilename: s for s in api.dataset_info(DATASET, files_metadata=True).siblings}
    assert siblings["corpus.jsonl"].size == 10
    path = hf_hub_download(DATASET, "queries.jsonl", repo_type="dataset", revision=v2)
    assert _read(path) == b'{"id": "q1"}\n'
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(DATASET, "queries.jsonl", repo_type="dataset", revision=v1)
    # A model repo of the same name does not exist.
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(DATASET)


def test_list_repo_tree_and_paths_info(local_hub: LocalHub):
    weights = b"w" * 100
    v1 = local_hub.add_repo(MODEL, files={"README.md": b"# hi", "onnx/model.onnx": weights, "onnx/a/b.txt": b"b"})
    v2 = local_hub.commit(MODEL, "model", {"README.md": b"# changed"}, message="edit readme")
    api = HfApi()

    top = {e.path: e for e in api.list_repo_tree(MODEL)}
    assert sorted(top) == ["README.md", "onnx"]
    assert isinstance(top["onnx"], huggingface_hub.hf_api.RepoFolder)

    flat = {e.path: e for e in api.list_repo_tree(MODEL, recursive=True, revision=v1)}
    assert sorted(flat) == ["README.md", "onnx", "onnx/a", "onnx/a/b.txt", "onnx/model.onnx"]
    onnx = flat["onnx/model.onnx"]
    assert onnx.size == 100 and onnx.lfs is not None and onnx.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert flat["README.md"].lfs is None

    sub = [e.path for e in api.list_repo_tree(MODEL, path_in_repo="onnx")]
    assert sub == ["onnx/a", "onnx/model.onnx"]

    expanded = {e.path: e for e in api.list_repo_tree(MODEL, expand=True)}
    assert expanded["README.md"].last_commit.oid == v2
    assert expanded["README.md"].last_commit.title == "edit readme"

    infos = api.get_paths_info(MODEL, ["README.md", "onnx", "missing.txt"], revision=v2)
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "README.md"), ("RepoFolder", "onnx")]

    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(MODEL, path_in_repo="nope"))


def test_refs_commits_and_tags(local_hub: LocalHub):
    v1 = local_hub.add_repo(MODEL, files={"a.txt": b"1"})
    local_hub.set_ref(MODEL, "model", "v1.0", v1)
    v2 = local_hub.commit(MODEL, "model", {"a.txt": b"2"})
    api = HfApi()
    refs = api.list_repo_refs(MODEL)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", v2)]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", v1)]
    assert [c.commit_id for c in api.list_repo_commits(MODEL)] == [v2, v1]
    assert _read(hf_hub_download(MODEL, "a.txt", revision="v1.0")) == b"1"
    assert api.file_exists(MODEL, "a.txt") and not api.file_exists(MODEL, "b.txt")
    assert api.revision_exists(MODEL, "v1.0") and not api.revision_exists(MODEL, "v9")


# --------------------------------------------------------------------------------------------------
# Uploads
# --------------------------------------------------------------------------------------------------


def test_upload_file_then_download(local_hub: LocalHub, tmp_path: Path):
    api = HfApi()
    url = api.create_repo("tiny-upload", repo_type="dataset")
    assert url.repo_id == "local-user/tiny-upload"
    repo = url.repo_id
    assert api.create_repo(repo, repo_type="dataset", exist_ok=True).repo_id == repo

    info = api.upload_file(path_or_fileobj=b"hello", path_in_repo="data/a.txt", repo_id=repo, repo_type="dataset")
    assert info.oid == local_hub.head(repo, "dataset")
    assert _read(hf_hub_download(repo, "data/a.txt", repo_type="dataset", revision=info.oid)) == b"hello"

    # Uploading identical content is a no-op (the preupload oid lets the client skip it).
    same = api.upload_file(path_or_fileobj=b"hello", path_in_repo="data/a.txt", repo_id=repo, repo_type="dataset")
    assert same.oid == info.oid

    folder = tmp_path / "upload"
    (folder / "nested").mkdir(parents=True)
    (folder / "b.parquet").write_bytes(b"PAR1" * 10)
    (folder / "nested" / "c.txt").write_text("c")
    api.upload_folder(folder_path=folder, repo_id=repo, repo_type="dataset", path_in_repo="more")
    commit = api.create_commit(
        repo,
        operations=[
            huggingface_hub.CommitOperationDelete("data/a.txt"),
            huggingface_hub.CommitOperationAdd("README.md", b"---\nlicense: mit\n---\n"),
        ],
        commit_message="swap files",
        repo_type="dataset",
    )
    files = sorted(api.list_repo_files(repo, repo_type="dataset", revision=commit.oid))
    assert files == [".gitattributes", "README.md", "more/b.parquet", "more/nested/c.txt"]
    tree = {e.path: e for e in api.list_repo_tree(repo, repo_type="dataset", recursive=True)}
    assert tree["more/b.parquet"].lfs is not None  # LFS by extension, like the Hub's .gitattributes
    # The old commit still serves the deleted file.
    assert _read(hf_hub_download(repo, "data/a.txt", repo_type="dataset", revision=info.oid)) == b"hello"
    assert [c.title for c in api.list_repo_commits(repo, repo_type="dataset")][0] == "swap files"


# --------------------------------------------------------------------------------------------------
# transformers / datasets through the server
# --------------------------------------------------------------------------------------------------


def test_transformers_model_from_pretrained_at_sha(local_hub: LocalHub, tmp_path: Path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    original = transformers.BertModel(config)
    original.save_pretrained(tmp_path / "saved", safe_serialization=True)
    files = files_from_dir(tmp_path / "saved")
    assert "model.safetensors" in files
    sha = local_hub.add_repo(MODEL, files=files)
    # A later commit must not leak into a load pinned to `sha`.
    local_hub.commit(MODEL, "model", {"config.json": b'{"model_type": "bert", "hidden_size": 64}'})

    loaded = transformers.AutoModel.from_pretrained(MODEL, revision=sha)
    assert loaded.config.hidden_size == 32
    expected = original.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert any(path == f"/{MODEL}/resolve/{sha}/model.safetensors" for _, path in local_hub.requests)


def test_datasets_load_json_from_hub_url(local_hub: LocalHub):
    datasets = pytest.importorskip("datasets")
    rows = b"".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}).encode() + b"\n" for i in range(3))
    sha = local_hub.add_repo(DATASET, "dataset", {"corpus.jsonl": rows})
    url = hf_hub_url(DATASET, "corpus.jsonl", repo_type="dataset", revision=sha)
    ds = datasets.load_dataset("json", data_files=url, split="train")
    assert ds["_id"] == ["d0", "d1", "d2"]


# --------------------------------------------------------------------------------------------------
# Error classes
# --------------------------------------------------------------------------------------------------


def test_not_found_errors_map_to_hub_error_classes(local_hub: LocalHub):
    sha = local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "a.txt")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(MODEL, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(MODEL, "a.txt", revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(MODEL, "b.txt", revision=sha)
    assert local_hub.request_log[-1].path == f"/{MODEL}/resolve/{sha}/b.txt"


def test_gated_and_private_repos(local_hub: LocalHub):
    local_hub.add_repo("org/gated", files={"a.txt": b"secret"}, gated=True)
    local_hub.add_repo("org/private", files={"a.txt": b"secret"}, private=True)
    assert HfApi().model_info("org/gated").gated == "auto"  # metadata stays public, like on the Hub
    with pytest.raises(GatedRepoError) as excinfo:
        hf_hub_download("org/gated", "a.txt")
    assert excinfo.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as excinfo:
        hf_hub_download("org/gated", "a.txt", token="hf_wrong")
    assert excinfo.value.response.status_code == 403
    local_hub.tokens.add("hf_granted")
    assert _read(hf_hub_download("org/gated", "a.txt", token="hf_granted")) == b"secret"

    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("org/private")
    assert HfApi(token="hf_granted").model_info("org/private").private is True


# --------------------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------------------


def test_fail_next_burst_is_retried_by_hf_hub_download(local_hub: LocalHub):
    sha = local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    local_hub.fail_next(2, status=503)
    assert _read(hf_hub_download(MODEL, "a.txt", revision=sha)) == b"a"
    # The first HEAD fails fast (cache fallback), the second retry succeeds after one backoff.
    assert [m for m, _ in local_hub.requests] == ["HEAD", "HEAD", "HEAD", "GET"]


def test_fail_next_surfaces_status_on_api_calls(local_hub: LocalHub):
    local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    local_hub.fail_next(1, status=500, match="/api/")
    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi().model_info(MODEL)
    assert excinfo.value.response.status_code == 500
    assert HfApi().model_info(MODEL).id == MODEL  # burst over


def test_cut_download_is_resumed_with_range(local_hub: LocalHub, monkeypatch):
    # huggingface_hub only writes whole DOWNLOAD_CHUNK_SIZE (10 MiB) chunks, so it can only resume
    # past a complete chunk; shrink the chunk so a small file shows the Range-resume path.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 8192)
    payload = os.urandom(200_000)
    sha = local_hub.add_repo(MODEL, files={"model.safetensors": payload})
    local_hub.cut_after("model.safetensors", 50_000)
    assert _read(hf_hub_download(MODEL, "model.safetensors", revision=sha)) == payload
    gets = [seen for seen in local_hub.request_log if seen.method == "GET"]
    assert [g.headers.get("range") for g in gets] == [None, f"bytes={50_000 // 8192 * 8192}-"]


def test_cut_within_first_chunk_restarts_download(local_hub: LocalHub):
    payload = os.urandom(200_000)
    sha = local_hub.add_repo(MODEL, files={"model.safetensors": payload})
    local_hub.cut_after("model.safetensors", 50_000)
    assert _read(hf_hub_download(MODEL, "model.safetensors", revision=sha)) == payload
    gets = [seen for seen in local_hub.request_log if seen.method == "GET"]
    assert [g.headers.get("range") for g in gets] == [None, None]  # nothing was kept to resume from


def test_cut_response_is_an_incomplete_read_for_plain_clients(local_hub: LocalHub):
    local_hub.add_repo(MODEL, files={"big.bin": b"x" * 10_000})
    local_hub.cut_after("big.bin", 100)
    with urllib.request.urlopen(hf_hub_url(MODEL, "big.bin")) as response:
        assert response.headers["Content-Length"] == "10000"
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    with urllib.request.urlopen(hf_hub_url(MODEL, "big.bin")) as response:  # one-shot
        assert len(response.read()) == 10_000


def test_range_requests(local_hub: LocalHub):
    local_hub.add_repo(MODEL, files={"a.bin": bytes(range(100))})
    url = hf_hub_url(MODEL, "a.bin")

    def fetch(range_header: str):
        request = urllib.request.Request(url, headers={"Range": range_header})
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers["Content-Range"], response.read()

    assert fetch("bytes=10-19") == (206, "bytes 10-19/100", bytes(range(10, 20)))
    assert fetch("bytes=95-") == (206, "bytes 95-99/100", bytes(range(95, 100)))
    assert fetch("bytes=-3") == (206, "bytes 97-99/100", bytes(range(97, 100)))
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        fetch("bytes=100-")
    assert excinfo.value.code == 416


def test_down_and_up(local_hub: LocalHub):
    sha = local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    cached = hf_hub_download(MODEL, "a.txt")  # warms the cache, including refs/main
    url = local_hub.url
    local_hub.down()
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(url + "/api/whoami-v2", timeout=5).close()
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    with pytest.raises(Exception) as excinfo:
        HfApi().model_info(MODEL)
    assert "connect" in type(excinfo.value).__name__.lower()  # httpx-style ConnectError
    # hf_hub_download falls back to the cache when the Hub is unreachable.
    assert hf_hub_download(MODEL, "a.txt") == cached
    local_hub.up()
    assert local_hub.url == url
    assert HfApi().model_info(MODEL).sha == sha


def test_down_without_cache_raises_local_entry_not_found(local_hub: LocalHub, monkeypatch):
    sha = local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    local_hub.down()
    # Skip the client's exponential backoff (about 23 s) between connection retries; only the
    # `time` name inside huggingface_hub's http module is replaced, not the global time.sleep.
    monkeypatch.setattr(huggingface_hub.utils._http, "time", SimpleNamespace(sleep=lambda _: None))
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(MODEL, "a.txt", revision=sha)


def test_slow(local_hub: LocalHub):
    local_hub.add_repo(MODEL, files={"a.txt": b"a"})
    local_hub.slow(0.3)
    start = time.monotonic()
    HfApi().model_info(MODEL)
    assert time.monotonic() - start >= 0.3
    local_hub.slow(0)


def test_replace_file_in_place(local_hub: LocalHub, tmp_path: Path):
    sha = local_hub.add_repo(MODEL, files={"a.txt": b"old", "b.txt": b"bbb"})
    hf_hub_download(MODEL, "a.txt", revision=sha)
    local_hub.replace_file_in_place(MODEL, "model", "a.txt", b"new!")
    assert local_hub.head(MODEL) == sha  # no new commit
    # Pinned and cached: the client never asks again.
    local_hub.requests.clear()
    assert _read(hf_hub_download(MODEL, "a.txt", revision=sha)) == b"old"
    assert local_hub.requests == []
    # huggingface_hub 2.4 quirk: force_download fetches the new blob (new ETag) but keeps the
    # existing snapshot symlink, so the returned file still holds the old bytes.
    assert _read(hf_hub_download(MODEL, "a.txt", revision=sha, force_download=True)) == b"old"
    assert [m for m, _ in local_hub.requests] == ["HEAD", "GET"]
    # A fresh cache sees the new content under the same revision.
    assert _read(hf_hub_download(MODEL, "a.txt", revision=sha, cache_dir=tmp_path / "c1")) == b"new!"

    # keep_metadata: the server still advertises the old checksum while serving other bytes.
    advertised = {e.path: e.blob_id for e in HfApi().list_repo_tree(MODEL, revision=sha)}
    local_hub.replace_file_in_place(MODEL, "model", "b.txt", b"BBB", keep_metadata=True)
    assert {e.path: e.blob_id for e in HfApi().list_repo_tree(MODEL, revision=sha)} == advertised
    fresh = hf_hub_download(MODEL, "b.txt", revision=sha, cache_dir=tmp_path / "c2")
    assert _read(fresh) == b"BBB"
    assert Path(fresh).resolve().name == advertised["b.txt"]  # stored under the advertised ETag
