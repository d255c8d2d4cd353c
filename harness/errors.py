"""Errors the command line turns into one friendly line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: wrong flag value, unknown name, missing data.

    The message must say what is wrong and how to fix it, in one line.
    """


def first_line(error: BaseException) -> str:
    """An error's message cut to its first line (empty if it has none), for one-line
    summaries; tracebacks and records keep the rest."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
