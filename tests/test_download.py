"""BEIR by name, fetched on first use from a local HTTP server: resumed, checked against the published MD5, atomic."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.cli import main
from harness.data import download, sample
from harness.data.beir_md5 import PUBLISHED, BeirZip
from harness.errors import HarnessError

NAME = "scifact"  # a catalog dataset with a published sum; the zip served holds the fixture's data


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files[<name>]` at `/<name>.zip`, honouring `Range: bytes=N-`; `server.cuts` responses
    are cut after half their body (the connection closes early, as a dropped download)."""

    def do_GET(self):  # http.server calls it by this name
        server = self.server
        data = server.files.get(self.path.rsplit("/", 1)[-1].removesuffix(".zip"))
        server.requests.append(self.headers.get("Range"))
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        if start >= len(data) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cuts:
            server.cuts -= 1
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A local BEIR mirror on a free port, set as HARNESS_BEIR_URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cuts = {}, [], 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HARNESS_BEIR_URL", f"http://127.0.0.1:{httpd.server_address[1]}/beir/{{name}}.zip")
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def beir_zip(source: Path, name: str) -> bytes:
    """A zip in BEIR's layout (`<name>/corpus.jsonl`, ...) of the dataset folder `source`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(source.rglob("*")):
            if file.is_file():
                archive.write(file, f"{name}/{file.relative_to(source)}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fixture_zip(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("zip") / NAME
    sample.build(folder)
    return beir_zip(folder, NAME)


def trust(monkeypatch, data: bytes) -> None:
    """Make `data` the published zip of NAME, for this test only (the package's table is never changed)."""
    monkeypatch.setitem(PUBLISHED, NAME, BeirZip(hashlib.md5(data).hexdigest(), len(data)))


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []


def test_first_use_downloads_and_scores_second_use_does_not_download(server, fixture_zip, monkeypatch, store, tmp_path):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    data, results = tmp_path / "data", tmp_path / "results"
    args = ["-q", "reproduce", "bm25-flat", "-d", NAME, "--retriever", "bm25s", "--data-dir", str(data),
            "--results-dir", str(results)]
    assert main(args) == 0
    assert server.requests == [None]
    assert leftovers(data) == [NAME]
    assert (data / NAME / "corpus.jsonl").read_bytes() == zipfile.ZipFile(io.BytesIO(fixture_zip)).read(
        f"{NAME}/corpus.jsonl")
    scores = json.loads(next(results.rglob(f"{NAME}.json")).read_text())["metrics"]
    assert 0 < scores["nDCG@10"] <= 1
    assert main(args) == 0
    assert server.requests == [None]  # the second use reads the unpacked copy


def test_default_data_folder_is_under_the_harness_home(server, fixture_zip, monkeypatch, store):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    monkeypatch.delenv("HARNESS_BEIR_DIR", raising=False)
    download.ensure(NAME, None, store.root, progress=False)
    assert (store.root / "beir" / NAME / "corpus.jsonl").is_file()


def test_an_interrupted_download_resumes_with_a_range_request(server, fixture_zip, monkeypatch, tmp_path):
    server.files[NAME], server.cuts = fixture_zip, 1
    trust(monkeypatch, fixture_zip)
    folder = download.fetch_beir(NAME, tmp_path, progress=False)
    half = len(fixture_zip) // 2
    assert server.requests == [None, f"bytes={half}-"]
    assert (folder / "qrels" / "test.tsv").is_file() and leftovers(tmp_path) == [NAME]


def test_a_part_left_by_an_earlier_run_is_resumed(server, fixture_zip, monkeypatch, tmp_path):
    server.files[NAME], server.cuts = fixture_zip, 10  # every attempt of this call is cut
    trust(monkeypatch, fixture_zip)
    with pytest.raises(HarnessError, match=f"Downloading '{NAME}' .* stopped after .* run the same command again"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert not (tmp_path / NAME).exists()
    assert leftovers(tmp_path) == [f".{NAME}.zip.part"]  # kept for the next run to resume
    have = (tmp_path / f".{NAME}.zip.part").stat().st_size
    assert 0 < have < len(fixture_zip)
    server.cuts = 0
    download.fetch_beir(NAME, tmp_path, progress=False)
    assert server.requests[-1] == f"bytes={have}-"
    assert leftovers(tmp_path) == [NAME]


def test_a_whole_part_left_by_a_killed_run_is_checked_without_downloading_again(server, fixture_zip, monkeypatch,
                                                                                tmp_path):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    (tmp_path / f".{NAME}.zip.part").write_bytes(fixture_zip)
    download.fetch_beir(NAME, tmp_path, progress=False)
    assert server.requests == [f"bytes={len(fixture_zip)}-"]  # answered 416: nothing left to send
    assert leftovers(tmp_path) == [NAME]


def test_a_half_made_folder_under_the_final_name_is_not_taken_for_the_dataset(server, fixture_zip, monkeypatch,
                                                                              tmp_path):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    (tmp_path / NAME / "qrels").mkdir(parents=True)
    with pytest.raises(HarnessError, match=f"{tmp_path / NAME} exists but is not a complete BEIR folder"):
        download.ensure(NAME, tmp_path, progress=False)
    assert server.requests == []


def test_a_zip_whose_md5_differs_from_the_published_one_is_refused(server, fixture_zip, tmp_path):
    server.files[NAME] = fixture_zip  # the package's sum is that of BEIR's real zip, not of this one
    with pytest.raises(HarnessError, match=f"MD5 {hashlib.md5(fixture_zip).hexdigest()}, not the "
                                           f"{PUBLISHED[NAME].md5} that BEIR publishes"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_a_missing_file_on_the_mirror_is_one_sentence(server, tmp_path):
    with pytest.raises(HarnessError, match=r"Downloading 'scifact' from http://127.0.0.1:\d+/beir/scifact.zip "
                                           r"failed \(HTTP 404"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_truncated_download_leaves_nothing_under_the_final_name(server, fixture_zip, monkeypatch, tmp_path):
    server.files[NAME], server.cuts = fixture_zip, 100
    trust(monkeypatch, fixture_zip)
    with pytest.raises(HarnessError, match="stopped after"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert not (tmp_path / NAME).exists() and not list(tmp_path.glob(f".{NAME}.unpacking*"))


def test_a_corrupt_zip_with_the_published_sum_leaves_nothing(server, monkeypatch, tmp_path):
    corrupt = b"PK\x03\x04" + os.urandom(4096)
    server.files[NAME] = corrupt
    trust(monkeypatch, corrupt)
    with pytest.raises(HarnessError, match=f"The zip of '{NAME}' is damaged"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_a_zip_without_beir_layout_is_refused(server, monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other/readme.txt", "not a dataset")
    server.files[NAME] = buffer.getvalue()
    trust(monkeypatch, buffer.getvalue())
    with pytest.raises(HarnessError, match=f"holds no {NAME}/corpus.jsonl"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_downloading_leaves_nothing(server, fixture_zip, monkeypatch, tmp_path):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    real_open = open

    class Full(io.FileIO):
        def write(self, data):
            _disk_full()

    def fake_open(path, mode="r", *args, **kwargs):
        return Full(path, mode.replace("b", "")) if "b" in mode and ("w" in mode or "a" in mode) else \
            real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(download, "open", fake_open, raising=False)
    with pytest.raises(HarnessError, match=f"The disk holding {tmp_path} filled up while fetching '{NAME}'"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_a_full_disk_while_unpacking_leaves_nothing(server, fixture_zip, monkeypatch, tmp_path):
    server.files[NAME] = fixture_zip
    trust(monkeypatch, fixture_zip)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", _disk_full)
    with pytest.raises(HarnessError, match="filled up"):
        download.fetch_beir(NAME, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_restricted_datasets_keep_their_instructions(tmp_path):
    with pytest.raises(HarnessError, match="not freely downloadable: register at http://participants-area.bioasq"):
        download.fetch_beir("bioasq", tmp_path, progress=False)


def test_every_public_catalog_dataset_has_a_published_sum():
    from harness.data.catalog import DATASETS

    public = {d.name for d in DATASETS.values() if d.public and d.name != "sample"}
    assert public == set(PUBLISHED)
    assert all(len(z.md5) == 32 and int(z.md5, 16) >= 0 for z in PUBLISHED.values())


def test_a_mirror_template_needs_the_name(monkeypatch):
    monkeypatch.setenv("HARNESS_BEIR_URL", "http://mirror.example/beir.zip")
    with pytest.raises(HarnessError, match="has no `{name}`"):
        download.url_for(NAME)
    monkeypatch.delenv("HARNESS_BEIR_URL")
    assert download.url_for(NAME) == "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"


def test_real_scifact_served_as_its_zip_scores_as_the_local_copy(beir_dir, server, monkeypatch, store, tmp_path):
    real = beir_zip(beir_dir / NAME, NAME)
    server.files[NAME] = real
    trust(monkeypatch, real)
    results = tmp_path / "results"
    common = ["-q", "reproduce", "bm25-flat", "-d", NAME, "--retriever", "bm25s", "--results-dir", str(results)]
    assert main([*common, "--data-dir", str(beir_dir)]) == 0
    local_copy = json.loads(next(results.rglob(f"{NAME}.json")).read_text())
    assert main([*common, "--data-dir", str(tmp_path / "data")]) == 0
    fetched = json.loads(next(results.rglob(f"{NAME}.json")).read_text())
    assert server.requests == [None]
    assert fetched["metrics"] == local_copy["metrics"] and fetched["metrics"]["nDCG@10"] > 0.5
    # byte-identical data: the same corpus artifact (its key hashes the files' content, not where they are)
    assert fetched["stages"][0]["key"] == local_copy["stages"][0]["key"]
