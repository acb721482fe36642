"""Shared benchmark helpers: the machine's float32 matmul ceiling and a timer that prints results."""

from __future__ import annotations

import statistics
import time

import pytest


def matmul_rates(n: int = 2048, seconds: float = 3.0, dtype=None) -> list[float]:
    """GFLOP/s of back-to-back square `torch.mm` products of size `n` (2n³ FLOPs each) for about `seconds`."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    c = torch.mm(a, b)  # warm-up (thread pool, page faults); the products then write into c: no allocation timed
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


class Ceiling:
    """The machine's float32 matmul ceiling around timed runs, for the share of it that each run reaches.

    On a shared machine the rate a large product reaches moves with the neighbours' load (the fastest product of a
    3-s window: 138 to 182 GFLOP/s across sessions here), and a burst overstates what minutes of work can get: so
    `measure()` is called just before and just after each timed run (`timed_runs`), each time the median rate over
    3 s of products (sustained), and a run's ceiling is the higher of the two (its share then the lower one).
    """

    def __init__(self):
        self.samples: list[float] = []
        self.best = 0.0  # the fastest single product seen, for the record

    def measure(self) -> float:
        rates = matmul_rates()
        self.samples.append(statistics.median(rates))
        self.best = max(self.best, *rates)
        return self.samples[-1]

    def timed_runs(self, benchmark, fn, rounds: int):
        """`fn` timed by pytest-benchmark in `rounds` runs, the ceiling measured before the first and after each:
        (the last run's result, seconds per run, each run's ceiling: the higher of the two measured around it)."""
        def before():  # (returning None: pytest-benchmark takes a setup's return value for the arguments)
            self.measure()

        first = len(self.samples)
        result = benchmark.pedantic(fn, setup=before, rounds=rounds, iterations=1)
        self.measure()
        runs = list(benchmark.stats.stats.data)
        around = self.samples[first:]
        return result, runs, [max(around[i : i + 2]) for i in range(len(runs))]

    @staticmethod
    def median_run(shares: list[float]) -> int:
        """The index of the run with the median share of its ceiling (the middle one of an odd number)."""
        return sorted(range(len(shares)), key=lambda i: shares[i])[len(shares) // 2]


@pytest.fixture
def matmul_ceiling() -> Ceiling:
    """A `Ceiling`: `timed_runs` times a function with the ceiling measured around each run."""
    return Ceiling()


def _timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


@pytest.fixture(scope="session")
def timed():
    """`timed(fn, *args)` → (result, seconds); a fixture, as benchmark modules are not an importable package."""
    return _timed
