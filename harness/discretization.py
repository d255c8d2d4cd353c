"""The discretization judged against the NAS-Bench-201 table: pure functions, no I/O.

The gap and the one-shot τ judge a search with its own supernet; here the table
judges it, from what a run records (its last α and its derived cell), with no
forward pass:

* α ranking: every cell of the space scored by the architecture distribution,
  Σ over edges of log p(op), and Kendall τ of that score against the table, over
  all cells and among the true top 5 %;
* edge decisions: at each edge of the derived cell, the five cells that differ
  from it only there; was the chosen op the best of the five, and by how much not;
* top-k: the best cell among the α distribution's k most likely cells, against
  the derived one (what a better selector could have had from the same α).

``truth`` is always an array of table accuracies indexed by :attr:`Cell.code`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness import metrics
from harness.space import NUM_CELLS, NUM_EDGES, NUM_OPS, Cell

PROBABILITY_FLOOR = 5e-7
"""Epoch records round probabilities to 6 decimals: a recorded 0 was below 5·10⁻⁷."""
SCORE_DECIMALS = 9
"""Scores are rounded so cells with mathematically equal scores tie exactly."""
TOP_FRACTION = 0.05
TOP_K = (1, 10, 100)


def alpha_scores(probabilities: Any) -> np.ndarray:
    """log P(cell) under independent per-edge op distributions, for every code.

    Weights that are not normalised per edge (sigmoids) rank cells the same as their
    normalisation would: each cell takes one op per edge, so a per-edge constant
    shifts every score equally."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (NUM_EDGES, NUM_OPS):
        raise ValueError(f"expected probabilities of shape (6, 5), got {p.shape}")
    logs = np.log(np.clip(p, PROBABILITY_FLOOR, None))
    scores = logs[0]
    for edge in range(1, NUM_EDGES):  # edge 0 is the most significant base-5 digit of a code
        scores = (scores[:, None] + logs[edge][None, :]).ravel()
    return np.round(scores, SCORE_DECIMALS)


def _truth(truth: Any) -> np.ndarray:
    t = np.asarray(truth, dtype=np.float64)
    if t.shape != (NUM_CELLS,):
        raise ValueError(f"expected one accuracy per cell ({NUM_CELLS}), got shape {t.shape}")
    return t


def alpha_ranking(probabilities: Any, truth: Any) -> dict[str, float]:
    """Kendall τ-b of the α score against the table, over all cells and among the true
    top 5 % (NaN for a uniform α: every cell ties)."""
    scores, t = alpha_scores(probabilities), _truth(truth)
    return {
        "alpha_tau": metrics.kendall_tau(scores, t),
        "alpha_tau_top5": metrics.top_kendall_tau(scores, t, TOP_FRACTION),
    }


def neighbours(cell: Cell, edge: int) -> list[Cell]:
    """The five cells equal to ``cell`` except at ``edge`` (``cell`` among them), in op order."""
    indices = list(cell.op_indices)
    return [Cell.from_indices(indices[:edge] + [op] + indices[edge + 1 :]) for op in range(NUM_OPS)]


def edge_decisions(cell: Cell, truth: Any) -> dict[str, Any]:
    """Per edge: the regret (best of the five one-edge variants minus the chosen cell,
    in points; 0 = the chosen op is the best, ties count as best); the share of edges
    chosen right, the mean regret, and whether the cell is a local optimum (right at
    every edge)."""
    t = _truth(truth)
    chosen = t[cell.code]
    regrets = [
        float(max(t[c.code] for c in neighbours(cell, edge)) - chosen) for edge in range(NUM_EDGES)
    ]
    right = [r <= 0 for r in regrets]
    return {
        "edge_regrets": regrets,
        "edges_right": float(np.mean(right)),
        "edge_regret": float(np.mean(regrets)),
        "local_optimum": all(right),
    }


def top_k_gain(
    probabilities: Any, cell: Cell, truth: Any, ks: Sequence[int] = TOP_K
) -> dict[str, float]:
    """Best table accuracy among the α distribution's ``k`` most likely cells minus the
    derived cell's, for each k (ties in score broken by code, as :func:`numpy.argsort`
    with a stable sort does). Negative where the derived cell beats all of them."""
    scores, t = alpha_scores(probabilities), _truth(truth)
    order = np.argsort(-scores, kind="stable")
    return {f"top{k}_gain": float(t[order[:k]].max() - t[cell.code]) for k in ks}


def judge(probabilities: Any, cell: Cell | None, truth: Any) -> dict[str, Any]:
    """Every statistic of this module for one run (NaNs without α or cell)."""
    empty: dict[str, Any] = {"alpha_tau": math.nan, "alpha_tau_top5": math.nan}
    empty.update({"edges_right": math.nan, "edge_regret": math.nan, "local_optimum": None})
    empty.update({f"top{k}_gain": math.nan for k in TOP_K})
    if probabilities is None or cell is None:
        return empty
    row = {**empty, **alpha_ranking(probabilities, truth)}
    decisions = edge_decisions(cell, truth)
    row.update({k: decisions[k] for k in ("edges_right", "edge_regret", "local_optimum")})
    row.update(top_k_gain(probabilities, cell, truth))
    return row
