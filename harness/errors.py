"""Errors the command line turns into one friendly line and exit code 2, and the
error the Python API raises for a run that ended without a result."""

from __future__ import annotations

from typing import Any


class UsageError(Exception):
    """Bad input from the user: wrong flag value, unknown name, missing data.

    The message must say what is wrong and how to fix it, in one line.
    """


def first_line(error: BaseException) -> str:
    """An error's message cut to its first line (empty if it has none), for one-line
    summaries; tracebacks and records keep the rest."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


class RunFailed(Exception):
    """A search ended without a result: the run raised (its ``failed.json`` keeps the
    traceback; rerunning retries it) or another process holds its lock (rerun later).
    ``outcome`` is the record the sweep reports for it."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        what = f"{outcome.get('method')} seed {outcome.get('seed')}: {outcome.get('status')}"
        super().__init__(f"{what} ({outcome.get('reason')})")
        self.outcome = outcome
