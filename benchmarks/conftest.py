"""Shared benchmark helpers: the machine's float32 matmul ceiling and a timer that prints results."""

from __future__ import annotations

import time

import pytest


def matmul_ceiling_gflops(n: int = 2048, seconds: float = 3.0, dtype=None) -> float:
    """Sustained GFLOP/s of a large square `torch.mm` (2n³ FLOPs each) on this machine, best of several runs."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up (thread pool, page faults)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


@pytest.fixture(scope="session")
def matmul_ceiling() -> float:
    """The float32 matmul ceiling (GFLOP/s), measured once per benchmark session."""
    return matmul_ceiling_gflops()


def _timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


@pytest.fixture(scope="session")
def timed():
    """`timed(fn, *args)` → (result, seconds); a fixture, as benchmark modules are not an importable package."""
    return _timed
