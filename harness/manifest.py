"""What a report was built from, and whether a committed report still regenerates.

Each ``<out>/<preset>/<dataset>/`` that :mod:`harness.report` writes gets a
``manifest.json``: the results directory as given on the command line, the runs by
status with a digest of each run's files, the NB201 table the runs were looked up in,
the harness version, and the files written. Its tables carry a one-line summary of it,
so a reader can trace every number to its runs. Nothing in it depends on when or where
``report`` ran (no time, no host, no absolute path unless one was given), so
regenerating from the same results gives the same bytes.

This module only describes; whether a committed report still regenerates is
:mod:`harness.committed`'s question (it sits above both this module and the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

import harness
from harness import results

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
