"""Paper-style tables and plots from a results directory; it never re-runs a search.

For every (preset, search dataset) under ``results/`` this writes, to
``<out>/<preset>/<dataset>/``:

* ``nb201``: the NAS-Bench-201 paper table (valid/test on three datasets, mean ±
  std over seeds, search cost) with reference rows: the space optimum from the
  benchmark table and published numbers (``harness/data/published_nb201.csv``),
  marked as not run here;
* ``harness``: what this harness adds (discretization gap, α distance, collapse
  rates, cross-seed agreement, ranking correlation, trajectory stability);
* ``pairwise``: two-sided Mann-Whitney U between methods on C10 test and gap_acc;
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
from scipy import stats

from harness import manifest, metrics, results
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
    runs = load_runs(results_dir)
    if runs.empty:
        raise UsageError(f"no runs under {results_dir}; run `python -m harness run` first")
    optimum = space_optimum(data_dir)
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
            source = (shown_path(results_dir) / str(preset) / str(dataset)).as_posix()
            reference = optimum["version"] if optimum else None
            built_from = manifest.build_manifest(group, source, reference, skipped)
            written += report_group(group, target, optimum, published, skipped, built_from)
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
) -> list[Path]:
    """One (preset, dataset): rows split by config, integrity warnings, then the files
    (with ``built_from``, the group's :func:`harness.manifest.build_manifest`)."""
    rows = by_selection(group.reset_index(drop=True))  # a select=pt run: argmax and pt rows
    frame, split_note = split_by_config(add_run_statistics(rows))
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
NOT_COMPARED = ("seed", "method", "preset", "dataset", results.TABLE_KEY, *results.EXECUTION_FIELDS)
"""Config keys that never split a row: the seed (a row pools seeds), the row's own
grouping, the table (flagged apart, see :func:`integrity_warnings`) and execution
fields (they change speed, not results)."""
OPTIONS = "method_options."
ABSENT = "(absent)"


def protocol(config: Any) -> dict[str, str] | None:
    """A run's config as rows compare it: flat, values as JSON text, bar NOT_COMPARED;
    None where the run recorded no config. A field added after the run was made reads
    as its old behaviour (``BEFORE_FIELD``), as a resume does, so an older run pools
    with newer runs that behave the same."""
    if not isinstance(config, dict):
        return None
    flat = results.flat_recorded(config)
    return {k: json.dumps(v, sort_keys=True) for k, v in flat.items() if k not in NOT_COMPARED}


def _varying(protocols: list[dict[str, str]], keys: set[str]) -> list[str]:
    return sorted(k for k in keys if len({p.get(k, ABSENT) for p in protocols}) > 1)


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
    shared = _varying(known, {k for p in known for k in p if not k.startswith(OPTIONS)})
    own: dict[str, list[str]] = {}
    for method in frame["method"].unique():
        mine = [p for p, m in zip(protocols, frame["method"], strict=True) if m == method and p]
        own[method] = _varying(mine, {k for p in mine for k in p if k.startswith(OPTIONS)})
    labels = [_label(m, p, shared, own[m]) for m, p in zip(frame["method"], protocols, strict=True)]
    frame["method"] = _place_unknown(frame["method"].tolist(), labels)
    differing = shared + [f"{m}.{k.removeprefix(OPTIONS)}" for m in own for k in own[m]]
    if not differing:
        return frame, ""
    note = (
        f"Runs with different configs are never pooled: rows are split by {', '.join(differing)} "
        f"(values in brackets); seed and {', '.join(results.EXECUTION_FIELDS)} are not compared."
    )
    return frame, note


def _label(
    method: str, protocol_: dict[str, str] | None, shared: list[str], own: list[str]
) -> str | None:
    """``method [key=value, ...]`` for the differing keys; None for an unknown config."""
    if protocol_ is None:
        return None
    parts = [f"{k}={_value_text(protocol_.get(k, ABSENT))}" for k in shared]
    parts += [
        f"{method}.{k.removeprefix(OPTIONS)}={_value_text(protocol_.get(k, ABSENT))}" for k in own
    ]
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
        nb201_table(frame, optimum, published),
        harness_table(frame),
        pairwise_table(frame),
    ]
    for table in tables:
        flagged = [f"WARNING: {line}" for line in warnings_ or []]
        table.notes = flagged + list(notes or []) + table.notes
    source = manifest.summary(built_from) if built_from else ""
    written = [path for table in tables for path in write_table(table, out, source)]
    plots = write_plots(frame, out)
    written += plots
    written.append(write_index(frame, tables, plots, out, warnings_ or [], built_from))
    if built_from is not None:
        written.append(manifest.write_manifest(out, built_from, written))
    return written


