"""``report.md``: the page that gathers one (preset, dataset)'s provenance, warnings,
tables, reading, published findings and plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness import manifest
from harness.report.reading import reading_lines, resolution_lines
from harness.report.render import to_markdown
from harness.report.table import Table, column_of


# --- the gathering page ---------------------------------------------------------------
def _provenance_lines(frame: pd.DataFrame, built_from: dict[str, Any] | None) -> list[str]:
    versions = sorted({str(v) for v in column_of(frame, "table_version").dropna()})
    preset, dataset = frame["preset"].iloc[0], frame["dataset"].iloc[0]
    lines = [
        f"- preset `{preset}`, search dataset `{dataset}`, {frame['path'].nunique()} run(s)",
        f"- benchmark table: {', '.join(versions) or 'unknown'}",
    ]
    if built_from is not None:
        shas = ", ".join(built_from["nb201_table_sha256"]) or "unknown"
        codes = ", ".join(f"`{v}`" for v in built_from["run_code_versions"]) or "unknown"
        lines += [
            f"- results: `{built_from['results']}` (sha256 {built_from['results_sha256']}; "
            f"[{manifest.MANIFEST}]({manifest.MANIFEST}) lists each run and its digest)",
            f"- NB201 table sha256: {shas}",
            f"- runs made by harness {codes}; report by harness {built_from['harness_version']}",
            f"- regenerate: `{manifest.COMMAND} --results {_results_root(built_from)} --out <dir>`",
        ]
    return lines


def _results_root(built_from: dict[str, Any]) -> str:
    """The ``--results`` the manifest's ``<results>/<preset>/<dataset>`` came from."""
    return Path(built_from["results"]).parent.parent.as_posix()


def _not_counted(frame: pd.DataFrame) -> list[str]:
    """Runs left out of the statistics, each with its reason."""
    others = frame[frame["status"] != "finished"]
    return [
        f"- {row.method} seed {row.seed}: {row.status} ({row.reason})"
        for row in others.itertuples(index=False)
    ]


def write_index(
    frame: pd.DataFrame,
    tables: list[Table],
    plots: list[Path],
    out: Path,
    warnings_: list[str] | None = None,
    built_from: dict[str, Any] | None = None,
    findings: str = "",
) -> Path:
    """``report.md``: provenance, the preset's resolution, warnings, the summary and its
    plain reading, the published findings judged on this sweep (``findings``, see
    :mod:`harness.scorecard`), then the other tables (the all-pairs tests:
    ``pairwise.md``) and plots."""
    lines = ["# Report", "", *_provenance_lines(frame, built_from), ""]
    resolution = resolution_lines(frame)
    if resolution:
        lines += ["**What this preset measures on**", "", *resolution, ""]
    if warnings_:
        lines += ["**Warnings**", "", *(f"- {line}" for line in warnings_), ""]
    skipped = _not_counted(frame)
    if skipped:
        lines += ["Runs not in the statistics:", "", *skipped, ""]
    named = {table.name: table for table in tables}
    lines += [to_markdown(tables[0]), ""]
    if "comparisons" in named:
        reading = reading_lines(frame, named["comparisons"])
        lines += ["**Reading**", "", *reading, ""] if reading else []
    if findings:
        lines += [findings]
    for table in tables[1:]:
        lines += [to_markdown(table), ""]
    lines += ["The tests between every pair of rows: [pairwise.md](pairwise.md).", ""]
    lines += ["### Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
