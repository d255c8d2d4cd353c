"""The report's plots (PNG and PDF, no creation date, so they regenerate byte for byte)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness import inference
from harness.report.grouping import supernet_twins
from harness.report.runstats import load_published
from harness.report.table import is_missing
from harness.report.tables import PERCENT
from harness.space import EDGES, OPS


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
        if not is_missing(low):
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
