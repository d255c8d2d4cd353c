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
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness import discretization, inference, layout, manifest, metrics, results, rundir, scorecard
from harness.benchmark import Benchmark, seed_spread
from harness.config import ONLY_FOR_SELECTION
from harness.errors import UsageError, first_line
from harness.runs import ACCURACY_KEYS, by_selection, load_runs
from harness.space import EDGES, OPS, Cell

ACCURACIES = tuple(ACCURACY_KEYS.values())
LABELS = {
    "c10_valid": "C10 valid",
    "c10_test": "C10 test",
    "c100_valid": "C100 valid",
    "c100_test": "C100 test",
    "in16_valid": "IN16 valid",
    "in16_test": "IN16 test",
}
RUN_HERE, REFERENCE, PUBLISHED = "run here", "reference (this table)", "published, not run here"
Format = Callable[[float], str]


@dataclass
class Table:
    """One table: numbers for the CSV, formatted strings for Markdown and LaTeX."""

    name: str
    title: str
    numeric: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    """Row positions that start a new group (a rule is drawn above them)."""


# --- entry point -------------------------------------------------------------------
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


# --- which runs one row pools ------------------------------------------------------------
NOT_COMPARED = ("seed", "method", "preset", "dataset", rundir.TABLE_KEY, *rundir.EXECUTION_FIELDS)
"""Config keys that never split a row: the seed (a row pools seeds), the row's own
grouping, the table (flagged apart, see :func:`integrity_warnings`) and execution
fields (they change speed, not results)."""
OPTIONS = "method_options."
ABSENT = "(absent)"


def protocol(config: Any) -> dict[str, str] | None:
    """A run's config as rows compare it: flat, values as JSON text, bar NOT_COMPARED;
    None where the run recorded no config. A field added after the run was made reads
    as its old behaviour (``BEFORE_FIELD``), as a resume does, so an older run pools
    with newer runs that behave the same; a field only another selection reads
    (``ONLY_FOR_SELECTION``: DARTS-PT's for an argmax row) is left out."""
    if not isinstance(config, dict):
        return None
    flat = rundir.flat_recorded(config)
    select = flat.get("select", "argmax")
    unread = {k for k, owner in ONLY_FOR_SELECTION.items() if owner != select}
    return {
        k: json.dumps(v, sort_keys=True)
        for k, v in flat.items()
        if k not in NOT_COMPARED and k not in unread
    }


def _varying(protocols: list[dict[str, str]], keys: set[str]) -> list[str]:
    return sorted(k for k in keys if len({p.get(k, ABSENT) for p in protocols}) > 1)


def _varying_where_read(protocols: list[dict[str, str]], keys: set[str]) -> list[str]:
    """The ``keys`` whose value differs among the protocols that carry them at all."""
    return sorted(k for k in keys if len({p[k] for p in protocols if k in p}) > 1)


def _value_text(value: str) -> str:
    if value == ABSENT:
        return value
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def split_by_config(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows pool only runs whose configs are equal apart from seed and execution fields.

    Where configs differ, each run's ``method`` becomes a label naming the differing
    values, e.g. ``darts [epochs=1]``, so no row mixes them and every row shows its
    protocol: shared fields that differ anywhere in the group label every row; a
    method's options label its rows where they differ between its runs. The method
    itself stays in ``base_method``. Returns the frame and a note ('' if nothing differs).
    """
    frame = frame.copy()
    frame["base_method"] = frame["method"]
    protocols = [protocol(c) for c in _col(frame, "config")]
    known = [p for p in protocols if p is not None]
    apart = set(ONLY_FOR_SELECTION)  # compared only among the rows that read them
    shared = _varying(
        known, {k for p in known for k in p if not k.startswith(OPTIONS) and k not in apart}
    )
    own: dict[str, list[str]] = {}
    for method in frame["method"].unique():
        mine = [p for p, m in zip(protocols, frame["method"], strict=True) if m == method and p]
        own[method] = _varying(mine, {k for p in mine for k in p if k.startswith(OPTIONS)})
        own[method] += _varying_where_read(mine, apart)
    labels = [_label(m, p, shared, own[m]) for m, p in zip(frame["method"], protocols, strict=True)]
    frame["method"] = _place_unknown(frame["method"].tolist(), labels)
    differing = shared + [
        f"{m}.{k.removeprefix(OPTIONS)}" if k.startswith(OPTIONS) else k
        for m in own
        for k in own[m]
    ]
    if not differing:
        return frame, ""
    note = (
        f"Runs with different configs are never pooled: rows are split by {', '.join(differing)} "
        f"(values in brackets); seed and {', '.join(rundir.EXECUTION_FIELDS)} are not compared."
    )
    return frame, note


def _label(
    method: str, protocol_: dict[str, str] | None, shared: list[str], own: list[str]
) -> str | None:
    """``method [key=value, ...]`` for the differing keys (a selection's own keys only on
    the rows that read them); None for an unknown config."""
    apart_keys = set(ONLY_FOR_SELECTION)
    if protocol_ is None:
        return None
    parts = [f"{k}={_value_text(protocol_.get(k, ABSENT))}" for k in shared]
    parts += [
        f"{method}.{k.removeprefix(OPTIONS)}={_value_text(protocol_.get(k, ABSENT))}"
        for k in own
        if k.startswith(OPTIONS)
    ]
    parts += [f"{k}={_value_text(protocol_[k])}" for k in own if k in protocol_ and k in apart_keys]
    return f"{method} [{', '.join(parts)}]" if parts else method


def _place_unknown(methods: list[str], labels: list[str | None]) -> list[str]:
    """A run without a recorded config joins its method's row when the method has at
    most one config, else gets a row of its own (``[config unknown]``)."""
    placed = []
    for method, label in zip(methods, labels, strict=True):
        if label is None:
            seen = {lab for m, lab in zip(methods, labels, strict=True) if m == method and lab}
            if len(seen) > 1:
                label = f"{method} [config unknown]"
            else:
                label = seen.pop() if seen else method
        placed.append(label)
    return placed


def _unreadable_in(unreadable: list[dict[str, str]], preset: Any, dataset: Any) -> list[dict]:
    """The skipped runs of one ``<preset>/<dataset>`` group (from their paths)."""
    return [u for u in unreadable if Path(u["path"]).parts[-4:-2] == (str(preset), str(dataset))]


def integrity_warnings(
    frame: pd.DataFrame, optimum: dict[str, Any] | None, unreadable: list[dict[str, str]]
) -> list[str]:
    """What a reader must know before trusting the numbers: runs that could not be
    read, and runs looked up in another NB201 table than this report's (or each other's)."""
    lines = [f"unreadable run skipped: {u['path']} ({u['reason']})" for u in unreadable]
    versions = _col(frame, "table_version").dropna().astype(str)
    if versions.nunique() > 1:
        counts = sorted(versions.value_counts().items(), key=lambda item: (-item[1], item[0]))
        seen = ", ".join(f"{v} ({n} runs)" for v, n in counts)
        lines.append(f"table mismatch: the runs used different NB201 tables: {seen}")
    if optimum is not None:
        other = versions[versions != optimum["version"]]
        if len(other):
            lines.append(
                f"table mismatch: {len(other)} run(s) used {', '.join(sorted(set(other)))}, "
                f"but this report's reference table is {optimum['version']}"
            )
    return lines


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


# --- inputs --------------------------------------------------------------------------
@dataclass(frozen=True)
class Truth:
    """What the table says about every cell, for judging a run without its supernet."""

    c10_valid: np.ndarray
    """NB201 C10 valid accuracy by :attr:`Cell.code`."""
    spread: pd.DataFrame | None
    """Per NB201 index, the benchmark's training seeds (``n``) and the ``std`` of their
    C10 valid; None without the per-seed file."""


def load_table(data_dir: Path | str | None) -> Benchmark | None:
    """The NB201 table, or None (with a warning: no optimum row, no judging by the table)."""
    try:
        return Benchmark.load(data_dir)
    except UsageError as error:
        warnings.warn(f"no space-optimum row: {error}", stacklevel=2)
        return None


def table_truth(table: Benchmark | None, data_dir: Path | str | None) -> Truth | None:
    if table is None:
        return None
    codes = np.arange(len(table))
    return Truth(table.accuracy(codes, "cifar10", "valid"), seed_spread(data_dir))


def space_optimum(table: Benchmark | None) -> dict[str, Any] | None:
    """Best value of each column over the space; None without a table."""
    if table is None:
        return None
    best = table.optimum()
    row = {name: best[d][s] for (d, s), name in ACCURACY_KEYS.items()}
    return {"values": row, "version": table.version}


def load_published() -> pd.DataFrame:
    """Published NB201 rows with their citations (methods-spec §3.1 and §3.3)."""
    source = resources.files("harness") / "data" / "published_nb201.csv"
    with resources.as_file(source) as path:
        return pd.read_csv(path)


def add_run_statistics(frame: pd.DataFrame, truth: Truth | None = None) -> pd.DataFrame:
    """Per-run trajectory and collapse columns, from each run's epochs and final cell;
    the one-shot τ's bootstrap interval; with ``truth``, the discretization judged
    against the table and the benchmark's seed spread of the cell (:func:`judged`)."""
    frame = frame.copy()
    finished = frame["status"] == "finished"
    epochs = frame["epochs"]
    c10 = [[e["nb201"]["cifar10"]["test"] for e in run] for run in epochs]
    frame["final_minus_best"] = [metrics.final_minus_best(v) for v in c10]
    frame["late_changes"] = [float(metrics.late_changes([e["arch"] for e in r])) for r in epochs]
    archs = zip(_col(frame, "arch"), finished, strict=True)
    cells = [Cell.from_arch_str(a) if ok else None for a, ok in archs]
    frame["cell"] = cells
    frame["collapse_structure"] = [c is not None and metrics.structural_collapse(c) for c in cells]
    frame["collapse_accuracy"] = finished & (_col(frame, "c10_test") < metrics.COLLAPSE_ACCURACY)
    low_high = [
        _rank_interval(c) if ok else (math.nan, math.nan)
        for c, ok in zip(_col(frame, "ranking_cells"), finished, strict=True)
    ]
    frame["rank_tau_low"] = [low for low, _ in low_high]
    frame["rank_tau_high"] = [high for _, high in low_high]
    return judged(frame, truth)


