"""Verifying the store: every artifact's files re-hashed against its manifest; corrupt ones reported or evicted."""

from __future__ import annotations

from harness.store import Store


def verify(store: Store, keys: list[str] | None = None, evict: bool = False, echo=print) -> int:
    """Re-hash artifacts against their manifests; report (and optionally evict) the corrupt ones."""
    bad = 0
    for key in keys or store.keys():
        problems = store.check(key, full=True)
        if problems:
            bad += 1
            echo(f"corrupt {key}: {'; '.join(problems)}" + ("  (evicted)" if evict else ""))
            if evict:
                store.evict(key)
    leftovers = sorted(p.name for p in store.partial.iterdir()) if store.partial.is_dir() else []
    echo(f"verified {len(keys or store.keys()) if not evict else '…'} artifact(s): {bad} corrupt"
         + (f"; {len(leftovers)} unfinished build(s) in {store.partial} (resumed by the next run)"
            if leftovers else ""))
    return bad
