"""What a report was built from, and whether a committed report still regenerates.

Each ``<out>/<preset>/<dataset>/`` that :mod:`harness.report` writes gets a
``manifest.json``: the results directory as given on the command line, the runs by
status with a digest of each run's files, the NB201 table the runs were looked up in,
the harness version, and the files written. Its tables carry a one-line summary of it,
so a reader can trace every number to its runs. Nothing in it depends on when or where
``report`` ran (no time, no host, no absolute path unless one was given), so
regenerating from the same results gives the same bytes.

:func:`check_reports` regenerates every report into a temporary directory and compares
it with a committed one (``python -m harness report --check``, and the CI test
``tests/test_committed_reports.py``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

import harness
from harness import layout, results
from harness.errors import UsageError

MANIFEST = "manifest.json"
COMMAND = "python -m harness report"
RUN_FILES = (results.CONFIG, results.EPOCHS, results.FINAL, results.FAILED)
"""The files of a run that ``report`` reads; the digests cover exactly these."""
STATUSES = ("finished", "diverged", "failed", "unfinished")


# --- the manifest of one (preset, dataset) ----------------------------------------------
def run_digest(directory: Path) -> str:
    """sha256 over the names and bytes of the run's :data:`RUN_FILES` that exist."""
    parts = []
    for name in RUN_FILES:
        path = Path(directory) / name
        if path.is_file():
            parts.append(f"{name} {results.text_digest(path.read_bytes())}\n")
    return results.text_digest("".join(parts))


def build_manifest(
    group: pd.DataFrame,
    source: str,
    reference_table: str | None,
    unreadable: list[dict[str, str]],
) -> dict[str, Any]:
    """The manifest of one group of :func:`harness.runs.load_runs` rows (before rows are
    split by config). ``source`` is ``<results>/<preset>/<dataset>`` as given;
    ``reference_table`` the version of the table the optimum row comes from (None: no row)."""
    runs = []
    for row in group.sort_values(["method", "seed"]).to_dict("records"):
        runs.append(
            {
                "path": "/".join(Path(row["path"]).parts[-2:]),
                "method": str(row["method"]),
                "seed": int(row["seed"]),
                "status": str(row["status"]),
                "sha256": run_digest(Path(row["path"])),
            }
        )
    counts = {status: sum(r["status"] == status for r in runs) for status in STATUSES}
    listing = "".join(f"{r['path']} {r['sha256']}\n" for r in runs)
    return {
        "generated_by": COMMAND,
        "harness_version": harness.__version__,
        "results": source,
        "results_sha256": results.text_digest(listing),
        "runs": {"total": len(runs), **counts, "unreadable": len(unreadable)},
        "nb201_table_sha256": _distinct(group, "table_sha256"),
        "nb201_table_version": _distinct(group, "table_version"),
        "reference_table": reference_table,
        "run_code_versions": _distinct(group, "code_version"),
        "run_list": runs,
        "unreadable": sorted("/".join(Path(u["path"]).parts[-2:]) for u in unreadable),
    }


def _distinct(group: pd.DataFrame, column: str) -> list[str]:
    if column not in group:
        return []
    return sorted({str(v) for v in group[column].dropna()})


def summary(manifest: dict[str, Any]) -> str:
    """One line for the tables: where the numbers come from (``manifest.json`` has more)."""
    runs = manifest["runs"]
    counts = ", ".join(f"{runs[s]} {s}" for s in (*STATUSES, "unreadable") if runs[s])
    tables = ", ".join(sha[:12] for sha in manifest["nb201_table_sha256"]) or "unknown"
    return (
        f"Built by `{COMMAND}` (harness {manifest['harness_version']}) from "
        f"`{manifest['results']}`: {runs['total']} runs ({counts or 'none readable'}), "
        f"NB201 table sha256 {tables}, results sha256 {manifest['results_sha256'][:12]}; "
        f"{MANIFEST} lists each run and its digest."
    )


def previous_files(out: Path) -> list[str]:
    """The files the last ``report`` wrote to ``out`` (from its manifest; [] if none)."""
    try:
        data = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = data.get("files") if isinstance(data, dict) else None
    return [n for n in names or [] if isinstance(n, str) and "/" not in n and n != MANIFEST]


def write_manifest(out: Path, manifest: dict[str, Any], written: list[Path]) -> Path:
    """``manifest.json`` with the names of ``written``; files the previous report of
    ``out`` wrote and this one did not (a method no longer in the results) are removed,
    so a regenerated directory holds exactly what the results give. Only files that
    ``report`` itself listed are ever removed."""
    names = sorted(p.name for p in written)
    for stale in sorted(set(previous_files(out)) - set(names)):
        (Path(out) / stale).unlink(missing_ok=True)
    path = Path(out) / MANIFEST
    text = json.dumps({**manifest, "files": names}, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


# --- committed reports against regenerated ones ----------------------------------------
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
    from harness.report import ReportFailed, write_reports

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
