"""Against the real Hub (`-m network`): every registry entry a recipe uses is locked in registry.lock and resolves.

This is the release check for `harness lock --all`: it fails while registry.lock ships without an entry a
recipe uses (users would then pin it on first use), and when a locked commit or file is gone from the Hub.
Entries a recipe names without a registry entry, or marked `usable: false`, are gaps the runner regenerates;
they are not this test's subject.
"""

from __future__ import annotations

import pytest

from harness import hub
from harness.errors import HarnessError
from harness.lock import recipe_entry_ids
from harness.registry import Registry, locks

pytestmark = pytest.mark.network


def test_every_recipe_entry_is_locked_and_resolves_on_the_hub(tmp_path):
    registry = Registry(tmp_path)  # an empty store: the project's registry and registry.lock alone
    locked = locks(tmp_path)
    problems = []
    for entry_id, recipes in recipe_entry_ids().items():
        entry = registry.find(entry_id)
        if entry is None or not entry.usable:
            continue
        lock = locked.get(entry_id)
        if lock is None:
            problems.append(f"{entry_id} ({', '.join(recipes)}): not in registry.lock")
            continue
        try:
            present = hub.list_files(entry_id, entry.repo, entry.repo_type, lock.revision)
        except HarnessError as exc:
            problems.append(f"{entry_id}: {exc}")
            continue
        for name, file in lock.files.items():
            if name not in present:
                problems.append(f"{entry_id}: {name} is not in {entry.repo}@{lock.revision[:12]}")
            elif present[name] is not None and present[name] != file.size:
                problems.append(f"{entry_id}: {name} has {present[name]} bytes on the Hub, the lock says {file.size}")
    assert not problems, f"{len(problems)} problem(s); run `harness lock --all`:\n" + "\n".join(problems)
