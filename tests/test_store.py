"""The store: keys, atomic builds, reuse, corruption, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest

from harness.store import CorruptArtifact, Store, artifact_key


def _write(text):
    def build(out):
        (out.path / "a.txt").write_text(text)
        out.summary["n"] = len(text)

    return build


def _build(store, key, text="hello"):
    return store.get_or_build(key, _write(text), kind="test", stage="t", params={}, inputs={})


def test_key_depends_on_stage_version_params_and_inputs():
    base = artifact_key("retrieve", 1, {"k": 1000}, {"corpus": "c1"})
    assert base == artifact_key("retrieve", 1, {"k": 1000}, {"corpus": "c1"})
    assert base.startswith("retrieve-")
    others = {
        artifact_key("retrieve", 2, {"k": 1000}, {"corpus": "c1"}),
        artifact_key("retrieve", 1, {"k": 100}, {"corpus": "c1"}),
        artifact_key("retrieve", 1, {"k": 1000}, {"corpus": "c2"}),
        artifact_key("rerank", 1, {"k": 1000}, {"corpus": "c1"}),
    }
    assert base not in others and len(others) == 4


def test_build_writes_manifest_and_second_call_reuses(store):
    art, built = _build(store, "t-1")
    assert built and (art.path / "a.txt").read_text() == "hello"
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["files"]["a.txt"]["size"] == 5 and manifest["summary"] == {"n": 5}
    assert manifest["environment"]["python"] and "wall_time_s" in manifest
    again, built_again = _build(store, "t-1", "other")
    assert not built_again and (again.path / "a.txt").read_text() == "hello"


def test_failed_build_leaves_nothing_under_the_final_name(store):
    def boom(out):
        (out.path / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.get_or_build("t-2", boom, kind="test", stage="t", params={}, inputs={})
    assert store.get("t-2") is None and not store.path("t-2").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate-manifest", "delete"])
def test_corruption_is_detected_and_rebuilt(store, damage):
    art, _ = _build(store, "t-3")
    file = art.path / "a.txt"
    time.sleep(0.01)  # a new mtime, as any later write has
    if damage == "flip":
        file.write_bytes(b"jello")
    elif damage == "truncate-manifest":
        (art.path / "manifest.json").write_text('{"key": "t-3", "fil')
    else:
        file.unlink()
    assert store.check("t-3")
    with pytest.raises(CorruptArtifact, match="t-3 is corrupt"):
        store.get("t-3")
    seen = []
    fixed, built = store.get_or_build("t-3", _write("hello"), kind="test", stage="t", params={}, inputs={},
                                      on_corrupt=seen.append)
    assert built and seen and (fixed.path / "a.txt").read_text() == "hello" and not store.check("t-3")


def _race(root, key, out):
    store = Store(root)

    def slow(building):
        time.sleep(0.5)
        (building.path / "a.txt").write_text("x")

    _, built = store.get_or_build(key, slow, kind="test", stage="t", params={}, inputs={})
    out.put(built)


def test_two_processes_build_an_artifact_once(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(tmp_path, "t-4", out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted([out.get(timeout=5), out.get(timeout=5)]) == [False, True]


@pytest.mark.parametrize("size", [0, 1, (4 << 20) - 1, 4 << 20, (8 << 20) + 3])
def test_sha256_file_equals_hashlib_at_chunk_edges(tmp_path, size):
    import hashlib
    import os

    from harness.store import sha256_file

    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_check_keeps_its_state_beside_the_artifact_never_inside(store):
    """An artifact is immutable once built: `check` remembers what it hashed in `<store>/.verified/<key>.json`."""
    art, _ = _build(store, "t-9")
    before = sorted(p.name for p in art.path.iterdir())
    stats = {p.name: p.stat().st_mtime_ns for p in art.path.iterdir()}
    assert store.check("t-9") == []
    assert sorted(p.name for p in art.path.iterdir()) == before == ["a.txt", "manifest.json"]
    assert {p.name: p.stat().st_mtime_ns for p in art.path.iterdir()} == stats
    state = json.loads((store.root / ".verified" / "t-9.json").read_text())
    assert set(state) == {"a.txt"}
    store.evict("t-9")
    assert not (store.root / ".verified" / "t-9.json").exists()


def test_a_warm_check_rehashes_only_what_changed(store, monkeypatch):
    _build(store, "t-10")
    store.check("t-10")
    hashed = []
    import harness.store as store_mod

    real = store_mod.sha256_file
    monkeypatch.setattr(store_mod, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    assert store.check("t-10") == [] and hashed == []  # remembered: not hashed again
    assert store.check("t-10", full=True) == [] and hashed == ["a.txt"]


def test_atomic_write_replaces_whole_and_leaves_no_temporary_file(tmp_path):
    from harness.atomic import write_bytes_atomic, write_text_atomic

    path = tmp_path / "sub" / "pinned.json"
    write_text_atomic(path, "old")
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["pinned.json"]

    with pytest.raises(TypeError):
        write_bytes_atomic(path, "not bytes")  # type: ignore[arg-type]  # fails mid-write
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["pinned.json"]
