"""The allocator setting (`harness.models.allocator`): freed tensors' memory serves the next ones, no page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.models import allocator

# A child process runs a forward-like round 8 times (activations of 10 and 40 MB allocated, used and freed in a
# forward's order) and prints whether the setting took, the page faults of the last 5 rounds, and how much its
# resident size grew over them (MB).
_CHILD = """
import resource, torch
from harness.models.allocator import keep_freed_memory
kept = keep_freed_memory()
def forward_like():
    a = torch.empty(10 << 18); a.fill_(1.0)
    b = torch.empty(10 << 20); b.fill_(2.0)
    c = b * a.repeat(4)
    del a, b
    return c.sum()
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
for _ in range(3):
    forward_like()
faults, size = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, resident()
for _ in range(5):
    forward_like()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, resident() - size)
"""
ROUND_PAGES = (90 << 20) // 4096  # pages of one round's three tensors


def _child(keep: str) -> tuple[bool, int, int]:
    env = dict(os.environ, HARNESS_KEEP_FREED_MEMORY=keep)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    kept, faults, growth = out.stdout.split()
    return kept == "True", int(faults), int(growth)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
                    reason="the setting is glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    kept, faults, growth = _child("1")
    assert kept and faults < ROUND_PAGES  # five rounds on the memory the previous ones freed (at most a stray tensor)
    assert growth < 90  # MB, less than one round's tensors: the heap does not grow round after round
    kept, faults, growth = _child("0")  # turned off: glibc maps the 40 MB tensors afresh and faults in their pages
    assert not kept and faults > 5 * ROUND_PAGES // 2


def test_setting_is_made_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_set_limits", lambda: calls.append(1) or True)
    monkeypatch.delenv("HARNESS_KEEP_FREED_MEMORY", raising=False)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]
