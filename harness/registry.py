"""The registry of published artifacts (`registry.yaml`) and its lock (`registry.lock`: commits and checksums)."""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from harness import fast_yaml
from harness.atomic import write_text_atomic
from harness.errors import HarnessError, close_matches
from harness.paths import registry_file

REGISTRY_PREFIX = "registry:"  # a recipe value naming a registry entry: `registry:<id>[@<commit>]` (see refs.py)
KINDS = ("corpus", "qrels", "run", "queries", "queries-filtered", "triples", "fewshot", "model")
SHA1 = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def safe_relpath(path: str, where: str) -> str:
    """A repository path that stays inside its folder: no absolute paths, no `..`, no backslashes."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or path.startswith("~") or "\x00" in path:
        raise HarnessError(f"{where}: file name {path!r} would leave the store folder; refusing it.")
    return path


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: Literal["corpus", "qrels", "run", "queries", "queries-filtered", "triples", "fewshot", "model"]
    repo: str
    repo_type: Literal["model", "dataset"] = "dataset"
    dataset: str | None = None
    files: list[str]
    access: Literal["public", "restricted"] = "public"
    licence: str = ""
    provenance: str
    known_gap: str | None = None
    # False when what was published cannot serve (an empty repository): the stage is regenerated instead.
    usable: bool = True
    # Why the repository name could not be confirmed from public evidence (shown by `harness plan`); None: confirmed.
    unverified: str | None = None
    # The ref that `harness lock` resolves to a commit instead of `main`, e.g. `refs/pr/1` where a conversion
    # pull request holds safetensors weights and `main` pickled ones; the lock always records the commit.
    revision: str | None = None
    note: str | None = None
    superseded_by: str | None = None

    @field_validator("files")
    @classmethod
    def _files_stay_inside(cls, value: list[str]) -> list[str]:
        for f in value:
            safe_relpath(f, "files")
        if not value:
            raise ValueError("an entry lists at least one file")
        return value

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)+", value):
            raise ValueError(f"id {value!r} must be lower-case path segments like 'inpars-v2/scifact/queries'")
        return value

    def matches(self, path: str) -> bool:
        """Whether a repository file belongs to this entry (exact paths, or the entry's glob patterns)."""
        return any(path == f or (any(c in f for c in "*?[") and fnmatch.fnmatch(path, f)) for f in self.files)


class LockedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str
    size: int

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not SHA256.match(value):
            raise ValueError("sha256 must be 64 hex digits")
        return value


class Lock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    revision: str
    files: dict[str, LockedFile]
    locked_at: str = ""

    @field_validator("revision")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not SHA1.match(value):  # a branch or tag name moves: never stored as a revision
            raise ValueError(f"revision {value!r} is not a 40-hex commit id")
        return value

    @field_validator("files")
    @classmethod
    def _paths(cls, value: dict) -> dict:
        for f in value:
            safe_relpath(f, "lock")
        return value


def _load_yaml(path: Path, raw: bytes | None = None) -> dict:
    """The mapping in a registry file (`raw`: its bytes, when already read)."""
    try:
        text = (path.read_bytes() if raw is None else raw).decode("utf-8")
        # libyaml's parser when present (the pure-Python loader is slow on registry.yaml), without
        # CSafeLoader's C composer, which crashes the interpreter on deeply nested input: see fast_yaml.
        data = fast_yaml.safe_load(text) or {}
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise HarnessError(f"{path}: not valid YAML ({problem}).") from None
    except RecursionError:
        raise HarnessError(f"{path}: nested too deeply to be a registry.") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries", []), list):
        raise HarnessError(f"{path}: expected a mapping with an `entries:` list.")
    unknown = sorted(str(k) for k in data if k not in ("version", "entries"))
    if unknown:  # a misspelt `entries:` would otherwise leave the registry silently empty
        raise HarnessError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: version, entries.")
    return data


def user_registry(store_root: Path) -> Path:
    return store_root / "registry.user.yaml"


def user_lock(store_root: Path) -> Path:
    return store_root / "registry.user.lock"


def project_lock() -> Path:
    return registry_file().with_suffix(".lock")


_T = TypeVar("_T")
_READ: dict[tuple[str, str], tuple[bytes, Any]] = {}  # (reader, file) → (the file's bytes, what they read as)


def _read_cached(path: Path, reader: Callable[[Path, bytes], _T]) -> _T:
    """`reader(path, the file's bytes)`, cached while the bytes are the same.

    Reading and comparing the bytes is cheap, parsing and validating them is not (the registry is asked
    for once per planned step); and unlike a cache keyed by modification time and size,
    a file rewritten in place within the file system's timestamp granularity is never served stale.
    """
    data = path.read_bytes()
    key = (reader.__name__, str(path))
    hit = _READ.get(key)
    if hit is not None and hit[0] == data:
        return hit[1]
    value = reader(path, data)  # an error is raised, not cached
    _READ.pop(key, None)
    _READ[key] = (data, value)
    if len(_READ) > 32:  # the oldest goes: a bound for processes reading many files (tests)
        del _READ[next(iter(_READ))]
    return value


def _entries(path: Path, data: bytes) -> tuple[Entry, ...]:
    """The validated entries of a registry file (shared between `Registry` objects: frozen models)."""
    out, seen = [], set()
    for i, raw in enumerate(_load_yaml(path, data).get("entries", [])):
        try:
            entry = Entry.model_validate(raw)
        except (ValidationError, HarnessError) as exc:
            ident = raw.get("id") if isinstance(raw, dict) else None
            where = ident if isinstance(ident, str) and ident.isprintable() and ident else f"entry {i + 1}"
            if isinstance(exc, HarnessError):  # a file name refused by safe_relpath
                raise HarnessError(f"{path}: {where}: {exc}") from None
            err = exc.errors()[0]
            raise HarnessError(f"{path}: {where}: {'.'.join(map(str, err['loc']))}: {err['msg']}.") from None
        if entry.id in seen:
            raise HarnessError(f"{path}: duplicate id {entry.id!r}.")
        seen.add(entry.id)
        out.append(entry)
    return tuple(out)


def _locks(path: Path, data: bytes) -> dict[str, Lock]:
    """The validated locks of a lock file (cached by `_read_cached`: callers get copies, see `locks`)."""
    out = {}
    try:
        raw = json.loads(data.decode("utf-8"))
        for entry_id, value in raw.get("entries", {}).items():
            out[entry_id] = Lock.model_validate(value)
    except (ValueError, ValidationError, AttributeError, TypeError) as exc:
        raise HarnessError(f"{path}: not a valid lock file ({str(exc).splitlines()[0]}).") from None
    return out


def locks(store_root: Path) -> dict[str, Lock]:
    """The project's locks, then the store's user locks (which win).

    Needs no `Registry`: pinning a model reference to its locked commit (as `harness plan` does for every
    step) reads the locks alone, not the ~200 registry entries (whose parsing and validation cost more).
    """
    out = {}
    for path in (project_lock(), user_lock(store_root)):
        if path.is_file():
            out.update(_read_cached(path, _locks))
    return out


class Registry:
    """The project's entries plus the user's own (published with `harness publish`), and both locks."""

    def __init__(self, store_root: Path, path: Path | None = None):
        self.store_root = store_root
        self.path = path or registry_file()
        self.entries: dict[str, Entry] = {}
        for source in (self.path, user_registry(store_root)):
            if source.is_file():
                for entry in _read_cached(source, _entries):
                    if entry.id in self.entries:
                        raise HarnessError(f"{source}: duplicate id {entry.id!r}.")
                    self.entries[entry.id] = entry

    def find(self, entry_id: str) -> Entry | None:
        """The entry, whatever its state (unusable, superseded), or None: for plans that report gaps."""
        return self.entries.get(entry_id)

    def get(self, entry_id: str) -> Entry:
        """The entry, to fetch: an error when it is absent, superseded or cannot serve (`usable: false`)."""
        if entry_id not in self.entries:
            raise HarnessError(f"No registry entry {entry_id!r}.{close_matches(entry_id, self.entries)}")
        entry = self.entries[entry_id]
        if entry.superseded_by:
            raise HarnessError(f"Registry entry {entry_id} is superseded by {entry.superseded_by}: use that id.")
        if not entry.usable:
            raise HarnessError(f"Registry entry {entry_id}: {entry.known_gap}; regenerate this stage instead.")
        return entry

    # --- locks ---------------------------------------------------------------------------------
    def lock_of(self, entry_id: str) -> Lock | None:
        return locks(self.store_root).get(entry_id)

    def write_lock(self, entry_id: str, lock: Lock, user: bool) -> Path:
        """Record a lock (atomically) in the project lock, or in the store's user lock."""
        from filelock import FileLock

        path = user_lock(self.store_root) if user else project_lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".flock"):
            data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"version": 1, "entries": {}}
            data["entries"][entry_id] = lock.model_dump()
            write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        return path

    def add_entry(self, entry: Entry) -> Path:
        """Append a user entry (from `harness publish`) to the store's user registry."""
        from filelock import FileLock

        path = user_registry(self.store_root)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".flock"):  # two publishes at once: neither entry is lost
            data: dict[str, Any] = _load_yaml(path) if path.is_file() else {"version": 1, "entries": []}
            data["entries"] = ([e for e in data["entries"] if e.get("id") != entry.id]
                               + [entry.model_dump(exclude_none=True)])
            write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        self.entries[entry.id] = entry
        return path


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