def _rank_interval(cells: Any) -> tuple[float, float]:
    """Bootstrap interval over the scored cells of a run's one-shot τ (against C10 valid)."""
    if not isinstance(cells, dict) or not cells.get("scores"):
        return math.nan, math.nan
    return inference.bootstrap_kendall(cells["scores"], cells["valid"])


JUDGED = (
    "alpha_tau",
    "alpha_tau_top5",
    "edges_right",
    "edge_regret",
    "local_optimum",
    *(f"top{k}_gain" for k in discretization.TOP_K),
)


def judged(frame: pd.DataFrame, truth: Truth | None) -> pd.DataFrame:
    """The columns of :func:`harness.discretization.judge` from each finished run's last
    α and its cell, and the benchmark's own seed spread of the cell (``bench_seed_n``,
    ``bench_seed_std``); NaN without the table or for runs that did not finish."""
    frame = frame.copy()
    rows = [_judge_run(run, truth) for run in frame.to_dict("records")]
    for column in JUDGED:
        frame[column] = [row[column] for row in rows]
    spreads = [_seed_spread_of(index, truth) for index in _col(frame, "nb201_index")]
    frame["bench_seed_n"] = [n for n, _ in spreads]
    frame["bench_seed_std"] = [std for _, std in spreads]
    return frame


def _judge_run(run: dict[str, Any], truth: Truth | None) -> dict[str, Any]:
    records = run.get("epochs")
    alpha = records[-1].get("alpha") if isinstance(records, list) and records else None
    if truth is None or run["status"] != "finished":
        alpha = None
    found = discretization.judge(alpha, run["cell"], None if truth is None else truth.c10_valid)
    optimum = found["local_optimum"]
    return {**found, "local_optimum": math.nan if optimum is None else float(optimum)}


def _seed_spread_of(index: Any, truth: Truth | None) -> tuple[float, float]:
    """(seeds, std of C10 valid) the benchmark has for the cell at NB201 ``index``."""
    spread = None if truth is None else truth.spread
    if spread is None or _missing(index) or int(index) not in spread.index:
        return math.nan, math.nan
    return float(spread.loc[int(index), "n"]), float(spread.loc[int(index), "std"])


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or NaNs where no run has it (e.g. every run failed)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


# --- the NB201 paper table ---------------------------------------------------------
def status_counts(group: pd.DataFrame) -> dict[str, int]:
    counts = group["status"].value_counts()
    names = ("finished", "diverged", "failed", "unfinished")
    return {name: int(counts.get(name, 0)) for name in names}


PERCENT, SHARE, CORRELATION = (0.0, 100.0), (0.0, 1.0), (-1.0, 1.0)
BOUNDS = {
    **{column: PERCENT for column in ACCURACIES},
    "edges_right": SHARE,
    "local_optimum": SHARE,
    "supernet_valid_acc": PERCENT,
    "onehot_valid_acc": PERCENT,
    **{c: CORRELATION for c in ("alpha_tau", "alpha_tau_top5", "rank_kendall_tau")},
    **{c: CORRELATION for c in ("rank_spearman_rho", "rank_sparse_kendall_tau")},
    **{c: CORRELATION for c in ("rank_top20_kendall_tau", "rank_split_half_tau")},
}
"""The possible range of a column: its interval is clipped to it (a t-interval of a
skewed quantity on a few seeds can reach past 100 %)."""


