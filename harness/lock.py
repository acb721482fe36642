"""Locking registry entries: a branch resolved to its commit, and every file's sha256 and size recorded."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness import hub
from harness.errors import HarnessError
from harness.registry import REGISTRY_PREFIX, Entry, Lock, LockedFile, Registry, now, safe_relpath
from harness.store import Store, sha256_file


def resolve_files(entry: Entry, revision: str) -> dict[str, int | None]:
    """The repository files the entry names at `revision` (patterns expanded), with sizes when known."""
    present = hub.list_files(entry.id, entry.repo, entry.repo_type, revision)
    chosen = {p: s for p, s in present.items() if entry.matches(p)}
    if entry.kind == "model" and any(p.endswith(".safetensors") for p in chosen):
        chosen = {p: s for p, s in chosen.items() if not p.endswith(".bin")}  # never pickles when safetensors exist
    exact_missing = [f for f in entry.files if not any(c in f for c in "*?[") and f not in present]
    if exact_missing or not chosen:
        raise HarnessError(f"{entry.id}: {entry.repo}@{revision[:12]} lacks {exact_missing or entry.files}.")
    for path in chosen:
        safe_relpath(path, f"{entry.id} ({entry.repo})")
    return chosen


def lock(registry: Registry, entry_id: str, store: Store, user: bool = False, echo=print) -> Lock:
    """Pin an entry: resolve its revision (the entry's `revision`, else `main`) to a commit, hash its files."""
    entry = registry.get(entry_id)
    revision = hub.resolve_revision(entry.id, entry.repo, entry.repo_type, entry.revision or "main")
    files = resolve_files(entry, revision)
    sums = {}
    store.root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lock-", dir=store.root))
    try:
        for path in files:
            file = hub.download_file(entry.id, entry.repo, entry.repo_type, revision, path, folder)
            sums[path] = LockedFile(sha256=sha256_file(file), size=file.stat().st_size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = Lock(revision=revision, files=sums, locked_at=now())
    where = registry.write_lock(entry_id, result, user=user)
    echo(f"locked {entry_id} at {entry.repo}@{revision} ({len(sums)} file(s)) in {where}")
    return result


def recipe_entry_ids(recipe_names: list[str] | None = None) -> dict[str, list[str]]:
    """Registry id → the recipes that use it (published stages and `registry:` references, every dataset)."""
    from harness import recipes
    from harness.data.catalog import expand, members

    used: dict[str, list[str]] = {}
    for name in recipe_names or recipes.available():
        recipe = recipes.load(name)
        for dataset in expand(recipe.datasets):
            for scored in members(dataset):
                ids = [recipe.published_id(stage, scored) for stage in recipe.published]
                for stage in recipe.stages:
                    for value in (recipe.stage_params(stage, scored) or {}).values():
                        if isinstance(value, str) and value.startswith(REGISTRY_PREFIX):
                            ids.append(value.removeprefix(REGISTRY_PREFIX).partition("@")[0])
                for entry_id in ids:
                    if entry_id and name not in used.setdefault(entry_id, []):
                        used[entry_id].append(name)
    return dict(sorted(used.items()))


def lock_all(registry: Registry, store: Store, every_entry: bool = False, echo=print) -> dict[str, Lock]:
    """Lock, in registry.lock, every entry a recipe uses (or every entry): the maintainer's `harness lock --all`.

    Entries that cannot serve (`usable: false`), superseded ones and ids a recipe names without an entry
    are listed, not locked. An entry that fails is reported and the others are still locked; the command
    then ends with one error naming the failures.
    """
    wanted = list(registry.entries) if every_entry else list(recipe_entry_ids())
    done: dict[str, Lock] = {}
    failed: list[str] = []
    for entry_id in wanted:
        entry = registry.find(entry_id)
        if entry is None or not entry.usable or entry.superseded_by:
            if entry is None:
                why = "no registry entry (a gap: the runner regenerates that stage)"
            elif not entry.usable:
                why = entry.known_gap or "not usable"
            else:
                why = f"superseded by {entry.superseded_by}"
            echo(f"skipped {entry_id}: {why}")
            continue
        try:
            done[entry_id] = lock(registry, entry_id, store, user=False, echo=echo)
        except HarnessError as exc:
            failed.append(entry_id)
            echo(f"failed {entry_id}: {exc}")
    if failed:
        raise HarnessError(f"{len(failed)} of {len(wanted)} entries could not be locked ({', '.join(failed)}); "
                           "see the lines above, fix the registry entries, and run `harness lock --all` again.")
    return done
