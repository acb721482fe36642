"""The allocator setting (`harness.models.allocator`): freed tensors' memory serves the next ones, no page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.models import allocator

# A child process sets the allocator (or not), then allocates, writes and frees 40 MB through malloc 8 times (larger
# than glibc's own adaptive limit, 32 MB) and prints whether the setting took and the page faults of the last 5 rounds.
# (Through malloc itself, one thread: deterministic. Tensors go through posix_memalign and torch's threads, whose heap
# placement varies from run to run; the generation benchmark shows their faults going from 200k-650k to 0-12k.)
_CHILD = """
import ctypes, resource
from harness.models.allocator import keep_freed_memory
kept = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def round_trip():
    block = libc.malloc(40 << 20)
    ctypes.memset(block, 1, 40 << 20)
    libc.free(block)
for _ in range(3):
    round_trip()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    round_trip()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""
PAGES = (40 << 20) // 4096  # pages of one 40 MB block


def _child(keep: str) -> tuple[bool, int]:
    env = dict(os.environ, HARNESS_KEEP_FREED_MEMORY=keep)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
                    reason="the setting is glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    kept, faults = _child("1")
    assert kept and faults < PAGES // 10  # five rounds on the memory the first one took
    kept, faults = _child("0")  # turned off: glibc maps each 40 MB block afresh and faults in every page
    assert not kept and faults > 5 * PAGES * 0.9


def test_setting_is_made_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_set_limits", lambda: calls.append(1) or True)
    monkeypatch.delenv("HARNESS_KEEP_FREED_MEMORY", raising=False)
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]
