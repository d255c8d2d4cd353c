"""Whether committed reports still regenerate: ``python -m harness report --check``.

:func:`check_reports` regenerates every report of a results directory into a temporary
directory and compares it, file by file, with a committed report tree (the CI test
``tests/test_committed_reports.py`` does the same). It sits above :mod:`harness.report`
(which writes reports) and :mod:`harness.manifest` (which describes what one was built
from), so neither of those imports the other back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness import layout
from harness.errors import UsageError
from harness.manifest import COMMAND
from harness.report import ReportFailed, write_reports

EXACT = (".csv", ".md", ".tex", ".json")
"""Compared byte for byte."""
PLOTS = (".png", ".pdf")
"""Compared by presence and size: their bytes change with the matplotlib and FreeType
versions, their numbers are in the tables."""
PLOT_SIZE_TOLERANCE = 0.5
"""Largest allowed |size difference| / larger size of a plot (catches a missing,
empty or truncated plot, not a font change)."""


def report_groups(root: Path, scope: str = "") -> list[str]:
    """Every ``<preset>/<dataset>`` directory under ``root``, as posix paths, sorted; with
    ``scope`` (``cpu`` or ``cpu/cifar10``, see :func:`harness.layout.scope`) those under it."""
    groups = (p.relative_to(root).as_posix() for p in Path(root).glob("*/*") if p.is_dir())
    return sorted(g for g in groups if layout.in_scope(g, scope))


def compare_reports(committed: Path, regenerated: Path, scope: str = "") -> list[str]:
    """Every difference between two report trees, one line each ([] when they agree);
    with ``scope``, only the committed groups under it (a ``--results`` subtree)."""
    committed, regenerated = Path(committed), Path(regenerated)
    ours, theirs = report_groups(committed, scope), report_groups(regenerated)
    problems = [
        f"{committed / g}: no results behind it (regenerating wrote no {g}); "
        "commit its results or remove the report"
        for g in ours
        if g not in theirs
    ]
    problems += [
        f"{committed / g}: missing, but the results give one; run `{COMMAND}` and commit it"
        for g in theirs
        if g not in ours
    ]
    for group in (g for g in ours if g in theirs):
        problems += _compare_group(committed / group, regenerated / group)
    return problems


def _compare_group(committed: Path, regenerated: Path) -> list[str]:
    old = {p.name for p in committed.iterdir() if p.is_file()}
    new = {p.name for p in regenerated.iterdir() if p.is_file()}
    problems = [f"{committed / n}: not written by a regeneration (stale)" for n in old - new]
    problems += [f"{committed / n}: missing (a regeneration writes it)" for n in new - old]
    for name in sorted(old & new):
        problem = compare_file(committed / name, regenerated / name)
        if problem:
            problems.append(f"{committed / name}: {problem}")
    return sorted(problems)


def compare_file(committed: Path, regenerated: Path) -> str | None:
    """Why two versions of one report file disagree; None if they agree."""
    if committed.suffix in PLOTS:
        a, b = committed.stat().st_size, regenerated.stat().st_size
        if abs(a - b) > PLOT_SIZE_TOLERANCE * max(a, b, 1):
            return f"{a} bytes, a regeneration writes {b} (beyond ±{PLOT_SIZE_TOLERANCE:.0%})"
        return None
    old, new = committed.read_bytes(), regenerated.read_bytes()
    if old == new:
        return None
    if committed.suffix not in EXACT:
        return "differs from a regeneration"
    return _first_difference(old, new)


def _first_difference(old: bytes, new: bytes) -> str:
    """Where two texts first differ: line, column, and the text around it in both."""
    a, b = old.decode("utf-8", "replace").splitlines(), new.decode("utf-8", "replace").splitlines()
    for number, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            pairs = enumerate(zip(x, y, strict=False))
            column = next((i for i, (p, q) in pairs if p != q), min(len(x), len(y)))
            return (
                f"line {number} column {column + 1} differs: committed `{_around(x, column)}`, "
                f"regenerated `{_around(y, column)}`"
            )
    if len(a) != len(b):
        return f"{len(a)} lines, a regeneration writes {len(b)}"
    return "differs in line endings or a final newline"


def _around(line: str, column: int, width: int = 40) -> str:
    start, end = max(0, column - width), column + width
    return ("…" if start else "") + line[start:end] + ("…" if end < len(line) else "")


def check_reports(
    results_dir: Path, reports_dir: Path, data_dir: Path | str | None = None
) -> list[str]:
    """Regenerate every report of ``results_dir`` into a temporary directory and compare
    with ``reports_dir``; the differences ([] when ``reports_dir`` is current).

    Give ``results_dir`` as the committed reports were made (e.g. ``results``, from
    the repository root): the manifests record it as given. A ``results_dir`` that is
    one ``<preset>`` or ``<preset>/<dataset>`` of a results directory checks only those
    reports. A ``results_dir`` without runs or a ``reports_dir`` without reports is a
    UsageError: a check that compares nothing must not pass."""
    layout.check_results(Path(results_dir))
    scope = layout.scope(Path(results_dir))
    check_report_tree(Path(reports_dir), scope, results_dir)
    with tempfile.TemporaryDirectory(prefix="harness-report-check-") as tmp:
        problems = []
        try:
            write_reports(Path(results_dir), Path(tmp), data_dir)
        except ReportFailed as failed:
            problems += [f"regenerating failed: {f}" for f in failed.failures]
        return problems + compare_reports(Path(reports_dir), Path(tmp), scope)


def check_report_tree(reports_dir: Path, scope: str, results_dir: Path) -> None:
    """Refuse (UsageError) a ``--out`` that is missing or holds no report to compare."""
    where = f" under {scope}" if scope else ""
    if not reports_dir.is_dir():
        what = "not a directory" if reports_dir.exists() else "no such directory"
    elif not report_groups(reports_dir, scope):
        what = f"no reports there{where} (expected <preset>/<dataset>/, as `report` writes them)"
    else:
        return
    raise UsageError(
        f"--out {reports_dir}: {what}; nothing to compare with (to write them: "
        f"`{COMMAND} --results {results_dir} --out {reports_dir}`)"
    )