def _mean_std_columns(finished: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Per column: mean, sample std, 95 % t-interval and n over the finished runs; no std
    and no interval from one value (never a zero that claims no variance)."""
    row: dict[str, float] = {}
    for column in columns:
        values = _col(finished, column).dropna().astype(float).tolist()
        mean, std = metrics.mean_std(values)
        low, high = inference.t_interval(values)
        if column in BOUNDS and not _missing(low):
            low, high = max(low, BOUNDS[column][0]), min(high, BOUNDS[column][1])
        row[f"{column}_mean"] = mean
        row[f"{column}_std"] = std if len(values) > 1 else math.nan
        row[f"{column}_ci_low"], row[f"{column}_ci_high"] = low, high
        row[f"{column}_n"] = len(values)
    return row


def _run_row(method: str, group: pd.DataFrame) -> dict[str, Any]:
    counts = status_counts(group)
    finished = group[group["status"] == "finished"]
    row: dict[str, Any] = {"method": method, "kind": RUN_HERE, "source": "this harness"}
    row.update(seeds=counts["finished"], runs=len(group))
    row.update({k: counts[k] for k in ("diverged", "failed", "unfinished")})
    row.update(_mean_std_columns(finished, ACCURACIES))
    row.update(_mean_std_columns(finished.assign(search_s=_col(finished, "wall_s")), ["search_s"]))
    return row


def nb201_table(
    frame: pd.DataFrame, optimum: dict[str, Any] | None, published: pd.DataFrame
) -> Table:
    rows = [_run_row(str(m), g) for m, g in frame.groupby("method", sort=True)]
    groups = [len(rows)]
    if optimum is not None:
        row = {"method": "Optimum of the space", "kind": REFERENCE, "source": optimum["version"]}
        row["provenance"] = "T"
        row.update({f"{k}_mean": v for k, v in optimum["values"].items()})
        rows.append(row)
    groups.append(len(rows))
    for record in published.to_dict("records"):
        row = {k: v for k, v in record.items() if k not in ("block", "note")}
        row["kind"] = PUBLISHED
        rows.append(row)
    numeric = _integer_counts(pd.DataFrame(rows))
    display = pd.DataFrame(
        {
            "Method": numeric["method"],
            "Kind": numeric["kind"],
            "Provenance": [_text(v) for v in _col(numeric, "provenance")],
            "Seeds": _counts_text(numeric, "seeds"),
            "Diverged / failed / unfinished": _drop_text(numeric),
            **{LABELS[c]: _interval(numeric, c, _fixed(2), std=True) for c in ACCURACIES},
            "Search (s)": _interval(numeric, "search_s", _fixed(0), std=True),
        }
    )
    notes = [
        "Accuracies in %, mean ± sample std [95% t-interval of the mean] over the finished "
        "seeds (n = Seeds); one seed shows its value alone. Search cost is the mean "
        "wall-clock of the search loop (ranking excluded).",
        "NB201 lookup: C10 valid = cifar10-valid/x-valid, C10 test = cifar10/ori-test, "
        "C100 and IN16 = x-valid/x-test; 200-epoch means over the benchmark's seeds.",
        "Published rows come from the sources cited in harness/data/published_nb201.csv; "
        "they were not run here and follow their own protocols. Provenance: S = every value "
        "checked against the cited source; T = every value checked against this report's "
        "NB201 table (the lookup of the cell the source's numbers identify); S+T = both, per "
        "column as the CSV's note says; S/U = as quoted by the cited secondary source, not "
        "re-read; U = unverified (see the CSV's note). Empty cells are values that could "
        "not be checked and were left out.",
        "The published 'Optimal' row's IN16 valid (46.77) is above the 'Optimum of the "
        "space' (46.73), while its other five maxima equal this table's: this table derives "
        "IN16 x-valid as 2·valtest − test from the benchmark file it was converted from, and "
        "the paper's benchmark release holds a different value there (not traced further).",
    ]
    return Table("nb201", "NAS-Bench-201 results", numeric, display, notes, groups)


COUNT_COLUMNS = ("seeds", "runs", "diverged", "failed", "unfinished", "n_a", "n_b")


def _integer_counts(numeric: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers, so the CSV says 2 and not 2.0 beside empty cells."""
    for column in COUNT_COLUMNS:
        if column in numeric:
            numeric[column] = numeric[column].astype("Int64")
    return numeric


def _counts_text(numeric: pd.DataFrame, column: str) -> list[str]:
    return [_int_text(v) for v in _col(numeric, column)]


def _text(value: Any) -> str:
    return "–" if _missing(value) else str(value)


def _int_text(value: Any) -> str:
    return "–" if _missing(value) or value is pd.NA else str(int(value))


def _drop_text(numeric: pd.DataFrame) -> list[str]:
    parts = ("diverged", "failed", "unfinished")
    return [
        "–" if row["kind"] != RUN_HERE else " / ".join(_int_text(row[p]) for p in parts)
        for _, row in numeric.iterrows()
    ]


# --- what this harness adds --------------------------------------------------------
HARNESS_COLUMNS: tuple[tuple[str, str, Format], ...] = (
    ("gap_acc", "Gap acc (pt)", lambda v: f"{v:.2f}"),
    ("gap_loss", "Gap loss", lambda v: f"{v:.3f}"),
    ("alpha_distance", "Δ(α)", lambda v: f"{v:.3f}"),
    ("gap_to_nb201", "One-hot − NB201 (pt)", lambda v: f"{v:.1f}"),
    ("rank_kendall_tau", "Kendall τ", lambda v: f"{v:.3f}"),
    ("rank_spearman_rho", "Spearman ρ", lambda v: f"{v:.3f}"),
    ("rank_sparse_kendall_tau", "Sparse τ", lambda v: f"{v:.3f}"),
    ("rank_p_at_5", "P@5%", lambda v: f"{v:.2f}"),
    ("rank_top20_kendall_tau", "τ top-20%", lambda v: f"{v:.3f}"),
    ("rank_split_half_tau", "Score split-half τ", lambda v: f"{v:.3f}"),
    ("final_minus_best", "Final − best (pt)", lambda v: f"{v:.2f}"),
    ("late_changes", "Late cell changes", lambda v: f"{v:.1f}"),
    ("supernet_valid_acc", "Supernet acc (%)", lambda v: f"{v:.1f}"),
    ("onehot_valid_acc", "One-hot acc (%)", lambda v: f"{v:.1f}"),
)


def _harness_row(method: str, group: pd.DataFrame) -> dict[str, Any]:
    counts = status_counts(group)
    finished = group[group["status"] == "finished"]
    row: dict[str, Any] = {"method": method, "seeds": counts["finished"]}
    row.update({k: counts[k] for k in ("diverged", "failed", "unfinished")})
    cells = list(finished["cell"])
    rates = metrics.collapse_rates(cells, _col(finished, "c10_test").tolist())
    row["collapse_structure"], row["collapse_accuracy"] = rates["structure"], rates["accuracy"]
    row["collapsed_structure"] = int(finished["collapse_structure"].sum()) if cells else 0
    row["collapsed_accuracy"] = int(finished["collapse_accuracy"].sum()) if cells else 0
    agreement = metrics.cell_agreement(cells)
    row["cell_agreement"] = agreement["identical"]
    row["edge_agreement"] = float(np.mean(agreement["per_edge"]))
    row.update(_mean_std_columns(finished, [c for c, _, _ in HARNESS_COLUMNS]))
    return row


def harness_table(frame: pd.DataFrame) -> Table:
    numeric = pd.DataFrame([_harness_row(str(m), g) for m, g in frame.groupby("method")])
    display = pd.DataFrame(
        {
            "Method": _marked(numeric["method"], supernet_twins(frame)),
            "Seeds": _counts_text(numeric, "seeds"),
            "Diverged / failed / unfinished": _drop_text(numeric.assign(kind=RUN_HERE)),
            **{label: _interval(numeric, c, fmt, True) for c, label, fmt in HARNESS_COLUMNS[:4]},
            "Collapse ≥4 free": _shares(numeric, "collapse_structure"),
            "Collapse <80%": _shares(numeric, "collapse_accuracy"),
            "Same cell": [_percent(v) for v in numeric["cell_agreement"]],
            "Same op per edge": [_percent(v) for v in numeric["edge_agreement"]],
            **{label: _interval(numeric, c, fmt, True) for c, label, fmt in HARNESS_COLUMNS[4:]},
        }
    )
    notes = [
        "Each mean: ± sample std [95% t-interval of the mean] over the finished seeds "
        "(n = Seeds, or as stated); one seed shows its value alone.",
        "Gap acc = supernet accuracy with continuous weights − with the one-hot derived cell "
        "(same weights, same eval images); Gap loss = L_disc − L_cont; Δ(α) = mean_e "
        "‖p_e − onehot‖²; One-hot − NB201 = one-hot supernet accuracy − the cell's NB201 "
        "C10 valid accuracy.",
        "Collapse: share of finished runs whose cell has ≥4 of 6 parameter-free edges, or "
        "NB201 C10 test < 80%. Same cell: share of seed pairs with isomorphic cells; same op "
        "per edge: share of seed pairs choosing the same op, averaged over edges.",
        "Ranking: one-shot accuracy of sampled cells vs NB201 C10 valid (Kendall τ-b, "
        "Spearman ρ, sparse τ with truth rounded to 0.1, P@5% = share of the top 5% by score "
        "in the true top 5%, τ among the true top 20%); score split-half τ: the same cells' "
        "scores on the even against the odd eval batches (disjoint images): how reproducible "
        "the score itself is.",
        "Supernet / one-hot acc: the supernet's accuracy on the gap eval images with "
        "continuous / one-hot weights at the last epoch (how trained the supernet is).",
        "Final − best: last epoch's NB201 C10 test minus the best epoch's (≤ 0); late cell "
        "changes: derived-cell changes in the last 10% of epochs (at least the last).",
        *_twin_notes(frame),
    ]
    return Table("harness", "What this harness measures", numeric, display, notes)


# --- the discretization judged against the table ----------------------------------------
DISCRETIZATION_COLUMNS: tuple[tuple[str, str, Format], ...] = (
    ("alpha_tau", "α-τ", lambda v: f"{v:.3f}"),
    ("alpha_tau_top5", "α-τ top-5%", lambda v: f"{v:.3f}"),
    ("edges_right", "Edges right", lambda v: f"{100 * v:.0f}%"),
    ("edge_regret", "Edge regret (pt)", lambda v: f"{v:.2f}"),
    ("local_optimum", "Local optimum", lambda v: f"{100 * v:.0f}%"),
    ("top1_gain", "Top-1 − cell (pt)", lambda v: f"{v:.2f}"),
    ("top10_gain", "Top-10 − cell (pt)", lambda v: f"{v:.2f}"),
    ("top100_gain", "Top-100 − cell (pt)", lambda v: f"{v:.2f}"),
    ("bench_seed_std", "Benchmark seed std (pt)", lambda v: f"{v:.2f}"),
)


def _summary_row(method: str, group: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    counts = status_counts(group)
    finished = group[group["status"] == "finished"]
    return {"method": method, "seeds": counts["finished"], **_mean_std_columns(finished, columns)}


def discretization_table(frame: pd.DataFrame) -> Table:
    """Per row: α ranking, edge decisions and top-k gains against the table (C10 valid)."""
    columns = [c for c, _, _ in DISCRETIZATION_COLUMNS]
    numeric = _integer_counts(
        pd.DataFrame([_summary_row(str(m), g, columns) for m, g in frame.groupby("method")])
    )
    display = pd.DataFrame(
        {
            "Method": _marked(numeric["method"], supernet_twins(frame)),
            "Seeds": _counts_text(numeric, "seeds"),
            **{label: _interval(numeric, c, fmt, True) for c, label, fmt in DISCRETIZATION_COLUMNS},
        }
    )
    notes = [
        "Judged by the NB201 table (C10 valid, the search-side truth), from each run's last "
        "α and its derived cell; no forward pass. Each mean: ± sample std [95% t-interval] "
        "over the finished seeds.",
        "α-τ: Kendall τ-b between the α score of every one of the 15,625 cells (Σ over edges "
        "of log p(op), the method's own probabilities) and the table, over all cells; α-τ "
        "top-5%: among the true top 5% (781 cells). The whole space is scored, so there is no "
        "sampling error over cells; the interval is over seeds.",
        "Edges right: share of the 6 edges whose op is the best of the 5 cells that differ from "
        "the derived cell only there; edge regret: the best of those 5 minus the cell, in "
        "points, averaged over edges; local optimum: share of runs whose cell is right at every "
        "edge. Strict: a neighbour better by less than the benchmark seed std (below) still "
        "counts, so read the regret beside it.",
        "Top-k − cell: the best cell among the α distribution's k most likely cells minus the "
        "derived cell (what a better selector could have had from the same α; 0 for argmax at "
        "k = 1, where the most likely cell is the argmax cell).",
        "Benchmark seed std: the std of the derived cell's C10 valid over the benchmark's own "
        "training seeds (2-3 per cell, nb201_perseed_200ep.csv), averaged over runs: how much "
        "retraining the same cell moves its accuracy.",
    ]
    notes += _twin_notes(frame)
    return Table(
        "discretization", "Discretization judged against the table", numeric, display, notes
    )


def _marked(names: pd.Series, twins: dict[str, str]) -> list[str]:
    """Row labels, a row that repeats another's supernets marked with ``*``."""
    return [f"{m} *" if m in twins else str(m) for m in names]


def _twin_notes(frame: pd.DataFrame) -> list[str]:
    return [
        f"* {twin} reads the same supernets as {primary}: its gap, Δ(α), α-τ, one-shot "
        f"ranking and supernet columns are {primary}'s; only the cell and what is looked up "
        "from it differ."
        for twin, primary in sorted(supernet_twins(frame).items())
    ]


# --- the leading summary ---------------------------------------------------------------
SUMMARY_COLUMNS: tuple[tuple[str, str, Format], ...] = (
    ("c10_test", "C10 test", lambda v: f"{v:.2f}"),
    ("c100_test", "C100 test", lambda v: f"{v:.2f}"),
    ("in16_test", "IN16 test", lambda v: f"{v:.2f}"),
    ("gap_acc", "Gap acc (pt)", lambda v: f"{v:.1f}"),
    ("edges_right", "Edges right", lambda v: f"{100 * v:.0f}%"),
    ("alpha_tau", "α-τ", lambda v: f"{v:.2f}"),
    ("rank_kendall_tau", "One-shot τ", lambda v: f"{v:.2f}"),
    ("rank_split_half_tau", "Split-half τ", lambda v: f"{v:.2f}"),
)


def summary_table(frame: pd.DataFrame) -> Table:
    """One row per method and selection: the numbers a reader wants first."""
    columns = [c for c, _, _ in SUMMARY_COLUMNS]
    rows = []
    for method, group in frame.groupby("method", sort=True):
        row = _summary_row(str(method), group, columns)
        finished = group[group["status"] == "finished"]
        row["collapse_accuracy"] = (
            float(finished["collapse_accuracy"].mean()) if len(finished) else math.nan
        )
        row["collapsed_accuracy"] = int(finished["collapse_accuracy"].sum())
        rows.append(row)
    numeric = _integer_counts(pd.DataFrame(rows))
    display = pd.DataFrame(
        {
            "Method": _marked(numeric["method"], supernet_twins(frame)),
            "Seeds": _counts_text(numeric, "seeds"),
            **{label: _interval(numeric, c, fmt) for c, label, fmt in SUMMARY_COLUMNS[:4]},
            "Collapse <80%": _shares(numeric, "collapse_accuracy"),
            **{label: _interval(numeric, c, fmt) for c, label, fmt in SUMMARY_COLUMNS[4:]},
        }
    )
    notes = [
        "Mean [95% t-interval of the mean] over the finished seeds (n = Seeds; one seed: the "
        "value alone; intervals clipped to the possible range). Accuracies: NB201 test (%) "
        "of the derived cells; gap: continuous minus "
        "one-hot supernet accuracy; edges right and α-τ: the discretization judged by the "
        "table; one-shot τ: the supernet's ranking of sampled cells; split-half τ: that "
        "score's own reproducibility. Definitions below and in docs/reports.md.",
        *_twin_notes(frame),
    ]
    return Table("summary", "Summary", numeric, display, notes)


# --- per run ------------------------------------------------------------------------
RUN_COLUMNS = [
    "method",
    "seed",
    "c10_valid",
    "bench_seed_n",
    "bench_seed_std",
    "c10_test",
    "alpha_tau",
    "edges_right",
    "edge_regret",
    "top10_gain",
    "rank_kendall_tau",
    "rank_tau_low",
    "rank_tau_high",
    "rank_split_half_tau",
]


def runs_table(frame: pd.DataFrame) -> Table:
    """One row per finished run: its cell beside the benchmark's own seed spread, its
    discretization statistics and its one-shot τ with a bootstrap interval over cells."""
    finished = frame[frame["status"] == "finished"].sort_values(["method", "seed"])
    numeric = finished.reindex(columns=RUN_COLUMNS).reset_index(drop=True)
    numeric["seed"] = numeric["seed"].astype("Int64")
    numeric["bench_seed_n"] = numeric["bench_seed_n"].astype("Int64")
    display = pd.DataFrame(
        {
            "Method": numeric["method"],
            "Seed": _counts_text(numeric, "seed"),
            "C10 valid": [
                _number(v, _fixed(2)) + ("" if _missing(s) else f" ± {s:.2f} (n={int(n)})")
                for v, s, n in zip(
                    numeric["c10_valid"],
                    numeric["bench_seed_std"],
                    numeric["bench_seed_n"].astype(float),
                    strict=True,
                )
            ],
            "C10 test": [_number(v, _fixed(2)) for v in numeric["c10_test"]],
            "α-τ": [_number(v, _fixed(3)) for v in numeric["alpha_tau"]],
            "Edges right": [_percent(v) for v in numeric["edges_right"]],
            "Edge regret (pt)": [_number(v, _fixed(2)) for v in numeric["edge_regret"]],
            "Top-10 − cell (pt)": [_number(v, _fixed(2)) for v in numeric["top10_gain"]],
            "One-shot τ [bootstrap]": [
                _number(t, _fixed(3)) + ("" if _missing(lo) else f" [{lo:.2f}, {hi:.2f}]")
                for t, lo, hi in zip(
                    numeric["rank_kendall_tau"],
                    numeric["rank_tau_low"],
                    numeric["rank_tau_high"],
                    strict=True,
                )
            ],
            "Split-half τ": [_number(v, _fixed(3)) for v in numeric["rank_split_half_tau"]],
        }
    )
    notes = [
        "C10 valid: the cell's NB201 accuracy ± the std over the benchmark's own training "
        "seeds (n of them; 200 epochs, nb201_perseed_200ep.csv): how much retraining the same "
        "cell moves it. No ± where the benchmark has one seed of the cell.",
        f"One-shot τ [bootstrap]: 95% percentile interval over {inference.BOOTSTRAP_RESAMPLES} "
        f"resamples (with replacement) of the run's scored cells, seed {inference.BOOTSTRAP_SEED}.",
        "α-τ, edges right, edge regret and top-10 − cell as in the discretization table.",
    ]
    return Table("runs", "Per run", numeric, display, notes)


# --- comparisons -----------------------------------------------------------------------
COMPARED = (
    ("c10_test", "C10 test (%)", True),
    ("gap_acc", "Gap acc (pt)", False),
    ("alpha_tau", "α-τ", False),
)
"""(column, label, of the cell): statistics of the supernet (not of the cell) are not
compared between rows that read the same supernets; their differences are all zero."""
ALPHA = 0.05


def supernet_twins(frame: pd.DataFrame) -> dict[str, str]:
    """Rows that read the same runs (they differ only in a post-search axis such as
    ``select``) → the row with the search's own selection (``argmax``), whose supernet
    statistics, trajectories and α they repeat."""
    paths = {m: frozenset(g["path"]) for m, g in frame.groupby("method", sort=True)}
    selects = {m: set(_col(g, "select").dropna()) for m, g in frame.groupby("method", sort=True)}
    twins: dict[str, str] = {}
    for same in {p for p in paths.values() if list(paths.values()).count(p) > 1}:
        rows = sorted(m for m, p in paths.items() if p == same)
        primary = next((m for m in rows if selects[m] == {"argmax"}), rows[0])
        twins.update({m: primary for m in rows if m != primary})
    return twins


def _values(frame: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """A row's finished values of ``metric``, indexed by run path."""
    rows = frame[(frame["method"] == method) & (frame["status"] == "finished")]
    return _col(rows, metric).set_axis(rows["path"]).dropna().astype(float)


def compare(frame: pd.DataFrame, metric: str, a: str, b: str, paired: bool) -> dict[str, Any]:
    """One two-sided test of A against B: Wilcoxon signed-rank on the runs both rows read
    (``paired``), else Mann-Whitney U; the Hodges-Lehmann shift A − B and Cliff's δ."""
    x, y = _values(frame, a, metric), _values(frame, b, metric)
    if paired:
        common = sorted(set(x.index) & set(y.index))
        x, y = x[common], y[common]
        result = inference.wilcoxon_signed_rank(x.tolist(), y.tolist())
        shift = inference.paired_hodges_lehmann(x.tolist(), y.tolist())
        delta = inference.paired_dominance(x.tolist(), y.tolist())
    else:
        result = inference.mann_whitney(x.tolist(), y.tolist())
        shift = inference.hodges_lehmann(x.tolist(), y.tolist())
        delta = inference.cliffs_delta(x.tolist(), y.tolist())
    return {
        "metric": metric,
        "method_a": a,
        "method_b": b,
        "test": "Wilcoxon signed-rank (paired)" if paired else "Mann-Whitney U",
        "n_a": len(x),
        "n_b": len(y),
        "mean_a": metrics.mean_std(x.tolist())[0],
        "mean_b": metrics.mean_std(y.tolist())[0],
        "shift": shift,
        "delta": delta,
        "statistic": result.statistic,
        "p": result.p,
        "smallest_p": result.floor,
        "p_method": result.method,
        "note": result.note,
    }


def _pairs_to_test(
    names: Sequence[str], twins: dict[str, str], reference: str | None
) -> list[tuple[str, str, bool]]:
    """(A, B, paired): against ``reference`` where one is given, else every pair; rows
    that read the same runs are paired."""
    if reference is not None:
        pairs = [(reference, m) for m in names if m != reference]
        pairs += [(twins[m], m) for m in names if m in twins and twins[m] != reference]
    else:
        pairs = list(itertools.combinations(names, 2))
    linked = {(m, t) for m, t in twins.items()} | {(t, m) for m, t in twins.items()}
    return [(a, b, (a, b) in linked) for a, b in pairs]


def comparison_table(frame: pd.DataFrame, reference: str | None) -> Table:
    """Two-sided tests per metric: against ``reference`` and between rows that read the
    same runs (the main page), or every pair (``reference`` None: the all-pairs file);
    Holm-adjusted over the whole table."""
    names = sorted(frame["method"].unique())
    twins = supernet_twins(frame)
    rows = [
        compare(frame, metric, a, b, paired)
        for metric, _, of_cell in COMPARED
        for a, b, paired in _pairs_to_test(names, twins, reference)
        if of_cell or not paired
    ]
    numeric = _integer_counts(pd.DataFrame(rows, columns=COMPARISON_COLUMNS))
    numeric["p_holm"] = inference.holm(numeric["p"].tolist())
    label = {m: text for m, text, _ in COMPARED}
    display = pd.DataFrame(
        {
            "Metric": [label[m] for m in numeric["metric"]],
            "A": numeric["method_a"],
            "B": numeric["method_b"],
            "Test": numeric["test"],
            "Seeds A / B": [
                f"{a} / {b}" for a, b in zip(numeric["n_a"], numeric["n_b"], strict=True)
            ],
            "Mean A": [_number(v, _fixed(2)) for v in numeric["mean_a"]],
            "Mean B": [_number(v, _fixed(2)) for v in numeric["mean_b"]],
            "Shift A − B (HL)": [_number(v, _fixed(2)) for v in numeric["shift"]],
            "Cliff's δ": [_number(v, _fixed(2)) for v in numeric["delta"]],
            "p": [_number(v, _fixed(3)) for v in numeric["p"]],
            "Smallest possible p": [_number(v, _fixed(3)) for v in numeric["smallest_p"]],
            "p (Holm)": [_number(v, _fixed(3)) for v in numeric["p_holm"]],
            "Note": [_comparison_note(r) for r in numeric.to_dict("records")],
        }
    )
    scope = (
        f"against {reference}, and between rows that read the same runs"
        if reference
        else ("between every pair of rows")
    )
    notes = [
        f"Two-sided tests {scope}, one value per finished run: Wilcoxon signed-rank where "
        "both rows read the same runs (paired by run), else Mann-Whitney U; both exact (every "
        "permutation, ties included), so p is never below the smallest p these values allow.",
        f"p (Holm): Holm-adjusted over all {int(numeric['p'].notna().sum())} tests of this "
        f"table; a difference is significant at {ALPHA} only where it is below {ALPHA}.",
        "Shift A − B (HL): Hodges-Lehmann estimate, the median of all differences A − B (of "
        "the Walsh averages of the paired differences); Cliff's δ: P(A > B) − P(A < B) "
        "(paired: over the pairs), from −1 to 1.",
    ]
    groups = [i for i in range(1, len(numeric)) if numeric["metric"][i] != numeric["metric"][i - 1]]
    if reference is None:
        return Table("pairwise", "All pairs of rows", numeric, display, notes, groups)
    return Table("comparisons", f"Comparisons with {reference}", numeric, display, notes, groups)


COMPARISON_COLUMNS = [
    "metric",
    "method_a",
    "method_b",
    "test",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "shift",
    "delta",
    "statistic",
    "p",
    "smallest_p",
    "p_method",
    "note",
]


def _comparison_note(row: dict[str, Any]) -> str:
    parts = [] if row["p_method"] in ("exact", "not tested") else [str(row["p_method"])]
    parts += [str(row["note"])] if row["note"] else []
    return "; ".join(parts) or "–"


def reference_row(frame: pd.DataFrame) -> str | None:
    """The row the main page compares with: ``darts``'s with its own selection, else the
    first row; None with fewer than two rows."""
    names = sorted(frame["method"].unique())
    if len(names) < 2:
        return None
    twins = supernet_twins(frame)
    darts = [m for m in names if m not in twins and str(m).split(" [")[0] == "darts"]
    return darts[0] if darts else names[0]


# --- formatting -----------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fixed(decimals: int) -> Format:
    return lambda v: f"{v:.{decimals}f}"


def _number(value: Any, fmt: Format) -> str:
    return "–" if _missing(value) else fmt(float(value))


def _percent(value: Any) -> str:
    return "–" if _missing(value) else f"{100 * float(value):.0f}%"


def _shares(numeric: pd.DataFrame, column: str) -> list[str]:
    """``20% (1/5)``: a share with the counts it comes from."""
    counts = _col(numeric, column.replace("collapse_", "collapsed_"))
    return [
        _percent(v) if _missing(v) else f"{_percent(v)} ({int(c)}/{int(n)})"
        for v, c, n in zip(numeric[column], counts, numeric["seeds"], strict=True)
    ]


def _pm(numeric: pd.DataFrame, column: str, fmt: Format) -> list[str]:
    """``mean ± std`` per row; the mean alone where no std is known."""
    means, stds = _col(numeric, f"{column}_mean"), _col(numeric, f"{column}_std")
    return [
        "–" if _missing(m) else fmt(m) if _missing(s) else f"{fmt(m)} ± {fmt(s)}"
        for m, s in zip(means, stds, strict=True)
    ]


def _interval(numeric: pd.DataFrame, column: str, fmt: Format, std: bool = False) -> list[str]:
    """``mean [low, high]`` (the 95 % t-interval), after ``± std`` with ``std``; the
    mean alone from one value; ``(n=k)`` where fewer values than seeds were measured."""
    texts = (
        _pm(numeric, column, fmt)
        if std
        else [_number(m, fmt) for m in _col(numeric, f"{column}_mean")]
    )
    lows, highs = _col(numeric, f"{column}_ci_low"), _col(numeric, f"{column}_ci_high")
    counts, seeds = _col(numeric, f"{column}_n"), _col(numeric, "seeds")
    out = []
    for text, low, high, n, k in zip(texts, lows, highs, counts, seeds, strict=True):
        if not _missing(low) and text != "–":
            text += f" [{fmt(low)}, {fmt(high)}]"
        if not _missing(n) and not _missing(k) and 0 < int(n) < int(k):
            text += f" (n={int(n)})"
        out.append(text)
    return out


def to_markdown(table: Table) -> str:
    display = table.display
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(display.columns) + " |")
    lines.append("|" + "|".join("---" for _ in display.columns) + "|")
    for row in display.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    lines.append("")
    lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}
LATEX_SPECIAL.update({"~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})
LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "τ": r"$\tau$",
    "ρ": r"$\rho$",
    "α": r"$\alpha$",
    "β": r"$\beta$",
    "Λ": r"$\Lambda$",
    "Δ": r"$\Delta$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "<": r"$<$",
    "−": "--",
    "–": "--",
    "‖": r"$\|$",
    "²": r"$^2$",
}


def latex_escape(text: str) -> str:
    """Plain text → LaTeX: special characters escaped, Greek and ± as math."""
    out = []
    for char in str(text):
        if char == "\\":
            out.append(r"\textbackslash{}")
        else:
            out.append(LATEX_SPECIAL.get(char) or LATEX_SYMBOLS.get(char) or char)
    return "".join(out)


def to_latex(table: Table, source: str = "") -> str:
    """A booktabs tabular, hand-written so no Jinja2 is needed; ``source`` (where the
    numbers come from) as a comment line."""
    display = table.display
    spec = "l" * 2 + "r" * (len(display.columns) - 2)
    lines = [f"% {table.title} (generated by `python -m harness report`)"]
    lines += [f"% {source}"] if source else []
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(latex_escape(c) for c in display.columns) + r" \\")
    lines.append(r"\midrule")
    for position, row in enumerate(display.itertuples(index=False)):
        if position in table.groups and 0 < position < len(display):
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


CSV_DIGITS = 10
"""Significant digits of a CSV number: far below any reported precision, far above the
last bits in which a sum can differ between numpy builds or CPUs, so a regenerated
CSV matches byte for byte."""


def write_table(table: Table, out: Path, source: str = "") -> list[Path]:
    """The table as CSV, Markdown and LaTeX; ``source`` closes the Markdown and opens the
    LaTeX (a comment); the CSV stays plain (its provenance: ``manifest.json``)."""
    paths = [out / f"{table.name}.{ext}" for ext in ("csv", "md", "tex")]
    table.numeric.to_csv(paths[0], index=False, float_format=f"%.{CSV_DIGITS}g")
    markdown = to_markdown(table) + (f"\n{source}\n" if source else "")
    paths[1].write_text(markdown, encoding="utf-8")
    paths[2].write_text(to_latex(table, source), encoding="utf-8")
    return paths


# --- plots -----------------------------------------------------------------------------
def epoch_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long format, one row per (finished run, epoch): C10 test of the cell and gap_acc."""
    rows = []
    finished = frame[frame["status"] == "finished"]
    columns = (finished["method"], finished["seed"], finished["epochs"])
    for method, seed, records in zip(*columns, strict=True):
        for record in records:
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "epoch": record["epoch"],
                    "c10_test": record["nb201"]["cifar10"]["test"],
                    "gap_acc": _float(record.get("gap_acc")),
                }
            )
    return pd.DataFrame(rows, columns=["method", "seed", "epoch", "c10_test", "gap_acc"])


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """``stem``.png and .pdf (appended: a stem such as ``alpha_darts_a_lr=0.03`` keeps its dot)."""
    paths = [stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.pdf")]
    figure.tight_layout()
    figure.savefig(paths[0], dpi=150, metadata=PNG_METADATA)
    figure.savefig(paths[1], metadata=PDF_METADATA)
    return paths


PNG_METADATA: dict[str, str | None] = {"Software": None}
PDF_METADATA: dict[str, str | None] = {"Creator": None, "Producer": None, "CreationDate": None}
"""No library version and no creation date in a plot: regenerating it from the same
results gives the same bytes (with the same matplotlib)."""


def plot_trajectory(
    epochs: pd.DataFrame,
    column: str,
    ylabel: str,
    stem: Path,
    limits: tuple[float, float] | None = None,
    preset: str = "",
) -> list[Path]:
    """One panel per method: mean ± std band over seeds of a per-epoch quantity, and
    every seed as a thin grey line (a collapsed seed is visible, not averaged away).
    ``limits`` clips the band to the quantity's range (e.g. 0–100 for accuracies)."""
    names = sorted(epochs["method"].unique()) if len(epochs) else [""]
    cols = min(len(names), 4)
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(2.9 * cols + 0.6, 2.4 * rows + 0.7))
    grid = figure.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for axes, method in zip(grid.flat, names, strict=False):
        group = epochs[epochs["method"] == method]
        for _, run in group.groupby("seed"):
            axes.plot(run["epoch"], run[column], color="0.6", linewidth=0.7)
        summary = group.groupby("epoch")[column].agg(["mean", "std"]).fillna({"std": 0.0})
        x = summary.index.to_numpy()
        low, high = summary["mean"] - summary["std"], summary["mean"] + summary["std"]
        if limits is not None:
            low, high = low.clip(*limits), high.clip(*limits)
        axes.fill_between(x, low, high, color="C0", alpha=0.25)
        axes.plot(x, summary["mean"], color="C0", marker="o", markersize=3)
        axes.set_title(f"{method} ({group['seed'].nunique()} seeds)", fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(names) :]:
        axes.set_visible(False)
    figure.supxlabel("epoch", fontsize=9)
    figure.supylabel(ylabel, fontsize=9)
    figure.suptitle(
        f"preset {preset}: mean ± std over finished seeds (blue), single seeds (grey)", fontsize=9
    )
    return save_figure(figure, stem)


