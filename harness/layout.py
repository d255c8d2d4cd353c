"""Where the runs of a results directory are, and what a mistyped ``--results`` meant.

A results directory holds ``<preset>/<dataset>/<method>/seed-<n>/`` (one run each).
``report`` reads whole (preset, dataset) groups, so ``--results`` may also name one
``<preset>`` or ``<preset>/<dataset>`` of a results directory (``results/cpu``): the
runs below it keep their place in the layout, and a report of ``results/cpu`` is the
``cpu`` part of a report of ``results``. Anything else without runs is refused with the
layout expected and, where runs lie deeper, the ``--results`` that holds them.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from harness.errors import UsageError

LAYOUT = "<preset>/<dataset>/<method>/seed-<n>/"
LEVELS = ("preset", "dataset")
"""The layout's levels a ``--results`` subtree may start below (a whole group or more)."""
RUN = "python -m harness run"
SEARCH_DEEPER = 3
"""How many levels below a ``--results`` without runs are searched for a hint."""


def _pattern(levels_above_method: int) -> str:
    return "*/" * levels_above_method + "seed-*"


def _has_runs(directory: Path, pattern: str) -> bool:
    return any(p.is_dir() for p in Path(directory).glob(pattern))


def subtree_depth(results: Path) -> int:
    """How many of the layout's levels ``results`` already is: 0 for a results directory
    (also where no runs are found at all), 1 for a ``<preset>``, 2 for a
    ``<preset>/<dataset>``."""
    for depth in range(len(LEVELS) + 1):
        if _has_runs(results, _pattern(3 - depth)):
            return depth
    return 0


def run_dirs(results: Path) -> list[Path]:
    """Every run directory under ``results`` (a results directory or one of its
    ``<preset>`` or ``<preset>/<dataset>`` subtrees), sorted."""
    pattern = _pattern(3 - subtree_depth(results))
    return sorted(p for p in Path(results).glob(pattern) if p.is_dir())


def scope(results: Path) -> str:
    """The groups ``results`` covers, as a ``<preset>[/<dataset>]`` prefix; "" for all."""
    depth = subtree_depth(results)
    return "/".join(Path(results).resolve().parts[-depth:]) if depth else ""


def in_scope(group: str, prefix: str) -> bool:
    """Whether the ``<preset>/<dataset>`` group lies under the :func:`scope` prefix."""
    return not prefix or group == prefix or group.startswith(prefix + "/")


def check_results(results: Path, flag: str = "--results") -> None:
    """Refuse (UsageError, one line) a ``--results`` that is missing, not a directory, a
    method's or run's directory, or holds no run where the layout puts them; the
    message says what is expected and which ``--results`` was probably meant."""
    path = Path(results)
    if not path.exists():
        close = _close_sibling(path)
        hint = f"did you mean {flag} {close}?" if close else f"make runs with `{RUN}`"
        raise UsageError(f"{flag} {results}: no such directory; {hint}")
    if not path.is_dir():
        raise UsageError(f"{flag} {results}: not a directory")
    if run_dirs(path):
        return
    above = _results_above(path)
    if above is not None:
        raise UsageError(
            f"{flag} {results} is one method's or run's directory, but a report reads whole "
            f"<preset>/<dataset> groups; did you mean {flag} {above}?"
        )
    below = _results_below(path)
    hint = f"; did you mean {flag} {below}?" if below else f"; make runs with `{RUN}`"
    raise UsageError(
        f"{flag} {results}: no runs there (expected {LAYOUT} below it, or below one "
        f"<preset> or <preset>/<dataset> of a results directory){hint}"
    )


def _close_sibling(path: Path) -> str | None:
    """An existing directory beside ``path`` whose name is close to its name (a typo)."""
    parent = path.parent
    if not parent.is_dir():
        return None
    names = [p.name for p in parent.iterdir() if p.is_dir()]
    match = difflib.get_close_matches(path.name, names, n=1)
    return (parent / match[0]).as_posix() if match else None


def _results_above(path: Path) -> str | None:
    """The results directory of a method directory or a run directory; None otherwise."""
    if path.name.startswith("seed-"):
        up = 3
    elif _has_runs(path, "seed-*"):
        up = 2
    else:
        return None
    base = path if up < len(path.parts) else path.absolute()
    return base.parents[up].as_posix()


def _results_below(path: Path) -> str | None:
    """The results directory of the first run found a few levels deeper than the layout
    (``--results .`` in a checkout whose runs are in ``results/``)."""
    for extra in range(1, SEARCH_DEEPER + 1):
        found = sorted(p for p in path.glob(_pattern(3 + extra)) if p.is_dir())
        if found:
            return found[0].parents[3].as_posix()
    return None
