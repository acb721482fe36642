"""Paired significance tests (scipy's, checked against an exact enumeration) and Holm's correction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from harness.significance import describe, holm, paired, resolution


def _scores(n: int, shift: float, seed: int = 7) -> tuple[dict[str, float], dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, n)
    system = np.clip(base + shift + rng.normal(0, 0.2, n), 0, 1)
    return ({f"q{i}": float(v) for i, v in enumerate(base)}, {f"q{i}": float(v) for i, v in enumerate(system)})


def test_t_test_is_scipys_paired_t_test():
    base, system = _scores(50, 0.05)
    got = paired(base, system, "t-test")
    queries = sorted(base)
    want = stats.ttest_rel([system[q] for q in queries], [base[q] for q in queries])
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-12)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.n == 50 and got.resolution is None
    assert got.mean_delta == pytest.approx(np.mean([system[q] - base[q] for q in queries]))


def test_randomization_with_few_queries_is_the_exact_sign_flip_test():
    """8 queries: 2^8 = 256 relabellings, all enumerated; the oracle counts |mean| at least the observed one."""
    base = {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.9, "e": 0.2, "f": 0.4, "g": 0.6, "h": 0.0}
    system = {"a": 0.3, "b": 0.6, "c": 0.2, "d": 1.0, "e": 0.5, "f": 0.4, "g": 0.9, "h": 0.1}
    d = np.array([system[q] - base[q] for q in sorted(base)])
    observed = abs(d.mean())
    flips = [abs((d * np.array(signs)).mean()) for signs in itertools.product((1, -1), repeat=len(d))]
    want = sum(f >= observed - 1e-12 for f in flips) / len(flips)
    got = paired(base, system, "randomization")
    assert got.p_value == pytest.approx(want)
    assert got.resolution == 1 / 256


def test_randomization_agrees_with_the_t_test_and_is_reproducible():
    base, system = _scores(300, 0.03)
    t = paired(base, system, "t-test")
    r = paired(base, system, "randomization", resamples=10_000, seed=3)
    assert np.sign(r.statistic) == np.sign(t.statistic) == np.sign(t.mean_delta)
    assert (r.p_value < 0.05) == (t.p_value < 0.05)
    assert r.p_value == pytest.approx(t.p_value, abs=0.02)  # many queries: the t approximation is close
    assert paired(base, system, "randomization", resamples=10_000, seed=3) == r  # same seed, same p
    assert r.resolution == 1 / 10_001
    worse = paired(system, base, "randomization", seed=3)  # swapped: the other direction, the same evidence
    assert worse.statistic == pytest.approx(-r.statistic) and worse.p_value == pytest.approx(r.p_value, abs=0.01)


def test_no_difference_has_p_one_and_queries_are_paired_by_id():
    base, _ = _scores(20, 0.0)
    assert paired(base, dict(base), "t-test").p_value == 1.0
    assert paired(base, dict(base), "randomization").p_value == 1.0
    shuffled = dict(reversed(list(base.items())))  # order does not matter, ids do
    assert paired(base, shuffled, "t-test").p_value == 1.0
    partial = {q: v + 0.01 * i for i, (q, v) in enumerate(list(base.items())[:10])}
    assert paired(base, partial, "t-test").n == 10
    with pytest.raises(ValueError):
        paired({"a": 1.0}, {"a": 0.0}, "t-test")


def test_resolution():
    assert resolution(5, 10_000) == 1 / 32
    assert resolution(300, 10_000) == 1 / 10_001


def test_holm_matches_the_worked_example():
    """The Holm-Bonferroni worked example (Wikipedia, "Holm–Bonferroni method", Example): p = 0.01, 0.04, 0.03,
    0.005 at alpha 0.05 rejects H1 and H4 only. Adjusted by hand from Holm (1979): sorted 0.005, 0.01, 0.03, 0.04
    times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, made non-decreasing: 0.02, 0.03, 0.06, 0.06."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_legend_names_test_level_correction_and_seeds():
    text = describe("randomization", 0.01, "holm", 10_000, 42, seeds_averaged=True)
    assert "randomization" in text and "0.01" in text and "Holm" in text and "seed 42" in text
    assert "means over seeds" in text and "1/10,001" in text
    assert "t-test" in describe("t-test", 0.05, "none") and "no correction" in describe("t-test", 0.05, "none")
