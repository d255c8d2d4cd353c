"""Exact two-sided tests between rows (:mod:`harness.inference`), Holm-adjusted per table:
against the reference row on the main page, every pair in ``pairwise``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness import inference, metrics
from harness.report.grouping import supernet_twins
from harness.report.table import Table, column_of, fixed, number_text
from harness.report.tables import integer_counts

# --- comparisons -----------------------------------------------------------------------
COMPARED = (
    ("c10_test", "C10 test (%)", True),
    ("gap_acc", "Gap acc (pt)", False),
    ("alpha_tau", "α-τ", False),
)
"""(column, label, of the cell): statistics of the supernet (not of the cell) are not
compared between rows that read the same supernets; their differences are all zero."""
ALPHA = 0.05


def _values(frame: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """A row's finished values of ``metric``, indexed by run path."""
    rows = frame[(frame["method"] == method) & (frame["status"] == "finished")]
    return column_of(rows, metric).set_axis(rows["path"]).dropna().astype(float)


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
    numeric = integer_counts(pd.DataFrame(rows, columns=COMPARISON_COLUMNS))
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
            "Mean A": [number_text(v, fixed(2)) for v in numeric["mean_a"]],
            "Mean B": [number_text(v, fixed(2)) for v in numeric["mean_b"]],
            "Shift A − B (HL)": [number_text(v, fixed(2)) for v in numeric["shift"]],
            "Cliff's δ": [number_text(v, fixed(2)) for v in numeric["delta"]],
            "p": [number_text(v, fixed(3)) for v in numeric["p"]],
            "Smallest possible p": [number_text(v, fixed(3)) for v in numeric["smallest_p"]],
            "p (Holm)": [number_text(v, fixed(3)) for v in numeric["p_holm"]],
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
