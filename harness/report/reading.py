"""What the numbers can mean: the preset's resolution (images, cells, the τ of unrelated
rankings) and a few sentences of plain reading computed from the tables.
"""

from __future__ import annotations

import itertools
import json
import math

import pandas as pd

from harness import metrics, rundir
from harness.report.comparisons import ALPHA
from harness.report.grouping import supernet_twins
from harness.report.table import Table, column_of, is_missing

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
    if is_missing(std) or std > TAU_RESOLUTION:
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
        images = int(column_of(finished, "rank_eval_size").dropna().max() or gap_images)
        top = metrics.top_count(cells, 0.2)
        lines.append(
            f"- the one-shot ranking: {cells} cells on {images} images each; {_size_note(cells)}"
        )
        lines.append(f"- τ top-20%: a τ over {top} cells; {_size_note(top)}")
        reasons = sorted(set(column_of(finished, "rank_split_half_reason").dropna()))
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
    spread = column_of(finished, "bench_seed_std").dropna()
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
    tau = (
        rows.assign(tau=column_of(rows, "rank_kendall_tau"))
        .groupby("method")["tau"]
        .mean()
        .dropna()
    )
    if len(tau):
        intervals = rows[column_of(rows, "rank_tau_low").notna()]
        above = int((intervals["rank_tau_low"] > 0).sum())
        meaningful = above > len(intervals) / 2
        verdict = "are" if meaningful else "are not"
        lines.append(
            f"- at this preset the one-shot τ is {tau.min():.2f} to {tau.max():.2f} (mean over "
            f"seeds per method), and its bootstrap interval lies above 0 in {above} of "
            f"{len(intervals)} runs: one-shot ranking statistics {verdict} meaningful here."
        )
    return lines
