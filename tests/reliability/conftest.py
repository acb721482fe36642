"""The reliability suite's recorder: tests note what they tried and whether it held; the run ends with a report.

A test asks for the `reliability` fixture and either wraps one attempt in `with reliability.trial(cat, what):`
(held when the block finishes, broke when it raises, and the exception still fails the test) or calls
`reliability.record(cat, what, held=...)`. `pytest_terminal_summary` prints the counts per category.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

CATEGORIES = ("kill", "concurrency", "network", "corruption", "input", "fuzz", "security")


@dataclass
class Tally:
    tried: int = 0
    held: int = 0
    notes: list[str] = field(default_factory=list)


class Recorder:
    """Counts per (category, what): attempts and how many held; skipped checks with their reason."""

    def __init__(self):
        self.rows: dict[tuple[str, str], Tally] = defaultdict(Tally)
        self.skipped: dict[tuple[str, str], str] = {}

    def record(self, category: str, what: str, held: bool = True, count: int = 1, note: str | None = None) -> None:
        assert category in CATEGORIES, f"unknown reliability category {category!r}"
        tally = self.rows[(category, what)]
        tally.tried += count
        tally.held += count if held else 0
        if note and note not in tally.notes:
            tally.notes.append(note)

    @contextlib.contextmanager
    def trial(self, category: str, what: str, note: str | None = None) -> Iterator[None]:
        """One attempt: held if the block completes; recorded as broken (and re-raised) otherwise."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, pytest.skip.Exception):
                self.skip(category, what, str(exc))
            else:
                self.record(category, what, held=False, note=note)
            raise
        self.record(category, what, held=True, note=note)

    def skip(self, category: str, what: str, reason: str) -> None:
        self.skipped[(category, what)] = reason

    def lines(self) -> list[str]:
        width = max([len(w) for _, w in self.rows] + [len(w) for _, w in self.skipped] + [20])
        out = [f"{'category':<12} {'what was tried':<{width}} {'tried':>6} {'held':>6}"]
        for category in CATEGORIES:
            for (cat, what), t in sorted(self.rows.items()):
                if cat == category:
                    notes = f"  ({'; '.join(t.notes)})" if t.notes else ""
                    flag = "" if t.held == t.tried else "  <-- BROKE"
                    out.append(f"{cat:<12} {what:<{width}} {t.tried:>6} {t.held:>6}{flag}{notes}")
        tried = sum(t.tried for t in self.rows.values())
        held = sum(t.held for t in self.rows.values())
        per_cat = ", ".join(
            f"{c} {sum(t.tried for (k, _), t in self.rows.items() if k == c)}"
            for c in CATEGORIES if any(k == c for k, _ in self.rows)
        )
        out.append(f"total: {tried} tried, {held} held, {tried - held} broke ({per_cat})")
        for (cat, what), reason in sorted(self.skipped.items()):
            out.append(f"not tried: {cat} {what}: {reason}")
        return out


_RECORDER = Recorder()


@pytest.fixture(scope="session")
def reliability() -> Recorder:
    return _RECORDER


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RECORDER.rows and not _RECORDER.skipped:
        return
    terminalreporter.section("reliability report: what was tried and what held")
    for line in _RECORDER.lines():
        terminalreporter.write_line(line)


def trial_count(slow: bool) -> int:
    """Seeded trials per kill test: `HARNESS_RELIABILITY_TRIALS` (default 20) when slow, 3 otherwise."""
    if not slow:
        return int(os.environ.get("HARNESS_RELIABILITY_QUICK_TRIALS", "3"))
    return int(os.environ.get("HARNESS_RELIABILITY_TRIALS", "20"))


@pytest.fixture
def no_hub_sleep(monkeypatch):
    """Backoff sleeps skipped but recorded: `waits.hf` (huggingface_hub's own), `waits.harness` (harness.hub)."""
    import time
    from types import SimpleNamespace

    import huggingface_hub.utils._http as hf_http

    from harness import hub

    waits = SimpleNamespace(hf=[], harness=[])

    class _Recorded:
        def __init__(self, into):
            self.into = into

        def __getattr__(self, name):
            return getattr(time, name)

        def sleep(self, seconds):
            self.into.append(seconds)

    monkeypatch.setattr(hf_http, "time", _Recorded(waits.hf))
    monkeypatch.setattr(hub, "time", _Recorded(waits.harness))
    monkeypatch.setattr(hub, "BACKOFF_S", 0.01)
    return waits
