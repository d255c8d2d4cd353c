"""Errors the command line turns into one friendly line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: wrong flag value, unknown name, missing data.

    The message must say what is wrong and how to fix it, in one line.
    """
