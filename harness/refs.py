"""`registry:<id>[@<commit>]` references in recipes: pinned to the locked commit, resolved to fetched files."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.registry import REGISTRY_PREFIX, locks
from harness.store import Store

__all__ = ["REGISTRY_PREFIX", "pin_registry_refs", "registry_files"]


def pin_registry_refs(params: dict, store_root: Path, offline_ok: bool = False) -> dict:
    """`registry:<id>` values → `registry:<id>@<locked commit>`, so the commit is part of artifact keys.

    An entry not locked yet is pinned now (it needs the network); with `offline_ok` (planning) it is
    left as it is.
    """
    out = dict(params)
    for name, value in params.items():
        if isinstance(value, str) and value.startswith(REGISTRY_PREFIX) and "@" not in value:
            entry_id = value.removeprefix(REGISTRY_PREFIX)
            locked = locks(store_root).get(entry_id)
            if locked is None:
                if offline_ok:
                    continue
                from harness.lock import lock
                from harness.registry import Registry

                locked = lock(Registry(store_root), entry_id, Store(store_root), user=True)
            out[name] = f"{value}@{locked.revision}"
    return out


def registry_files(ref: str, store: Store, echo=print) -> Path:
    """The folder of files of `registry:<id>[@<commit>]`, fetched at its locked commit, every file checked.

    A commit in the reference (pinned when the step was planned) must be the locked one still.
    """
    from harness.fetch import fetch

    entry_id, _, expected = ref.removeprefix(REGISTRY_PREFIX).partition("@")
    artifact, _ = fetch(entry_id, store, echo=echo)
    revision = artifact.summary.get("revision")
    if expected and revision != expected:
        raise HarnessError(
            f"{entry_id} is locked at {revision}, but this step was planned with {expected}: "
            "the lock changed during the run; run again."
        )
    return artifact.path / "files"
