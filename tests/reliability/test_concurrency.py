"""Item 2: several processes on the same store and recipe at once: each artifact built once, same results.

The per-key lock makes the second process wait and then reuse what the first built; the watcher checks
that no reader ever sees a final artifact folder without its manifest.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.store import Store
from tests.reliability.killer import PROJECT, CliJob, Job, Watcher, child_env

N_PROCESSES = 3


def _start_all(commands, root):
    return [subprocess.Popen(cmd, cwd=PROJECT, env=child_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for cmd in commands]


def _finish(procs, timeout=300):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        outs.append((p.returncode, out, err))
    return outs


def test_concurrent_reproduce_builds_each_artifact_once(tmp_path, reliability):
    pytest.importorskip("bm25s")
    root = tmp_path / "home"
    watcher = Watcher(root)
    watcher.start()
    try:
        commands = [CliJob(["-q", "reproduce", "bm25-flat", "-d", "sample", "--retriever", "bm25s", "--mode",
                            "regenerate", "--results-dir", f"{{root}}/results-{i}"]).command(root)
                    for i in range(N_PROCESSES)]
        results = _finish(_start_all(commands, root))
    finally:
        watcher.stop()
    with reliability.trial("concurrency", f"{N_PROCESSES}x harness reproduce, same store and recipe"):
        for code, _out, err in results:
            assert code == 0, f"a concurrent run failed:\n{err[-2000:]}"
        built: dict[str, int] = {}
        reused: dict[str, int] = {}
        for _, out, _ in results:
            for line in out.splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[2] in ("regenerate", "reuse"):
                    counter = built if parts[2] == "regenerate" else reused
                    counter[parts[3]] = counter.get(parts[3], 0) + 1
        store = Store(root)
        assert set(built) == set(store.keys()), "an artifact in the store was not reported as built"
        assert all(n == 1 for n in built.values()), f"an artifact was built more than once: {built}"
        assert all(built.get(k, 0) + reused.get(k, 0) == N_PROCESSES for k in store.keys())
        scores = [json.loads(next((root / f"results-{i}").rglob("sample.json")).read_text())
                  for i in range(N_PROCESSES)]
        assert all(s["metrics"] == scores[0]["metrics"] for s in scores), "the runs disagree on the scores"
        assert all([st["key"] for st in s["stages"]] == [st["key"] for st in scores[0]["stages"]] for s in scores)
        for key in store.keys():
            assert store.check(key, full=True) == [], f"{key} has a corrupted manifest or file"
        assert not watcher.violations, watcher.violations[:3]
        assert not list((root / "partial").iterdir()) if (root / "partial").exists() else True


def test_concurrent_builds_of_one_resumable_key(tmp_path, reliability):
    """The stage path itself: several processes racing on one key through `Store.get_or_build`."""
    root = tmp_path / "home"
    job = Job("tests.reliability.toy_stage:STAGE", {"n_shards": 6, "rows_per_shard": 20, "shard_seconds": 0.1}, {})
    command = job.command(root)  # the spec file is written once, before the race
    watcher = Watcher(root)
    watcher.start()
    try:
        results = _finish(_start_all([command] * N_PROCESSES, root))
    finally:
        watcher.stop()
    with reliability.trial("concurrency", f"{N_PROCESSES} processes racing on one resumable key"):
        assert all(code == 0 for code, _, _ in results), [err[-1000:] for _, _, err in results]
        answers = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
        assert {a["key"] for a in answers} == {job.key}
        assert sum(a["built"] for a in answers) == 1, f"built {sum(a['built'] for a in answers)} times"
        store = Store(root)
        assert store.keys() == [job.key] and store.check(job.key, full=True) == []
        assert not watcher.violations, watcher.violations[:3]
