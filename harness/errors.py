"""Errors the command line turns into one friendly line and exit code 2, the error the
Python API raises for a run that ended without a result, and warnings as one plain line."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


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


WARNING_PREFIX = "harness: warning: "


def show_plainly(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` that prints ``harness: warning: <message>`` as one line
    on stderr: no source line, file name or category, as the command line's errors."""
    del category, filename, lineno, line
    text = " ".join(str(message).split())
    print(f"{WARNING_PREFIX}{text}", file=file or sys.stderr, flush=True)


@contextmanager
def plain_warnings() -> Iterator[None]:
    """Within the block, every warning shown is one plain line (:func:`show_plainly`)."""
    previous = warnings.showwarning
    warnings.showwarning = show_plainly
    try:
        yield
    finally:
        warnings.showwarning = previous
