"""Kill-and-resume machinery: run a build in a subprocess, SIGKILL it at a seeded point, resume, compare.

A `Job` is one stage build (or any command) against a store root. `kill_and_resume` copies a base store
(which already holds the inputs and the tiny models), kills the job one or more times, either after a
seeded random delay or once a seeded number of progress files (shards, checkpoints) have appeared in its
`partial/<key>` folder, then runs it to completion and returns the sha256 of every file of every final
artifact, to be compared with an uninterrupted run's. A `Watcher` thread polls `artifacts/` the whole
time: a folder there without a readable manifest is a violation (something half-written under a final
name).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 600
POLL_S = 0.005
# Same arithmetic in every child: one thread, no Hub, no tokenizer fork warnings.
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
             "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}


@dataclass
class Job:
    """A stage build run by `tests/reliability/_child.py` (stage, params, input keys) in a store."""

    stage: str
    params: dict
    inputs: dict[str, str]
    dataset: str = "sample"

    @property
    def key(self) -> str:
        from harness.store import artifact_key
        from tests.reliability._child import load_stage

        stage = load_stage(self.stage)
        params = stage.params.model_validate(self.params)
        return artifact_key(stage.name, stage.version, params.key_params(), dict(sorted(self.inputs.items())))

    def command(self, root: Path) -> list[str]:
        root.mkdir(parents=True, exist_ok=True)
        spec = root / f"kill-spec-{self.stage.replace(':', '-')}.json"
        spec.write_text(json.dumps({"store": str(root), "stage": self.stage, "params": self.params,
                                    "inputs": self.inputs, "dataset": self.dataset}))
        return [sys.executable, "-m", "tests.reliability._child", str(spec)]

    def progress_dir(self, root: Path) -> Path | None:
        return root / "partial" / self.key


@dataclass
class CliJob:
    """A `harness ...` command line against a store (`{root}` in an argument is the store root)."""

    args: list[str]

    def command(self, root: Path) -> list[str]:
        return [sys.executable, "-m", "harness.cli", "--home", str(root), *(a.format(root=root) for a in self.args)]

    def progress_dir(self, root: Path) -> Path | None:
        return root / "partial"


def child_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(CHILD_ENV)
    env["HARNESS_HOME"] = str(root)
    env["PYTHONPATH"] = str(PROJECT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Watcher(threading.Thread):
    """Polls `<root>/artifacts` and records every final-named folder seen without a readable manifest."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.root, self.violations, self.polls = root, [], 0
        self.max_progress_files = 0
        self.progress: Path | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        artifacts = self.root / "artifacts"
        while not self._halt.is_set():
            self.polls += 1
            try:
                names = os.listdir(artifacts)
            except FileNotFoundError:
                names = []
            for name in names:
                folder = artifacts / name
                if not folder.exists():
                    continue  # evicted between listdir and here
                try:
                    manifest = json.loads((folder / "manifest.json").read_text())
                    assert isinstance(manifest.get("files"), dict)
                except (OSError, ValueError, AssertionError) as exc:
                    if folder.exists():
                        self.violations.append(f"{name}: {type(exc).__name__} {exc}")
            if self.progress is not None:
                self.max_progress_files = max(self.max_progress_files, count_progress_files(self.progress))
            time.sleep(POLL_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def count_progress_files(folder: Path) -> int:
    """Finished work files (shards, checkpoints) under a build folder: not temporary, not the manifest."""
    count = 0
    for _dirpath, _, files in os.walk(folder):
        count += sum(1 for f in files if not f.endswith((".tmp", ".lock", ".incomplete")) and f != "manifest.json")
    return count


@dataclass
class Run:
    returncode: int
    seconds: float
    killed: bool
    how: str
    stdout: str = ""
    stderr: str = ""


def run_once(job, root: Path, *, kill_after_s: float | None = None, kill_at_files: int | None = None,
             watcher: Watcher | None = None) -> Run:
    """Run `job` in `root`; SIGKILL it after `kill_after_s` seconds or once `kill_at_files` progress files exist."""
    progress = job.progress_dir(root)
    out_path, err_path = root / "child.out", root / "child.err"
    started = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(job.command(root), cwd=PROJECT, env=child_env(root), stdout=out, stderr=err)
        killed, how = False, "ran to completion"
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > CHILD_TIMEOUT_S:
                    raise TimeoutError(f"{job} still running after {CHILD_TIMEOUT_S}s")
                due = kill_after_s is not None and elapsed >= kill_after_s
                if kill_at_files is not None and progress is not None and progress.exists():
                    due = due or count_progress_files(progress) >= kill_at_files
                if due:
                    files = count_progress_files(progress) if progress and progress.exists() else 0
                    os.kill(proc.pid, signal.SIGKILL)  # the process we started, by its id
                    proc.wait()
                    killed, how = True, f"killed at {elapsed:.2f}s with {files} progress file(s)"
                    break
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    if not killed and (kill_after_s is not None or kill_at_files is not None):
        how = "finished before the kill point"
    return Run(proc.returncode, time.monotonic() - started, killed, how, out_path.read_text(), err_path.read_text())


def artifact_sums(root: Path) -> dict[str, dict[str, str]]:
    """key → {file → sha256} for every finished artifact (the manifest itself left out: it holds times)."""
    out = {}
    artifacts = root / "artifacts"
    for folder in sorted(artifacts.iterdir()) if artifacts.is_dir() else []:
        manifest = json.loads((folder / "manifest.json").read_text())
        sums = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if rel in ("manifest.json", ".verified.json"):
                continue
            sums[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        assert set(sums) == set(manifest["files"]), f"{folder.name}: files differ from its manifest"
        assert all(manifest["files"][f]["sha256"] == s for f, s in sums.items()), f"{folder.name}: sums differ"
        out[folder.name] = sums
    return out


@dataclass
class Reference:
    sums: dict[str, dict[str, str]]
    seconds: float
    progress_files: int


def reference_run(job, base: Path, dest: Path) -> Reference:
    """An uninterrupted run in a copy of `base`: the sums every resumed run must match."""
    shutil.copytree(base, dest, symlinks=True)
    watcher = Watcher(dest)
    watcher.progress = job.progress_dir(dest)
    watcher.start()
    try:
        run = run_once(job, dest)
    finally:
        watcher.stop()
    assert run.returncode == 0, f"uninterrupted run failed:\n{run.stderr[-3000:]}"
    assert not watcher.violations, watcher.violations
    return Reference(artifact_sums(dest), run.seconds, watcher.max_progress_files)


@dataclass
class Trial:
    seed: int
    kills: list[str] = field(default_factory=list)
    landed: int = 0  # kills that hit a running build
    sums: dict[str, dict[str, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def kill_and_resume(job, base: Path, dest: Path, reference: Reference, seed: int) -> Trial:
    """Kill `job` 1-2 times at seeded points (a delay, or a count of progress files), then finish it."""
    rng = random.Random(seed)
    shutil.copytree(base, dest, symlinks=True)
    trial = Trial(seed)
    watcher = Watcher(dest)
    watcher.start()
    try:
        for _ in range(rng.randint(1, 2)):
            if reference.progress_files and rng.random() < 0.5:
                run = run_once(job, dest, kill_at_files=rng.randint(1, reference.progress_files))
            else:
                run = run_once(job, dest, kill_after_s=rng.uniform(0.0, reference.seconds))
            trial.kills.append(run.how)
            trial.landed += run.killed
            if not run.killed:
                assert run.returncode == 0, f"seed {seed}: run failed:\n{run.stderr[-3000:]}"
        final = run_once(job, dest)
        assert final.returncode == 0, f"seed {seed}: resumed run failed:\n{final.stderr[-3000:]}"
    finally:
        watcher.stop()
    trial.violations = watcher.violations
    trial.sums = artifact_sums(dest)
    partial = dest / "partial"
    trial.leftovers = sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []
    return trial
