"""The artifact store: immutable folders keyed by what produced them, written atomically, with manifests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.atomic import write_text_atomic
from harness.errors import HarnessError

MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the text that keys are hashed from."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def artifact_key(stage: str, version: int, params: dict, inputs: dict[str, str]) -> str:
    """The key of an artifact: stage name plus a hash of code version, parameters and input keys."""
    payload = canonical_json({"stage": stage, "version": version, "params": params, "inputs": inputs})
    return f"{stage}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"


def sha256_file(path: Path) -> str:
    """Streamed sha256 of a file, reading ahead while hashing.

    A reader thread fills a small bounded queue with 4 MiB chunks while this thread hashes (reads and hashlib
    both release the GIL), so the disk and the CPU work at the same time: the speed is that of the slower,
    not the sum of both. A file of one chunk or less is read and hashed in one go.
    """
    import queue
    import threading

    chunk_size = 4 * _HASH_CHUNK
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        with contextlib.suppress(AttributeError, OSError):  # a hint only (not on every OS or file system)
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        first = fh.read(chunk_size)
        digest.update(first)
        if len(first) < chunk_size:
            return digest.hexdigest()
        chunks: queue.Queue = queue.Queue(maxsize=4)  # at most 16 MiB read ahead
        stop = threading.Event()

        def read() -> None:
            try:
                while not stop.is_set() and (data := fh.read(chunk_size)):
                    chunks.put(data)
                chunks.put(None)
            except BaseException as error:  # noqa: BLE001 (handed to the hashing thread, which re-raises it)
                chunks.put(error)

        reader = threading.Thread(target=read, name="sha256-read-ahead", daemon=True)
        reader.start()
        try:
            while (data := chunks.get()) is not None:
                if isinstance(data, BaseException):
                    raise data
                digest.update(data)
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue, then let it end
                with contextlib.suppress(queue.Empty):
                    chunks.get(timeout=0.01)
            reader.join()
    return digest.hexdigest()


def default_home() -> Path:
    """`$HARNESS_HOME`, else `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")


@dataclass(frozen=True)
class Artifact:
    """A finished artifact in the store."""

    key: str
    path: Path
    manifest: dict

    def file(self, name: str) -> Path:
        """The path of one of the artifact's files; an error if the manifest does not list it."""
        if name not in self.manifest["files"]:
            raise HarnessError(f"Artifact {self.key} has no file {name!r} (it has {sorted(self.manifest['files'])}).")
        return self.path / name

    @property
    def summary(self) -> dict:
        return self.manifest.get("summary", {})


def environment() -> dict:
    """Versions and machine facts for a manifest, read without importing heavy libraries."""
    from importlib import metadata

    versions = {}
    for package in ("torch", "transformers", "pyserini", "bm25s", "huggingface_hub", "pytrec-eval-terrier"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "harness": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Store:
    """Artifacts under `<root>/artifacts/<key>/`, built in `<root>/partial/<key>/`, one lock per key.

    What `check` last hashed (each file's size, mtime and ctime, so that a warm run need not hash again)
    is kept beside the artifacts in `<root>/.verified/<key>.json`, never inside an artifact: an artifact
    folder is immutable once renamed into place.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_home()
        self.artifacts = self.root / "artifacts"
        self.partial = self.root / "partial"
        self.locks = self.root / "locks"
        self.verified = self.root / ".verified"

    # --- reading -------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.artifacts / key

    def get(self, key: str, verify: bool = True) -> Artifact | None:
        """The artifact if it is in the store and intact; None when absent. A corrupt one is an error."""
        path = self.path(key)
        if not path.is_dir():
            return None
        manifest = self._read_manifest(path)
        if verify:
            problems = self.check(key, manifest)
            if problems:
                raise CorruptArtifact(key, problems)
        return Artifact(key, path, manifest)

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.artifacts.iterdir()) if self.artifacts.is_dir() else []

    def _read_manifest(self, path: Path) -> dict:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
                raise ValueError("no files table")
            return manifest
        except (OSError, ValueError) as exc:
            raise CorruptArtifact(path.name, [f"manifest unreadable ({exc})"]) from None

    def check(self, key: str, manifest: dict | None = None, full: bool = False) -> list[str]:
        """What is wrong with an artifact: missing, resized or changed files (re-hashed when touched)."""
        path = self.path(key)
        try:
            manifest = manifest or self._read_manifest(path)
        except CorruptArtifact as exc:
            return exc.problems
        verified: dict = {}
        state = self.verified / f"{key}.json"
        with contextlib.suppress(OSError, ValueError):
            verified = json.loads(state.read_text())
            if not isinstance(verified, dict):
                verified = {}
        problems, seen = [], {}
        for name, meta in manifest["files"].items():
            file = path / name
            if file.is_symlink():
                problems.append(f"{name} is a symlink")
                continue
            try:
                stat = file.stat()
            except OSError:
                problems.append(f"{name} is missing")
                continue
            if stat.st_size != meta["size"]:
                problems.append(f"{name} has {stat.st_size} bytes, the manifest says {meta['size']}")
                continue
            # ctime too: a write whose mtime was set back (os.utime, cp -p, tar) still changes it.
            stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
            if not full and verified.get(name) == stamp:
                continue
            actual = sha256_file(file)
            if actual != meta["sha256"]:
                problems.append(f"{name} has sha256 {actual}, the manifest says {meta['sha256']}")
            else:
                seen[name] = stamp
        if not problems and seen:
            with contextlib.suppress(OSError):  # a read-only store is still checked, only not remembered
                write_text_atomic(state, json.dumps({**verified, **seen}))
        return problems

    # --- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock on one key, across processes and, on a shared file system, across machines.

        By default an fcntl lock (`filelock.FileLock`): released by the kernel when its holder dies, and
        honoured across nodes on NFSv4 (and NFSv3 with lockd), Lustre/GPFS/BeeGFS mounted with locking;
        some FUSE mounts (s3fs, gcsfuse, sshfs) and NFS mounted with `nolock` accept it but lock only the
        local machine. There, `HARNESS_LOCK=soft` uses a lock file created with O_EXCL instead, which
        every shared file system honours, but which a killed holder leaves behind: remove
        `<store>/locks/<key>.lock` by hand once no run holds it (docs/scaling.md).
        """
        from filelock import FileLock, SoftFileLock

        kind = os.environ.get("HARNESS_LOCK", "fcntl").strip().lower() or "fcntl"
        if kind not in ("fcntl", "soft"):
            raise HarnessError(f"HARNESS_LOCK={kind!r} is not a lock kind: use `fcntl` (the default) or `soft`.")
        self.locks.mkdir(parents=True, exist_ok=True)
        path = str(self.locks / f"{key}.lock")
        lock = SoftFileLock(path + ".soft") if kind == "soft" else FileLock(path)
        with lock:
            yield

    def get_or_build(
        self,
        key: str,
        build: Callable[[Building], None],
        *,
        kind: str,
        stage: str,
        params: dict,
        inputs: dict[str, str],
        resumable: bool = False,
        source: dict | None = None,
        on_corrupt: Callable[[CorruptArtifact], None] | None = None,
    ) -> tuple[Artifact, bool]:
        """The artifact under `key`, built by `build(building)` when absent; returns (artifact, built).

        The build happens in `<root>/partial/<key>`: a resumable stage finds there what a killed run
        left (its finished shards); any other stage starts from an empty folder. Nothing appears under
        `artifacts/` until the manifest is written and the folder renamed, which is atomic. The key's
        lock makes a second process wait, then find the finished artifact instead of building it again.
        A corrupt artifact is reported through `on_corrupt`, evicted and rebuilt.
        """
        with self.lock(key):
            try:
                found = self.get(key)
            except CorruptArtifact as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
                shutil.rmtree(self.path(key), ignore_errors=True)
                (self.verified / f"{key}.json").unlink(missing_ok=True)
                found = None
            if found is not None:
                return found, False
            work = self.partial / key
            if work.exists() and not resumable:
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            building = Building(key, work)
            started = time.time()
            build(building)
            shutil.rmtree(work / ".work", ignore_errors=True)
            links = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_symlink())
            if links:  # a link can point anywhere: an artifact holds its own bytes only
                raise HarnessError(
                    f"Stage {stage} put symlink(s) {links[:3]} into artifact {key}; refusing to store it.")
            files = {}
            for file in sorted(p for p in work.rglob("*") if p.is_file()):
                rel = file.relative_to(work).as_posix()
                if rel != MANIFEST:
                    files[rel] = {"sha256": sha256_file(file), "size": file.stat().st_size}
            manifest = {
                "key": key,
                "kind": kind,
                "stage": stage,
                "params": params,
                "inputs": inputs,
                "files": files,
                "summary": building.summary,
                "source": source,
                "environment": {**environment(), "device": building.device},
                "wall_time_s": round(time.time() - started, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            write_text_atomic(work / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work, final)
            return Artifact(key, final, manifest), True

    def evict(self, key: str) -> None:
        """Remove an artifact (e.g. a corrupt one) so that it is rebuilt or fetched again."""
        with self.lock(key):
            shutil.rmtree(self.path(key), ignore_errors=True)
            (self.verified / f"{key}.json").unlink(missing_ok=True)


@dataclass
class Building:
    """An artifact under construction: the work folder and what the stage reports about it."""

    key: str
    path: Path
    summary: dict = field(default_factory=dict)
    device: str = "cpu"

    @property
    def scratch(self) -> Path:
        """A folder for temporary files that are not part of the artifact (removed at the end)."""
        path = self.path / ".work"
        path.mkdir(exist_ok=True)
        return path


class CorruptArtifact(HarnessError):
    """An artifact whose files do not match its manifest."""

    def __init__(self, key: str, problems: list[str]):
        self.key, self.problems = key, problems
        super().__init__(
            f"Artifact {key} is corrupt: {'; '.join(problems)}. Run `harness verify --evict` to remove it, "
            "then run again to rebuild or re-fetch it."
        )