def mean_alpha(records_per_run: list[list[dict[str, Any]]]) -> np.ndarray:
    """[epochs, 6, 5] op probabilities averaged over runs (truncated to the shortest)."""
    arrays = [np.array([r["alpha"] for r in records], dtype=float) for records in records_per_run]
    arrays = [a for a in arrays if a.ndim == 3 and len(a)]
    if not arrays:
        return np.zeros((0, len(EDGES), len(OPS)))
    shortest = min(len(a) for a in arrays)
    return np.mean([a[:shortest] for a in arrays], axis=0)


def plot_alpha(
    method: str, alpha: np.ndarray, seeds: int, stem: Path, preset: str = ""
) -> list[Path]:
    """Six panels, one per edge: each op's probability over epochs, labelled and with a
    legend in every panel."""
    figure = Figure(figsize=(9, 5))
    axes = figure.subplots(2, 3, sharex=True, sharey=True)
    x = np.arange(1, len(alpha) + 1)
    for edge, ax in enumerate(axes.flat):
        for op_index, op in enumerate(OPS):
            ax.plot(x, alpha[:, edge, op_index], label=op)
        target, source = EDGES[edge]
        ax.set_title(f"edge {source}→{target}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_ylabel("probability", fontsize=8)
        ax.legend(fontsize=6)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    title = f"preset {preset}: {method}, α probabilities, mean over {seeds} seed(s)"
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, stem)


