"""Significance of paired per-query differences: scipy's t-test and Fisher's randomization test, Holm's correction."""

from __future__ import annotations

from dataclasses import dataclass

TESTS = ("t-test", "randomization")
CORRECTIONS = ("none", "holm")
DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Paired:
    """One system against the baseline on the same queries."""

    test: str
    p_value: float
    statistic: float  # t for the t-test; the mean difference (system − baseline) for the randomization test
    mean_delta: float
    n: int  # queries tested (those both systems were scored on)
    resolution: float | None = None  # the randomization test's p-value step, 1/(resamples+1); None for the t-test


def paired(
    baseline: dict[str, float],
    system: dict[str, float],
    test: str = "t-test",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Paired:
    """Two-sided test of system against baseline on the queries both were scored on.

    `t-test`: scipy.stats.ttest_rel. `randomization`: Fisher's (sign-flip) randomization test on the mean
    difference, scipy.stats.permutation_test with permutation_type="samples", `resamples` random relabellings
    drawn from `seed` (scipy enumerates every relabelling exactly when there are fewer).
    """
    import numpy as np
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; known: {', '.join(TESTS)}")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    queries = sorted(set(baseline) & set(system))
    x = np.array([system[q] for q in queries], dtype=float)
    y = np.array([baseline[q] for q in queries], dtype=float)
    if len(queries) < 2:
        raise ValueError(f"a paired test needs at least 2 common queries, got {len(queries)}")
    mean_delta = float(np.mean(x - y))
    if not np.any(x != y):
        # Identical scores on every query: scipy's t statistic is 0/0 (nan); no evidence of a difference.
        step = resolution(len(queries), resamples) if test == "randomization" else None
        return Paired(test, 1.0, 0.0, 0.0, len(queries), step)
    if test == "t-test":
        result = stats.ttest_rel(x, y)
        return Paired(test, float(result.pvalue), float(result.statistic), mean_delta, len(queries))

    def mean_difference(a, b, axis):
        return np.mean(a - b, axis=axis)

    result = stats.permutation_test((x, y), mean_difference, permutation_type="samples", vectorized=True,
                                    n_resamples=resamples, alternative="two-sided",
                                    rng=np.random.default_rng(seed))
    return Paired(test, float(result.pvalue), float(result.statistic), mean_delta, len(queries),
                  resolution(len(queries), resamples))


def resolution(n: int, resamples: int = DEFAULT_RESAMPLES) -> float:
    """The randomization test's p-value step: 1/(resamples+1), or 1/2^n when scipy enumerates all 2^n relabellings."""
    return 1 / 2**n if 2**n <= resamples else 1 / (resamples + 1)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (reject where adjusted p < alpha).

    Written here because neither scipy (scipy.stats.false_discovery_control is Benjamini-Hochberg/Yekutieli)
    nor another installed dependency has it; statsmodels' multipletests(method="holm") computes the same.
    Holm (1979), step-down: sorted ascending, the i-th smallest (1-based) is multiplied by m − i + 1, made
    non-decreasing, capped at 1. Checked in tests against the worked example of the Holm-Bonferroni method.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def describe(test: str, alpha: float, correction: str, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
             seeds_averaged: bool = False, step: float | None = None) -> str:
    """The legend line: which test, at which level, with which correction, on which scores."""
    if test == "t-test":
        what = "paired two-sided t-test"
    else:
        step = step or 1 / (resamples + 1)
        what = (f"two-sided Fisher randomization test ({resamples:,} resamples, seed {seed}, "
                f"p resolution 1/{round(1 / step):,})")
    corr = ", Holm-Bonferroni corrected over the table's tests" if correction == "holm" else ", no correction"
    scores = "per-query means over seeds" if seeds_averaged else "per-query scores"
    return f"p < {alpha:g} against the first system ({what} on {scores}{corr})"
