"""The one exception type for mistakes a user can fix: the CLI prints its sentence without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """A user-facing error: one sentence naming the file, key or artifact, and what to do."""


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' suffix listing the closest choices, or '' when none is close."""
    matches = difflib.get_close_matches(word, sorted(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