def plot_ranking(frame: pd.DataFrame, stem: Path, preset: str = "") -> list[Path]:
    """Per row, every finished seed's sampled cells as rank against rank (one-shot score
    against NB201 C10 valid, 1 = best), so the few very bad cells do not squash the band
    where ranking matters; a colour per seed, the mean τ in the title."""
    if "ranking_cells" not in frame:
        return []
    ranked = frame[(frame["status"] == "finished") & frame["ranking_cells"].notna()]
    if ranked.empty:
        return []
    methods = sorted(ranked["method"].unique())
    cols = min(len(methods), 4)
    rows = math.ceil(len(methods) / cols)
    figure = Figure(figsize=(3.2 * cols, 3.0 * rows + 0.4))
    for position, method in enumerate(methods, start=1):
        runs = ranked[ranked["method"] == method].sort_values("seed")
        ax = figure.add_subplot(rows, cols, position)
        for colour, run in enumerate(runs.itertuples(index=False)):
            cells = run.ranking_cells
            truth = stats_rank(cells["valid"])
            score = stats_rank(cells["scores"])
            ax.scatter(
                truth, score, s=6, alpha=0.6, color=f"C{colour % 10}", label=f"seed {run.seed}"
            )
        tau = runs["rank_kendall_tau"].mean()
        ax.set_title(f"{method}: mean τ = {tau:.2f} ({len(runs)} seeds)", fontsize=8)
        ax.set_xlabel("rank by NB201 C10 valid", fontsize=8)
        ax.set_ylabel("rank by one-shot accuracy", fontsize=8)
        ax.legend(fontsize=5, markerscale=1.5)
        ax.grid(alpha=0.3)
    figure.suptitle(
        f"preset {preset}: one-shot ranking of the sampled cells (1 = best)", fontsize=9
    )
    return save_figure(figure, stem)


