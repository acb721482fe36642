"""The C allocator set to keep freed memory for reuse: a model on a CPU allocates the same large tensors again and again.

A forward pass on a CPU allocates and frees activations of several MB per layer (GPT-2-small, a 1,024-token
prefill: 12 MB per feed-forward output). glibc's malloc serves such requests with fresh mappings (above a
threshold that starts at 128 KiB and adapts up to 32 MiB) and hands memory at the top of its heap back to the system
soon after it is freed, so the next tensor of the same size lands on new pages, and every first touch of a page is a
fault that the system answers with a zeroed page. Measured on a 2-core VM (`benchmarks/bench_generate.py`'s
prompts): writing a fresh 12 MB activation took 4-35 ms, against 0.5-1.4 ms once the allocator reuses memory; one
generation call of the benchmark page-faulted 200k-650k times and took 20.4-22.3 s, 0-12k times and 19.5-20.5 s
with `keep_freed_memory`.

`keep_freed_memory` raises both of glibc's limits (the size from which a request gets its own mapping, and the free
memory kept at the top of the heap) to 1 GiB, for the whole process: memory freed by one forward serves the next.
The price is a resident size that stays near its peak until the process ends (the benchmark's process: 2.1-2.2 GB
through 14 generation calls, flat after the first, against 1.3-1.5 GB without), the usual trade of CPU inference
(the reason PyTorch's CPU tuning guide suggests jemalloc or tcmalloc). It is called when a model is loaded on a CPU;
`HARNESS_KEEP_FREED_MEMORY=0` turns it off; elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

LIMIT = 1 << 30  # bytes: requests up to this size come from the heap, and this much free memory stays in it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep up to `LIMIT` of freed memory for reuse (once per process); whether it is set."""
    global _done
    if _done is None:
        _done = os.environ.get("HARNESS_KEEP_FREED_MEMORY", "1") != "0" and _set_limits()
    return _done


def _set_limits() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, LIMIT))
