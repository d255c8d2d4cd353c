"""The report's inputs beside the runs (the NB201 table, the published rows) and each
run's own statistics: trajectory, collapse, the one-shot τ's interval, the
discretization judged by the table.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import discretization, inference, metrics
from harness.benchmark import Benchmark, seed_spread
from harness.errors import UsageError
from harness.report.table import column_of, is_missing
from harness.runs import ACCURACY_KEYS
from harness.space import Cell


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
    archs = zip(column_of(frame, "arch"), finished, strict=True)
    cells = [Cell.from_arch_str(a) if ok else None for a, ok in archs]
    frame["cell"] = cells
    frame["collapse_structure"] = [c is not None and metrics.structural_collapse(c) for c in cells]
    frame["collapse_accuracy"] = finished & (
        column_of(frame, "c10_test") < metrics.COLLAPSE_ACCURACY
    )
    low_high = [
        _rank_interval(c) if ok else (math.nan, math.nan)
        for c, ok in zip(column_of(frame, "ranking_cells"), finished, strict=True)
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
    spreads = [_seed_spread_of(index, truth) for index in column_of(frame, "nb201_index")]
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
    if spread is None or is_missing(index) or int(index) not in spread.index:
        return math.nan, math.nan
    return float(spread.loc[int(index), "n"]), float(spread.loc[int(index), "std"])