def stats_rank(values: Sequence[float]) -> np.ndarray:
    """Ranks, 1 = the largest value (ties share their mean rank)."""
    array = np.asarray(values, dtype=np.float64)
    return len(array) + 1 - pd.Series(array).rank(method="average").to_numpy()


def plot_seeds(frame: pd.DataFrame, published: pd.DataFrame, stem: Path, preset: str) -> list[Path]:
    """Each row's C10 test accuracy per seed (dots), its mean with the 95 % t-interval
    (bar, clipped to 0–100; none from one seed), and below a rule the published rows'
    C10 test means as markers. One line per row, so long labels stay readable."""
    finished = frame[frame["status"] == "finished"]
    methods = sorted(finished["method"].unique())
    marks = published.dropna(subset=["c10_test_mean"])
    labels = [*methods, *(f"{m} (published)" for m in marks["method"])]
    figure = Figure(figsize=(7.5, 0.22 * len(labels) + 1.2))
    ax = figure.subplots()
    for y, method in enumerate(methods):
        values = finished.loc[finished["method"] == method, "c10_test"].dropna().astype(float)
        ax.scatter(values, np.full(len(values), y), s=10, color="0.45", zorder=3)
        low, high = inference.t_interval(values.tolist())
        if not _missing(low):
            mean = values.mean()
            low, high = max(low, PERCENT[0]), min(high, PERCENT[1])
            bar = [[mean - low], [high - mean]]
            ax.errorbar(mean, y, xerr=bar, fmt="o", color="C0", markersize=4, capsize=3, zorder=4)
    for offset, value in enumerate(marks["c10_test_mean"]):
        ax.scatter(value, len(methods) + offset, marker="D", color="C3", s=16, zorder=4)
    if len(marks):
        ax.axhline(len(methods) - 0.5, color="0.3", linewidth=0.8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("NB201 C10 test of the derived cell (%)", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(
        f"preset {preset}: each seed (grey), mean with 95% t-interval (blue);\n"
        "published rows (red, not run here, their own protocols)",
        fontsize=8,
    )
    return save_figure(figure, stem)


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every plot there is data for (none of the trajectories without a finished run);
    rows that read another row's supernets (:func:`supernet_twins`) get no trajectory,
    α or ranking panels of their own, since theirs would repeat that row's."""
    preset = str(frame["preset"].iloc[0]) if len(frame) else ""
    own = frame[~frame["method"].isin(supernet_twins(frame))]
    epochs = epoch_frame(own)
    paths: list[Path] = []
    if len(epochs):
        c10 = "NB201 C10 test of the cell (%)"
        paths += plot_trajectory(epochs, "c10_test", c10, out / "c10_test", (0.0, 100.0), preset)
        gap = "discretization gap, acc (pt)"
        paths += plot_trajectory(epochs, "gap_acc", gap, out / "gap_acc", None, preset)
    finished = own[own["status"] == "finished"]
    for method, group in finished.groupby("method", sort=True):
        alpha = mean_alpha(list(group["epochs"]))
        if len(alpha):
            stem = out / f"alpha_{file_name(str(method))}"
            paths += plot_alpha(str(method), alpha, len(group), stem, preset)
    paths += plot_ranking(own, out / "ranking", preset)
    if (frame["status"] == "finished").any():
        paths += plot_seeds(frame, load_published(), out / "c10_seeds", preset)
    return paths


def file_name(label: str) -> str:
    """A row label as part of a file name: ``darts [epochs=1]`` → ``darts_epochs=1``."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_")


# --- what the numbers can mean ----------------------------------------------------------
TAU_RESOLUTION = 0.1
"""A τ over so few cells that an unrelated ranking's τ has a std above this is marked as
below a meaningful size (std of τ under independence: √(2(2n+5) / (9n(n−1))))."""


def null_tau_std(cells: int) -> float:
    """Std of Kendall τ between two independent rankings of ``cells`` cells."""
    if cells < 2:
        return math.nan
    return math.sqrt(2 * (2 * cells + 5) / (9 * cells * (cells - 1)))


def accuracy_std_error(images: int) -> float:
    """Binomial standard error (points) of an accuracy near 50 % on ``images`` images."""
    return 100 * math.sqrt(0.25 / images) if images > 0 else math.nan


def _size_note(cells: int) -> str:
    std = null_tau_std(cells)
    if _missing(std) or std > TAU_RESOLUTION:
        return f"**below a meaningful size** (a τ of unrelated rankings has std {std:.2f})"
    return f"a τ of unrelated rankings has std {std:.2f}"


def resolution_lines(frame: pd.DataFrame) -> list[str]:
    """What the preset measures on: images for the gap, cells and images for the ranking,
    the split-half's images or why there is none; statistics below a meaningful size marked."""
    finished = frame[frame["status"] == "finished"]
    configs = [rundir.flat_recorded(c) for c in finished["config"] if isinstance(c, dict)]
    if not configs:
        return []
    first = configs[0]
    gap_images = int(first.get("gap_eval_size") or 0)
    lines = (
        [
            f"- the gap: {gap_images} images (an accuracy on them has a binomial std error of "
            f"{accuracy_std_error(gap_images):.1f} pt near 50%)"
        ]
        if gap_images
        else []
    )
    cells = int(first.get("rank_samples") or 0)
    if cells:
        images = int(_col(finished, "rank_eval_size").dropna().max() or gap_images)
        top = metrics.top_count(cells, 0.2)
        lines.append(
            f"- the one-shot ranking: {cells} cells on {images} images each; {_size_note(cells)}"
        )
        lines.append(f"- τ top-20%: a τ over {top} cells; {_size_note(top)}")
        reasons = sorted(set(_col(finished, "rank_split_half_reason").dropna()))
        if reasons:
            lines.append(f"- split-half τ: none ({'; '.join(reasons)})")
        else:
            lines.append(
                f"- split-half τ: the same {cells} cells on two halves of the {images} images"
            )
    else:
        lines.append("- no one-shot ranking (rank_samples = 0)")
    lines.append(
        "- α-τ, edge decisions and top-k: the whole space (15,625 cells) judged by the table, "
        "at any preset"
    )
    if (
        len(
            {
                json.dumps(c, sort_keys=True)
                for c in ({k: c.get(k) for k in RESOLUTION_KEYS} for c in configs)
            }
        )
        > 1
    ):
        lines.append("- rows differ in these sizes; the values above are the first run's")
    return lines


RESOLUTION_KEYS = ("gap_eval_size", "rank_samples", "rank_eval_size", "resolution", "train_size")


def reading_lines(frame: pd.DataFrame, comparisons: Table) -> list[str]:
    """A few sentences of plain reading, each computed from the tables."""
    finished = frame[frame["status"] == "finished"]
    if finished.empty:
        return []
    twins = supernet_twins(frame)
    rows = finished[~finished["method"].isin(twins)]
    means = finished.groupby("method")["c10_test"].mean().sort_values(ascending=False)
    lines = [f"- highest mean C10 test: {means.index[0]} ({means.iloc[0]:.2f})."]
    tested = comparisons.numeric.dropna(subset=["p"])
    significant = tested[tested["p_holm"] < ALPHA]
    if len(tested):
        floor = tested["smallest_p"].min()
        lines.append(
            f"- {len(significant)} of {len(tested)} tests of the comparisons table "
            f"are significant after Holm (p < {ALPHA}); with these seeds no single test can give "
            f"p below {floor:.3f}, before the adjustment for {len(tested)} tests."
        )
        for row in significant.to_dict("records"):
            lines.append(
                f"  - {row['metric']}: {row['method_a']} vs {row['method_b']}, shift "
                f"{row['shift']:.2f}, p (Holm) {row['p_holm']:.3f}"
            )
    lines += _noise_lines(finished)
    lines += _ranking_reading(rows)
    return lines


def _noise_lines(finished: pd.DataFrame) -> list[str]:
    spread = _col(finished, "bench_seed_std").dropna()
    if spread.empty:
        return []
    noise = float(spread.median())
    means = finished.groupby("method")["c10_valid"].mean().sort_index()
    close = [
        f"{a} / {b} ({abs(means[a] - means[b]):.2f})"
        for a, b in itertools.combinations(means.index, 2)
        if abs(means[a] - means[b]) < noise
    ]
    line = (
        f"- the benchmark's own training noise: retraining the same cell moves its C10 valid "
        f"by {noise:.2f} pt (median over the derived cells of the std over the benchmark's "
        "seeds). "
    )
    if close:
        line += "Rows whose mean C10 valid differ by less: " + ", ".join(close) + "."
    else:
        line += "No two rows' mean C10 valid differ by less."
    return [line]


def _ranking_reading(rows: pd.DataFrame) -> list[str]:
    lines = []
    alpha = rows.groupby("method")["alpha_tau"].mean().dropna()
    if len(alpha):
        lines.append(
            f"- α-τ (the table judging α directly) is positive for {int((alpha > 0).sum())} of "
            f"{len(alpha)} methods (mean over seeds {alpha.min():.2f} to {alpha.max():.2f})."
        )
    tau = rows.assign(tau=_col(rows, "rank_kendall_tau")).groupby("method")["tau"].mean().dropna()
    if len(tau):
        intervals = rows[_col(rows, "rank_tau_low").notna()]
        above = int((intervals["rank_tau_low"] > 0).sum())
        meaningful = above > len(intervals) / 2
        verdict = "are" if meaningful else "are not"
        lines.append(
            f"- at this preset the one-shot τ is {tau.min():.2f} to {tau.max():.2f} (mean over "
            f"seeds per method), and its bootstrap interval lies above 0 in {above} of "
            f"{len(intervals)} runs: one-shot ranking statistics {verdict} meaningful here."
        )
    return lines


# --- the gathering page ---------------------------------------------------------------
def _provenance_lines(frame: pd.DataFrame, built_from: dict[str, Any] | None) -> list[str]:
    versions = sorted({str(v) for v in _col(frame, "table_version").dropna()})
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
