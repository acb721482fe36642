"""Executors: local and Ray run the same shards to the same bytes, skip finished shards, survive a lost worker."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.executors import LocalExecutor, RayExecutor, ShardedWork, get_executor


class ToyWork(ShardedWork):
    """Deterministic shards of hashed rows; `kill_flag`: the worker running shard `kill_at` dies once,
    halfway through writing it (a worker lost mid-shard), and the flag file records that it did."""

    def __init__(self, folder: Path, rows: int = 30, kill_flag: Path | None = None, kill_at: int = 2):
        self.folder, self.rows, self.kill_flag, self.kill_at = folder, rows, kill_flag, kill_at
        folder.mkdir(parents=True, exist_ok=True)

    def file(self, i: int) -> Path:
        return self.folder / f"{i:05d}.txt"

    def done(self, i: int) -> bool:
        return self.file(i).is_file()

    def setup(self) -> None:
        self._salt = "toy"  # state made once per worker, never pickled

    def run_shard(self, i: int, progress=None) -> dict:
        lines = [f"{i}:{r}\t{hashlib.sha256(f'{self._salt}{i}:{r}'.encode()).hexdigest()}\n" for r in range(self.rows)]
        tmp = self.file(i).with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.writelines(lines[: self.rows // 2])
            fh.flush()
            if self.kill_flag is not None and i == self.kill_at and not self.kill_flag.exists():
                self.kill_flag.write_text(str(os.getpid()))
                os._exit(1)  # the worker process dies with a half-written temporary file
            fh.writelines(lines[self.rows // 2 :])
        os.replace(tmp, self.file(i))
        if progress:
            progress(1)
        return {"items": 1, "pid": os.getpid()}


def shard_bytes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_local_executor_sets_up_once_runs_missing_shards_in_order(tmp_path):
    work = ToyWork(tmp_path / "shards")
    work.file(1).write_text("finished by an earlier run\n")
    seen, ticks = [], []
    results = LocalExecutor().map(work, range(4), lambda i, r: seen.append(i), progress=ticks.append)
    assert seen == [0, 2, 3] and sorted(results) == [0, 2, 3] and sum(ticks) == 3
    assert work.file(1).read_text() == "finished by an earlier run\n"  # present: skipped, not recomputed
    assert "_salt" not in work.__getstate__()  # what setup made stays in the worker


def test_nothing_to_do_sets_nothing_up(tmp_path):
    class NoSetup(ToyWork):
        def setup(self):
            raise AssertionError("setup without a shard to run")

    work = NoSetup(tmp_path / "shards")
    for i in range(2):
        work.file(i).write_text("done\n")
    assert LocalExecutor().map(work, range(2)) == {}


def test_executor_names_and_a_missing_ray(monkeypatch):
    import sys

    assert get_executor("local").name == "local"
    with pytest.raises(HarnessError, match="Executors: local, ray"):
        get_executor("dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(HarnessError, match=r"pip install 'harness\[ray\]'"):
        get_executor("ray")._ray()


def test_ray_options_need_the_ray_executor(capsys):
    from harness.cli import main

    assert main(["reproduce", "smoke", "--ray-workers", "2"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_soft_locks_for_file_systems_without_fcntl(store, monkeypatch):
    monkeypatch.setenv("HARNESS_LOCK", "soft")
    with store.lock("k"):
        assert (store.locks / "k.lock.soft").exists()
    assert not (store.locks / "k.lock.soft").exists()  # released: the lock file is gone
    monkeypatch.setenv("HARNESS_LOCK", "nfs")
    with pytest.raises(HarnessError, match="HARNESS_LOCK"), store.lock("k"):
        pass


# --- on a local Ray cluster ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray cluster on this machine, shared by this module's tests (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_writes_the_local_bytes_and_skips_finished_shards(tmp_path, ray_cluster):
    local, remote = ToyWork(tmp_path / "local"), ToyWork(tmp_path / "ray")
    LocalExecutor().map(local, range(6))
    remote.file(4).write_bytes(local.file(4).read_bytes())
    before = remote.file(4).stat().st_mtime_ns
    done = []
    results = RayExecutor(num_workers=2).map(remote, range(6), lambda i, r: done.append(i))
    assert sorted(done) == sorted(results) == [0, 1, 2, 3, 5]  # shard 4 was there: not run again
    assert remote.file(4).stat().st_mtime_ns == before
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local")
    assert len({r["pid"] for r in results.values()}) == 2  # two workers shared the shards


def test_a_worker_killed_mid_shard_is_replaced_and_its_shard_retried(tmp_path, ray_cluster):
    local = ToyWork(tmp_path / "local")
    LocalExecutor().map(local, range(6))
    flag = tmp_path / "killed"
    work = ToyWork(tmp_path / "ray", kill_flag=flag, kill_at=2)
    done = []
    results = RayExecutor(num_workers=2).map(work, range(6), lambda i, r: done.append(i))
    assert flag.exists(), "the worker was not killed"
    assert sorted(done) == list(range(6))  # every shard reported once: none lost, none twice
    assert shard_bytes(tmp_path / "ray") == shard_bytes(tmp_path / "local")  # no half-written shard, no .tmp
    assert int(flag.read_text()) != results[2]["pid"]  # shard 2 finished on a new worker process


@pytest.mark.slow
def test_a_worker_that_keeps_dying_stops_the_run_with_a_sentence(tmp_path, ray_cluster):
    class AlwaysDies(ToyWork):
        def run_shard(self, i, progress=None):
            os._exit(1)

    with pytest.raises(HarnessError, match="died more than 1 times.*run the same command again"):
        RayExecutor(num_workers=1, max_retries=1).map(AlwaysDies(tmp_path / "shards"), range(2))


@pytest.mark.slow
def test_a_stage_error_on_a_worker_reaches_the_driver_as_itself(tmp_path, ray_cluster):
    class Refuses(ToyWork):
        def run_shard(self, i, progress=None):
            raise HarnessError(f"shard {i} refused")

    with pytest.raises(HarnessError, match="refused"):
        RayExecutor(num_workers=1).map(Refuses(tmp_path / "shards"), range(2))


def artifact_sums(home: Path) -> dict[str, dict[str, str]]:
    """Every artifact's key → its files' sha256, from the manifests."""
    sums = {}
    for manifest in sorted((home / "artifacts").glob("*/manifest.json")):
        files = json.loads(manifest.read_text())["files"]
        sums[manifest.parent.name] = {name: meta["sha256"] for name, meta in sorted(files.items())}
    return sums


@pytest.mark.slow
def test_smoke_on_ray_builds_the_local_artifacts(tmp_path, monkeypatch, ray_cluster, capsys):
    """The smoke recipe through the CLI, once in-process and once on the Ray cluster: same keys, same bytes."""
    from harness.cli import main

    homes = {}
    for executor in ("local", "ray"):
        homes[executor] = tmp_path / executor
        monkeypatch.setenv("HARNESS_HOME", str(homes[executor]))
        assert main(["-q", "reproduce", "smoke", "--executor", executor, "--results-dir",
                     str(tmp_path / f"results-{executor}")]) == 0
        assert "(0 reused" in capsys.readouterr().out
    local, remote = artifact_sums(homes["local"]), artifact_sums(homes["ray"])
    assert {k.split("-")[0] for k in local} >= {"generate", "filter", "rerank"}
    assert remote == local
