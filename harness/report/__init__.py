"""Paper-style tables and plots from a results directory; it never re-runs a search.

For every (preset, search dataset) under ``results/`` this writes, to
``<out>/<preset>/<dataset>/``:

* ``summary``: the leading table, one row per method and selection, each mean with
  its 95 % interval;
* ``nb201``: the NAS-Bench-201 paper table (valid/test on three datasets, mean ±
  std [interval] over seeds, search cost) with reference rows: the space optimum from
  the benchmark table and published numbers (``harness/data/published_nb201.csv``),
  marked as not run here;
* ``harness``: what this harness adds (discretization gap, α distance, collapse
  rates, cross-seed agreement, ranking correlation, trajectory stability);
* ``discretization``: each run's α and cell judged by the table
  (:mod:`harness.discretization`); ``runs``: one row per run;
* ``comparisons`` (against ``darts``) and ``pairwise`` (every pair): exact paired or
  unpaired tests with Holm-adjusted p and effect sizes (:mod:`harness.inference`);
* each as Markdown, LaTeX (booktabs) and CSV (numbers, mean and std apart), plus
  plots (PNG and PDF), a ``report.md`` that gathers them and a ``manifest.json`` that
  says which runs they were built from (:mod:`harness.manifest`).

The output depends only on the results, the NB201 table and the code: no time, host or
absolute path (unless one was given) is written, CSV numbers are rounded to
:data:`CSV_DIGITS` significant digits and plots carry no creation date, so
regenerating a committed report reproduces its tables byte for byte
(``python -m harness report --check``).

Diverged, failed and unfinished runs are counted in the tables, never dropped
silently; the statistics use finished runs. docs/reports.md explains each item.

The package, one job per module: :mod:`~harness.report.grouping` (which runs a row
pools, integrity warnings), :mod:`~harness.report.runstats` (inputs and per-run
statistics), :mod:`~harness.report.tables` and :mod:`~harness.report.comparisons` (the
tables), :mod:`~harness.report.render` (CSV, Markdown, LaTeX), :mod:`~harness.report.plots`,
:mod:`~harness.report.reading` (what the numbers can mean) and :mod:`~harness.report.index`
(``report.md``); this module is the entry point and writes one group's files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd

from harness import layout, manifest, results, scorecard
from harness.errors import UsageError, first_line
from harness.report.comparisons import comparison_table, reference_row
from harness.report.grouping import integrity_warnings, split_by_config
from harness.report.index import write_index
from harness.report.plots import write_plots
from harness.report.render import write_table
from harness.report.runstats import (
    Truth,
    add_run_statistics,
    load_published,
    load_table,
    space_optimum,
    table_truth,
)
from harness.report.tables import (
    discretization_table,
    harness_table,
    nb201_table,
    runs_table,
    summary_table,
)
from harness.runs import by_selection, load_runs


class ReportFailed(Exception):
    """Some (preset, dataset) groups could not be reported; the others were written."""

    def __init__(self, written: list[Path], failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.written, self.failures = written, failures


def write_reports(
    results_dir: Path, out_dir: Path, data_dir: Path | str | None = None
) -> list[Path]:
    """Every table and plot for every (preset, dataset) in ``results_dir``; the paths.

    A group that fails does not stop the others: they are written, then
    :class:`ReportFailed` names the failed groups."""
    results.check_writable(Path(out_dir), "--out")
    layout.check_results(Path(results_dir))
    runs = load_runs(results_dir)
    if runs.empty:
        raise UsageError(f"--results {results_dir}: none of its runs could be read (see above)")
    table = load_table(data_dir)
    optimum = space_optimum(table)
    truth = table_truth(table, data_dir)
    published = load_published()
    unreadable = [
        {**u, "path": shown_path(Path(u["path"])).as_posix()}
        for u in runs.attrs.get("unreadable", [])
    ]
    written: list[Path] = []
    failures: list[str] = []
    for (preset, dataset), group in runs.groupby(["preset", "dataset"], sort=True):
        target = Path(out_dir) / str(preset) / str(dataset)
        try:
            skipped = _unreadable_in(unreadable, preset, dataset)
            source = shown_path(Path(group["path"].iloc[0]).parents[1]).as_posix()
            reference = optimum["version"] if optimum else None
            built_from = manifest.build_manifest(group, source, reference, skipped)
            written += report_group(group, target, optimum, published, skipped, built_from, truth)
        except Exception as error:  # noqa: BLE001 - one group's failure must not stop the others
            failures.append(f"{preset}/{dataset}: {type(error).__name__}: {first_line(error)}")
    if failures:
        raise ReportFailed(written, failures)
    return written


def shown_path(path: Path) -> Path:
    """``path`` as a report names it: relative to the working directory where it lies
    inside it (``results``, not ``/home/me/repo/results``), else as given."""
    path = Path(path)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            return path.relative_to(Path.cwd())
    return path


def report_group(
    group: pd.DataFrame,
    target: Path,
    optimum: dict[str, Any] | None,
    published: pd.DataFrame,
    unreadable: list[dict[str, str]],
    built_from: dict[str, Any] | None = None,
    truth: Truth | None = None,
) -> list[Path]:
    """One (preset, dataset): rows split by config, integrity warnings, then the files
    (with ``built_from``, the group's :func:`harness.manifest.build_manifest`; with
    ``truth``, the discretization judged against the table)."""
    rows = by_selection(group.reset_index(drop=True))  # a select=pt run: argmax and pt rows
    frame, split_note = split_by_config(add_run_statistics(rows, truth))
    warnings_ = integrity_warnings(frame, optimum, unreadable)
    notes = [split_note] if split_note else []
    if not (frame["status"] == "finished").any():
        notes.append(NO_FINISHED)
    return write_group(frame, target, optimum, published, warnings_, notes, built_from)


NO_FINISHED = (
    "No run of this group finished: there are no statistics and no trajectory plots; "
    "the runs and why they stopped are listed under 'Runs not in the statistics'."
)


def _unreadable_in(unreadable: list[dict[str, str]], preset: Any, dataset: Any) -> list[dict]:
    """The skipped runs of one ``<preset>/<dataset>`` group (from their paths)."""
    return [u for u in unreadable if Path(u["path"]).parts[-4:-2] == (str(preset), str(dataset))]


def write_group(
    frame: pd.DataFrame,
    out: Path,
    optimum: dict[str, Any] | None,
    published: pd.DataFrame,
    warnings_: list[str] | None = None,
    notes: list[str] | None = None,
    built_from: dict[str, Any] | None = None,
) -> list[Path]:
    """Tables, plots and ``report.md`` of one (preset, dataset); ``warnings_`` (unreadable
    runs, table mismatches) go into every table's notes and the top of the page, and
    ``notes`` (rows split by config, no finished run) first into every table's notes.
    With ``built_from`` (a manifest), each table says where its numbers come from and
    ``manifest.json`` is written last; files the previous report here wrote and this
    one does not are removed (:func:`harness.manifest.write_manifest`)."""
    out.mkdir(parents=True, exist_ok=True)
    tables = [
        summary_table(frame),
        nb201_table(frame, optimum, published),
        harness_table(frame),
        discretization_table(frame),
        comparison_table(frame, reference_row(frame)),
        runs_table(frame),
    ]
    all_pairs = comparison_table(frame, None)  # its own file, not on the page
    for table in [*tables, all_pairs]:
        flagged = [f"WARNING: {line}" for line in warnings_ or []]
        table.notes = flagged + list(notes or []) + table.notes
    source = manifest.summary(built_from) if built_from else ""
    written = [path for table in [*tables, all_pairs] for path in write_table(table, out, source)]
    plots = write_plots(frame, out)
    written += plots
    findings = scorecard_section(frame, published)
    index = write_index(frame, tables, plots, out, warnings_ or [], built_from, findings)
    written.append(index)
    if built_from is not None:
        written.append(manifest.write_manifest(out, built_from, written))
    return written


def scorecard_section(frame: pd.DataFrame, published: pd.DataFrame) -> str:
    """The "Published findings at this scale" section of one (preset, dataset)'s page."""
    preset = str(frame["preset"].iloc[0]) if not frame.empty else ""
    return scorecard.markdown(scorecard.scorecard(frame, published, preset), preset)
