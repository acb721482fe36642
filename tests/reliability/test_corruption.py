"""Item 4: a flipped byte, a truncated manifest, a deleted file: `harness verify` finds each, and a run never
uses the damaged artifact (it rebuilds or re-fetches it, and says so), ending with the original results.
"""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest

from harness.cli import main
from harness.store import Store

pytest.importorskip("bm25s")
RUN_ARGS = ["-q", "reproduce", "bm25-flat", "-d", "sample", "--retriever", "bm25s", "--mode", "regenerate"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store holding the bm25-flat pipeline of the sample, and the scores it gave."""
    root = tmp_path_factory.mktemp("corruption-base")
    assert main(["--home", str(root / "home"), *RUN_ARGS, "--results-dir", str(root / "res")]) == 0
    scores = json.loads(next((root / "res").rglob("sample.json")).read_text())
    return root / "home", scores


@pytest.fixture
def home(built, tmp_path):
    src, _ = built
    dest = tmp_path / "home"
    shutil.copytree(src, dest)
    return dest


def rerun(home, tmp_path, capsys):
    capsys.readouterr()
    code = main(["--home", str(home), *RUN_ARGS, "--results-dir", str(tmp_path / "res2")])
    out = capsys.readouterr()
    scores = json.loads(next((tmp_path / "res2").rglob("sample.json")).read_text())
    return code, out.out + out.err, scores


def verify(home, capsys):
    capsys.readouterr()
    code = main(["--home", str(home), "verify"])
    return code, capsys.readouterr().out


def damage_each(home):
    """(key, relative file) for the largest data file of every artifact in the store."""
    store = Store(home)
    out = []
    for key in store.keys():
        files = store.get(key, verify=False).manifest["files"]
        out.append((key, max(files, key=lambda f: (files[f]["size"], f))))
    return out


def flip_byte(path, rng, keep_mtime=False):
    stat = path.stat()
    data = bytearray(path.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _check_recovered(home, tmp_path, capsys, built, key, what):
    code, said, scores = rerun(home, tmp_path, capsys)
    assert code == 0, said
    assert key in said and "is corrupt" in said and "Rebuilding it" in said, f"the run did not say so:\n{said}"
    assert scores["metrics"] == built[1]["metrics"], "the rebuilt pipeline scores differently"
    code, out = verify(home, capsys)
    assert code == 0 and "0 corrupt" in out, out


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["rewritten", "mtime-restored"])
def test_flipped_byte_in_each_artifact(built, home, tmp_path, capsys, reliability, keep_mtime):
    rng = random.Random(7)
    for key, rel in damage_each(home):
        what = "flipped byte" + (" (mtime restored)" if keep_mtime else "")
        with reliability.trial("corruption", f"{what}: verify finds it"):
            case = tmp_path / key
            shutil.copytree(home, case)
            Store(case).get(key)  # a warm store: the file's size+mtime are cached as verified
            flip_byte(case / "artifacts" / key / rel, rng, keep_mtime)
            code, out = verify(case, capsys)
            assert code == 1 and key in out and rel in out and "sha256" in out, out
        with reliability.trial("corruption", f"{what}: a run rebuilds and says so"):
            _check_recovered(case, tmp_path / f"{key}-run", capsys, built, key, what)
        shutil.rmtree(case)


def test_truncated_manifest(built, home, tmp_path, capsys, reliability):
    for key, _ in damage_each(home):
        case = tmp_path / key
        shutil.copytree(home, case)
        manifest = case / "artifacts" / key / "manifest.json"
        with reliability.trial("corruption", "truncated manifest: verify finds it"):
            manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])
            code, out = verify(case, capsys)
            assert code == 1 and key in out and "manifest unreadable" in out, out
        with reliability.trial("corruption", "truncated manifest: a run rebuilds and says so"):
            _check_recovered(case, tmp_path / f"{key}-run", capsys, built, key, "truncated manifest")
        shutil.rmtree(case)


def test_deleted_file(built, home, tmp_path, capsys, reliability):
    for key, rel in damage_each(home):
        case = tmp_path / key
        shutil.copytree(home, case)
        with reliability.trial("corruption", "deleted file: verify finds it"):
            (case / "artifacts" / key / rel).unlink()
            code, out = verify(case, capsys)
            assert code == 1 and key in out and f"{rel} is missing" in out, out
        with reliability.trial("corruption", "deleted file: a run rebuilds and says so"):
            _check_recovered(case, tmp_path / f"{key}-run", capsys, built, key, "deleted file")
        shutil.rmtree(case)


def test_verify_evict_then_run(built, home, tmp_path, capsys, reliability):
    with reliability.trial("corruption", "verify --evict, then the run rebuilds the evicted artifact"):
        key, rel = damage_each(home)[0]
        (home / "artifacts" / key / rel).write_text("garbage")
        assert main(["--home", str(home), "verify", "--evict"]) == 1
        assert key not in Store(home).keys()
        code, said, scores = rerun(home, tmp_path, capsys)
        assert code == 0 and scores["metrics"] == built[1]["metrics"]
        assert f"regenerate {key}" in " ".join(said.split()), said