# --- inputs --------------------------------------------------------------------------
def space_optimum(data_dir: Path | str | None) -> dict[str, Any] | None:
    """Best value of each column over the space, or None (with a warning) without a table."""
    from harness.benchmark import Benchmark

    try:
        table = Benchmark.load(data_dir)
    except UsageError as error:
        warnings.warn(f"no space-optimum row: {error}", stacklevel=2)
        return None
    best = table.optimum()
    row = {name: best[d][s] for (d, s), name in ACCURACY_KEYS.items()}
    return {"values": row, "version": table.version}


def load_published() -> pd.DataFrame:
    """Published NB201 rows with their citations (methods-spec §3.1 and §3.3)."""
    source = resources.files("harness") / "data" / "published_nb201.csv"
    with resources.as_file(source) as path:
        return pd.read_csv(path)


def add_run_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-run trajectory and collapse columns, from each run's epochs and final cell."""
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
    return frame


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or NaNs where no run has it (e.g. every run failed)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


# --- the NB201 paper table ---------------------------------------------------------
def status_counts(group: pd.DataFrame) -> dict[str, int]:
    counts = group["status"].value_counts()
    names = ("finished", "diverged", "failed", "unfinished")
    return {name: int(counts.get(name, 0)) for name in names}


def _mean_std_columns(finished: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    row = {}
    for column in columns:
        values = _col(finished, column).dropna()
        row[f"{column}_mean"], row[f"{column}_std"] = metrics.mean_std(values.tolist())
    return row


def _run_row(method: str, group: pd.DataFrame) -> dict[str, Any]:
    counts = status_counts(group)
    finished = group[group["status"] == "finished"]
    row: dict[str, Any] = {"method": method, "kind": RUN_HERE, "source": "this harness"}
    row.update(seeds=counts["finished"], runs=len(group))
    row.update({k: counts[k] for k in ("diverged", "failed", "unfinished")})
    row.update(_mean_std_columns(finished, ACCURACIES))
    row["search_s_mean"], row["search_s_std"] = metrics.mean_std(
        _col(finished, "wall_s").dropna().tolist()
    )
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
            **{LABELS[c]: _pm(numeric, c, _fixed(2)) for c in ACCURACIES},
            "Search (s)": _pm(numeric, "search_s", _fixed(0)),
        }
    )
    notes = [
        "Accuracies in %, mean ± sample std over the finished seeds; search cost is the "
        "mean wall-clock of the search loop (ranking excluded).",
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
    agreement = metrics.cell_agreement(cells)
    row["cell_agreement"] = agreement["identical"]
    row["edge_agreement"] = float(np.mean(agreement["per_edge"]))
    row.update(_mean_std_columns(finished, [c for c, _, _ in HARNESS_COLUMNS]))
    return row


def harness_table(frame: pd.DataFrame) -> Table:
    numeric = pd.DataFrame([_harness_row(str(m), g) for m, g in frame.groupby("method")])
    display = pd.DataFrame(
        {
            "Method": numeric["method"],
            "Seeds": _counts_text(numeric, "seeds"),
            "Diverged / failed / unfinished": _drop_text(numeric.assign(kind=RUN_HERE)),
            **{label: _pm(numeric, c, fmt) for c, label, fmt in HARNESS_COLUMNS[:4]},
            "Collapse ≥4 free": [_percent(v) for v in numeric["collapse_structure"]],
            "Collapse <80%": [_percent(v) for v in numeric["collapse_accuracy"]],
            "Same cell": [_percent(v) for v in numeric["cell_agreement"]],
            "Same op per edge": [_percent(v) for v in numeric["edge_agreement"]],
            **{label: _pm(numeric, c, fmt) for c, label, fmt in HARNESS_COLUMNS[4:]},
        }
    )
    notes = [
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
    ]
    return Table("harness", "What this harness measures", numeric, display, notes)


# --- pairwise tests ---------------------------------------------------------------------
PAIRWISE_METRICS = (("c10_test", "C10 test (%)"), ("gap_acc", "Gap acc (pt)"))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U and its p-value; NaN where a side is empty."""
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided exact p attainable with these seed counts (test power)."""
    if n_a == 0 or n_b == 0:
        return math.nan
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def _pair_row(metric: str, a: str, b: str, frame: pd.DataFrame) -> dict[str, Any]:
    finished = frame[frame["status"] == "finished"]
    values = {m: _col(finished[finished["method"] == m], metric).dropna().tolist() for m in (a, b)}
    u, p = mann_whitney(values[a], values[b])
    return {
        "metric": metric,
        "method_a": a,
        "method_b": b,
        "n_a": len(values[a]),
        "n_b": len(values[b]),
        "mean_a": metrics.mean_std(values[a])[0],
        "mean_b": metrics.mean_std(values[b])[0],
        "u": u,
        "p": p,
        "smallest_p": smallest_p(len(values[a]), len(values[b])),
    }


def pairwise_table(frame: pd.DataFrame) -> Table:
    names = sorted(frame["method"].unique())
    pairs = list(itertools.combinations(names, 2))
    rows = [_pair_row(m, a, b, frame) for m, _ in PAIRWISE_METRICS for a, b in pairs]
    columns = ["metric", "method_a", "method_b", "n_a", "n_b", "mean_a", "mean_b", "u", "p"]
    numeric = pd.DataFrame(rows, columns=[*columns, "smallest_p"])
    label = dict(PAIRWISE_METRICS)
    display = pd.DataFrame(
        {
            "Metric": [label[m] for m in numeric["metric"]],
            "A": numeric["method_a"],
            "B": numeric["method_b"],
            "Seeds A / B": [
                f"{a} / {b}" for a, b in zip(numeric["n_a"], numeric["n_b"], strict=True)
            ],
            "Mean A": [_number(v, _fixed(2)) for v in numeric["mean_a"]],
            "Mean B": [_number(v, _fixed(2)) for v in numeric["mean_b"]],
            "U": [_number(v, _fixed(1)) for v in numeric["u"]],
            "p (two-sided)": [_number(v, _fixed(3)) for v in numeric["p"]],
            "Smallest possible p": [_number(v, _fixed(3)) for v in numeric["smallest_p"]],
        }
    )
    notes = [
        "Mann-Whitney U (scipy.stats.mannwhitneyu, two-sided) on finished runs, one value "
        "per seed. With few seeds no difference can be significant: compare p with the "
        "smallest p the seed counts allow.",
    ]
    groups = [len(pairs)] if pairs else []
    return Table("pairwise", "Pairwise comparison of methods", numeric, display, notes, groups)


# --- formatting -----------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fixed(decimals: int) -> Format:
    return lambda v: f"{v:.{decimals}f}"


def _number(value: Any, fmt: Format) -> str:
    return "–" if _missing(value) else fmt(float(value))


def _percent(value: Any) -> str:
    return "–" if _missing(value) else f"{100 * float(value):.0f}%"


def _pm(numeric: pd.DataFrame, column: str, fmt: Format) -> list[str]:
    """``mean ± std`` per row; the mean alone where no std is known."""
    means, stds = _col(numeric, f"{column}_mean"), _col(numeric, f"{column}_std")
    return [
        "–" if _missing(m) else fmt(m) if _missing(s) else f"{fmt(m)} ± {fmt(s)}"
        for m, s in zip(means, stds, strict=True)
    ]


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
    figure.suptitle("mean ± std over finished seeds (blue), single seeds (grey)", fontsize=9)
    return save_figure(figure, stem)


def mean_alpha(records_per_run: list[list[dict[str, Any]]]) -> np.ndarray:
    """[epochs, 6, 5] op probabilities averaged over runs (truncated to the shortest)."""
    arrays = [np.array([r["alpha"] for r in records], dtype=float) for records in records_per_run]
    arrays = [a for a in arrays if a.ndim == 3 and len(a)]
    if not arrays:
        return np.zeros((0, len(EDGES), len(OPS)))
    shortest = min(len(a) for a in arrays)
    return np.mean([a[:shortest] for a in arrays], axis=0)


def plot_alpha(method: str, alpha: np.ndarray, seeds: int, stem: Path) -> list[Path]:
    """Six panels, one per edge: each op's probability over epochs."""
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
    axes[0, 0].legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    figure.suptitle(f"{method}: α probabilities, mean over {seeds} seed(s)", fontsize=10)
    return save_figure(figure, stem)


def plot_ranking(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """One-shot score vs NB201 C10 valid of the sampled cells, lowest seed per method."""
    if "ranking_cells" not in frame:
        return []
    ranked = frame[(frame["status"] == "finished") & frame["ranking_cells"].notna()]
    if ranked.empty:
        return []
    methods = sorted(ranked["method"].unique())
    cols = min(len(methods), 4)
    rows = math.ceil(len(methods) / cols)
    figure = Figure(figsize=(3.2 * cols, 3.0 * rows))
    for position, method in enumerate(methods, start=1):
        run = ranked[ranked["method"] == method].sort_values("seed").iloc[0]
        cells = run["ranking_cells"]
        ax = figure.add_subplot(rows, cols, position)
        ax.scatter(cells["valid"], cells["scores"], s=8, alpha=0.7)
        ax.set_title(f"{method} seed {run['seed']}: τ = {run['rank_kendall_tau']:.2f}", fontsize=9)
        ax.set_xlabel("NB201 C10 valid (%)")
        ax.set_ylabel("one-shot accuracy (%)")
        ax.grid(alpha=0.3)
    return save_figure(figure, stem)


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every plot there is data for (none of the trajectories without a finished run)."""
    epochs = epoch_frame(frame)
    paths: list[Path] = []
    if len(epochs):
        c10 = "NB201 C10 test of the cell (%)"
        paths += plot_trajectory(epochs, "c10_test", c10, out / "c10_test", (0.0, 100.0))
        gap = "discretization gap, acc (pt)"
        paths += plot_trajectory(epochs, "gap_acc", gap, out / "gap_acc")
    finished = frame[frame["status"] == "finished"]
    for method, group in finished.groupby("method", sort=True):
        alpha = mean_alpha(list(group["epochs"]))
        if len(alpha):
            stem = out / f"alpha_{file_name(str(method))}"
            paths += plot_alpha(str(method), alpha, len(group), stem)
    paths += plot_ranking(frame, out / "ranking")
    return paths


def file_name(label: str) -> str:
    """A row label as part of a file name: ``darts [epochs=1]`` → ``darts_epochs=1``."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_")


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
) -> Path:
    lines = ["# Report", "", *_provenance_lines(frame, built_from), ""]
    if warnings_:
        lines += ["**Warnings**", "", *(f"- {line}" for line in warnings_), ""]
    skipped = _not_counted(frame)
    if skipped:
        lines += ["Runs not in the statistics:", "", *skipped, ""]
    for table in tables:
        lines += [to_markdown(table), ""]
    lines += ["### Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
