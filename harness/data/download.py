"""Fetching a BEIR dataset by name on first use: resumable download, published-MD5 check, atomic unpacking."""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from harness.data.beir_md5 import PUBLISHED
from harness.data.catalog import BEIR_URL, get_dataset
from harness.errors import HarnessError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ATTEMPTS = 3  # per call: a dropped connection is resumed this many times before giving up
TIMEOUT = 60  # seconds without a byte before a connection counts as dropped


class DownloadError(HarnessError):
    """A dataset could not be fetched (network, checksum, disk): the run goes on with the other datasets."""


def url_for(name: str) -> str:
    """The zip's URL: `$HARNESS_BEIR_URL` (a template with `{name}`, for a mirror), else BEIR's own."""
    template = os.environ.get("HARNESS_BEIR_URL") or BEIR_URL
    if "{name}" not in template:
        raise HarnessError(f"HARNESS_BEIR_URL={template!r} has no `{{name}}`: give a template such as "
                           "http://mirror.example/beir/{name}.zip.")
    return template.format(name=name)


def ensure(name: str, data_dir: Path | None = None, home: Path | None = None, *, progress: bool = True) -> None:
    """Make the catalog dataset `name` (a CQADupStack forum: its whole zip) present in the data folder."""
    from harness.data import beir

    if beir.locate(name, data_dir, home) is None:
        fetch_beir(name.split("/")[0], beir.data_dirs(data_dir, home)[0], progress=progress)


def fetch_beir(name: str, root: Path, *, progress: bool = True) -> Path:
    """`root/<name>` for the BEIR dataset `name`, downloaded, checked and unpacked there if missing.

    The zip is downloaded to `root/.<name>.zip.part` (resumed with an HTTP range request when a previous
    attempt stopped), checked against the MD5 that BEIR publishes, unpacked into a temporary folder and
    renamed into place: `root/<name>` exists only once complete. A lock keeps two runs from fetching
    the same dataset at once.
    """
    from filelock import FileLock

    dataset = get_dataset(name)
    if not dataset.public:
        raise HarnessError(f"Dataset {name!r} is not freely downloadable: {dataset.how_to_get}.")
    if name not in PUBLISHED:
        raise HarnessError(f"Dataset {name!r} has no published MD5 in harness/data/beir_md5.py, so the harness "
                           f"does not download it: {dataset.download_hint()}.")
    final = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(root / f".{name}.lock"))
    except OSError as exc:
        raise DownloadError(f"Cannot create the data folder {root} for {name!r} ({exc.strerror}): choose a writable "
                           "one with --data-dir or HARNESS_BEIR_DIR.") from None
    with lock:
        if _holds_dataset(final, dataset.subsets):  # another run fetched it while this one waited
            return final
        if final.exists():
            raise DownloadError(f"{final} exists but is not a complete BEIR folder (no corpus.jsonl): remove it to "
                                f"let the harness fetch {name!r} again, or complete it by hand.")
        part = root / f".{name}.zip.part"
        url = url_for(name)
        log.warning("downloading BEIR %s from %s into %s", name, url, root)
        try:
            _download(name, url, part, PUBLISHED[name].size, progress)
            _check_md5(name, url, part)
            _unpack(name, part, root)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                part.unlink(missing_ok=True)
                raise DownloadError(f"The disk holding {root} filled up while fetching {name!r} (the zip is "
                                   f"{PUBLISHED[name].size / 1e6:,.0f} MB, unpacked a few times more): free space "
                                   "or choose another folder with --data-dir, then run again.") from None
            raise DownloadError(f"Cannot write {name!r} into {root} ({exc.strerror or exc}): choose a writable "
                               "folder with --data-dir or HARNESS_BEIR_DIR.") from None
        part.unlink(missing_ok=True)
    return final


def _download(name: str, url: str, part: Path, size_hint: int, progress: bool) -> None:
    """Download `url` into `part`, resuming from its current length; retried on a dropped connection."""
    from tqdm import tqdm

    last: Exception | None = None
    for _ in range(ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                if have and response.status != 206:  # the server ignored the range: start over
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else size_hint
                with open(part, "ab" if have else "wb") as fh, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=f"{name}.zip",
                    disable=not progress, leave=False, dynamic_ncols=True,
                ) as bar:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
                received = part.stat().st_size
                if length is not None and received < total:
                    raise ConnectionError(f"connection closed after {received:,} of {total:,} bytes")
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the part is already whole
                return
            raise DownloadError(f"Downloading {name!r} from {url} failed (HTTP {exc.code} {exc.reason}): check the "
                               "URL (HARNESS_BEIR_URL) and run again, or unzip the dataset by hand into the data "
                               "folder.") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, EOFError) as exc:
            last = exc
            continue
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            last = exc  # http.client's IncompleteRead and socket errors
            continue
    got = part.stat().st_size if part.exists() else 0
    reason = getattr(last, "reason", None) or last
    if not got:
        raise DownloadError(f"Could not download {name!r} from {url} ({reason}): check the network or set "
                            "HARNESS_BEIR_URL to a mirror, or unzip the dataset by hand into the data folder "
                            "(--data-dir).")
    raise DownloadError(f"Downloading {name!r} from {url} stopped after {got:,} bytes ({reason}): run the same "
                        "command again to resume it, or check the network (HARNESS_BEIR_URL points at a mirror).")


def _check_md5(name: str, url: str, part: Path) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with open(part, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    expected = PUBLISHED[name].md5
    if digest.hexdigest() != expected:
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(f"The zip of {name!r} from {url} ({size:,} bytes) has MD5 {digest.hexdigest()}, not the "
                           f"{expected} that BEIR publishes: it was deleted; run again, or use another mirror "
                           "(HARNESS_BEIR_URL).")


def _unpack(name: str, zip_path: Path, root: Path) -> None:
    """Unzip into a temporary folder next to `root/<name>`, check the layout, and rename it into place."""
    tmp = root / f".{name}.unpacking-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp)  # zipfile drops absolute paths and `..` from member names
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            zip_path.unlink(missing_ok=True)
            raise DownloadError(f"The zip of {name!r} is damaged ({exc}) although its MD5 is the published one: "
                               "it was deleted; run again, or unzip the dataset by hand into the data folder.") \
                from None
        inner = tmp / name
        if not _holds_dataset(inner, get_dataset(name).subsets):
            zip_path.unlink(missing_ok=True)
            raise DownloadError(f"The zip of {name!r} holds no {name}/corpus.jsonl (BEIR's layout): it was deleted; "
                               "unzip the dataset by hand into the data folder.")
        os.rename(inner, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _holds_dataset(folder: Path, subsets: tuple[str, ...]) -> bool:
    if subsets:  # CQADupStack: one BEIR folder per forum
        return all((folder / s / "corpus.jsonl").is_file() for s in subsets)
    return (folder / "corpus.jsonl").is_file()
