"""Statistics of a search: pure functions on arrays, no I/O.

* Discretization gap (methods-spec §10.1): the supernet's accuracy and loss with
  continuous edge weights versus with the one-hot derived cell, on the same
  weights and images; plus α-space distances to one-hot.
* Stability over seeds and along a run (§10.2): mean ± std, collapse rates,
  cross-seed agreement, final-minus-best, late cell changes.
* Ranking correlation of one-shot scores with NB201 truth (§10.3): Kendall τ-b,
  Spearman ρ, sparse τ, precision@K, τ among the true top 20 %.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from harness.space import NUM_EDGES, Cell


def _probs(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected per-edge probabilities [edges, ops], got shape {p.shape}")
    return p


def distance_to_onehot(probabilities: np.ndarray) -> float:
    """Δ(α) = mean over edges of ‖p_e − onehot(argmax p_e)‖²."""
    p = _probs(probabilities)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), p.argmax(1)] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())


def mean_entropy(probabilities: np.ndarray) -> float:
    """Mean per-edge entropy H(p_e) in nats (log 5 ≈ 1.609 for uniform)."""
    p = np.clip(_probs(probabilities), 1e-12, 1.0)
    p = p / p.sum(1, keepdims=True)
    return float(-(p * np.log(p)).sum(1).mean())


def mean_max_probability(probabilities: np.ndarray) -> float:
    """Mean over edges of max_k p_{e,k} (0.2 for uniform over 5 ops)."""
    return float(_probs(probabilities).max(1).mean())


def discretization_gap(
    cont_acc: float, cont_loss: float, disc_acc: float, disc_loss: float
) -> dict[str, float]:
    """Gap_acc = Acc_cont − Acc_disc and Gap_loss = L_disc − L_cont (positive = worse discrete)."""
    return {"gap_acc": cont_acc - disc_acc, "gap_loss": disc_loss - cont_loss}


# --- stability over seeds (methods-spec §10.2) ----------------------------------
COLLAPSE_FREE_EDGES = 4
"""A cell with at least this many parameter-free edges (of 6) counts as collapsed."""
COLLAPSE_ACCURACY = 80.0
"""A cell below this CIFAR-10 test accuracy (%) counts as collapsed."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value, NaN for none).

    The sample std is what "mean ± std over S seeds" estimates; a single run
    has no spread to report, which reads better as 0 than as NaN in a table.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std


def seed_stability(
    lookups: Sequence[Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, float]]:
    """``{"cifar10_test": {"mean", "std", "n"}, ...}`` over per-seed NB201 lookups."""
    keys = sorted({(d, s) for lookup in lookups for d in lookup for s in lookup[d]})
    result = {}
    for dataset, split in keys:
        values = [lookup[dataset][split] for lookup in lookups]
        mean, std = mean_std(values)
        result[f"{dataset}_{split}"] = {"mean": mean, "std": std, "n": len(values)}
    return result


def structural_collapse(cell: Cell, min_free: int = COLLAPSE_FREE_EDGES) -> bool:
    """True when ``min_free`` or more edges are skip, pool or none (R-DARTS, DARTS-)."""
    return cell.parameter_free_edges() >= min_free


def collapse_rates(
    cells: Sequence[Cell],
    c10_test: Sequence[float],
    min_free: int = COLLAPSE_FREE_EDGES,
    threshold: float = COLLAPSE_ACCURACY,
) -> dict[str, float]:
    """Fraction of runs collapsed by structure and by accuracy, reported separately."""
    if len(cells) != len(c10_test):
        raise ValueError(f"{len(cells)} cells but {len(c10_test)} accuracies")
    if not cells:
        return {"structure": math.nan, "accuracy": math.nan, "n": 0}
    structure = np.mean([structural_collapse(cell, min_free) for cell in cells])
    accuracy = np.mean(np.asarray(c10_test, dtype=np.float64) < threshold)
    return {"structure": float(structure), "accuracy": float(accuracy), "n": len(cells)}


def cell_agreement(cells: Sequence[Cell]) -> dict[str, Any]:
    """How often two seeds agree: whole cells (up to isomorphism) and edge by edge.

    ``identical`` is the fraction of seed pairs whose canonical forms are equal;
    ``per_edge`` the fraction of pairs choosing the same op on each raw edge.
    """
    pairs = list(itertools.combinations(cells, 2))
    if not pairs:
        return {"identical": math.nan, "per_edge": [math.nan] * NUM_EDGES, "pairs": 0}
    identical = np.mean([a.canonical() == b.canonical() for a, b in pairs])
    per_edge = np.mean([[x == y for x, y in zip(a.ops, b.ops, strict=True)] for a, b in pairs], 0)
    return {"identical": float(identical), "per_edge": per_edge.tolist(), "pairs": len(pairs)}


def final_minus_best(accuracies: Sequence[float]) -> float:
    """Last epoch's accuracy minus the best so far (≤ 0; negative = the run fell back)."""
    array = np.asarray(accuracies, dtype=np.float64)
    if array.size == 0:
        return math.nan
    return float(array[-1] - array.max())


def late_window(epochs: int, fraction: float = 0.1) -> int:
    """How many final epochs make up the last ``fraction`` of a run (at least one)."""
    return max(1, math.ceil(fraction * epochs - 1e-9))


def late_changes(archs: Sequence[str], fraction: float = 0.1) -> int:
    """Changes of the derived cell entering each of the last ``fraction`` of epochs.

    The cell of every late epoch is compared with the epoch before it, so with
    50 epochs the last 5 transitions count; a one-epoch run has none.
    """
    window = late_window(len(archs), fraction)
    start = max(1, len(archs) - window)
    return sum(archs[i] != archs[i - 1] for i in range(start, len(archs)))


# --- ranking correlation (methods-spec §10.3) -----------------------------------
PRECISION_FRACTIONS = (0.01, 0.05, 0.10)


def _pair(scores: Sequence[float], truth: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and truth {t.shape} must be equal-length vectors")
    return s, t


def _degenerate(s: np.ndarray, t: np.ndarray) -> bool:
    """Fewer than two points or a constant side: no correlation is defined."""
    return s.size < 2 or np.ptp(s) == 0 or np.ptp(t) == 0


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall τ-b, which corrects for ties (many cells share a one-shot accuracy)."""
    s, t = _pair(scores, truth)
    if _degenerate(s, t):
        return math.nan
    return float(stats.kendalltau(s, t, variant="b").statistic)


def spearman_rho(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Spearman ρ: Pearson correlation of the (average-tied) ranks."""
    s, t = _pair(scores, truth)
    if _degenerate(s, t):
        return math.nan
    return float(stats.spearmanr(s, t).statistic)


def sparse_kendall_tau(scores: Sequence[float], truth: Sequence[float], decimals: int = 1) -> float:
    """τ-b with the truth rounded to 0.1 %, so near-equal cells count as ties (Yu et al.)."""
    s, t = _pair(scores, truth)
    return kendall_tau(s, np.round(t, decimals))


def top_count(n: int, fraction: float) -> int:
    """How many cells the top ``fraction`` of ``n`` holds (at least one)."""
    return max(1, int(math.floor(fraction * n + 1e-9)))


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values; ties broken by position (stable)."""
    return np.argsort(-values, kind="stable")[:k]


def precision_at(scores: Sequence[float], truth: Sequence[float], fraction: float) -> float:
    """Fraction of the top-K% by score that are in the true top-K% (Ning et al.)."""
    s, t = _pair(scores, truth)
    if s.size == 0:
        return math.nan
    k = top_count(s.size, fraction)
    return len(set(_top(s, k).tolist()) & set(_top(t, k).tolist())) / k


def top_kendall_tau(
    scores: Sequence[float], truth: Sequence[float], fraction: float = 0.2
) -> float:
    """τ-b among the true top ``fraction``: does the supernet order the good cells?"""
    s, t = _pair(scores, truth)
    keep = _top(t, top_count(s.size, fraction)) if s.size else np.array([], dtype=int)
    return kendall_tau(s[keep], t[keep])


def ranking_metrics(scores: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """Every ranking statistic of the report, keyed as in ``final.json``."""
    s, t = _pair(scores, truth)
    result = {
        "kendall_tau": kendall_tau(s, t),
        "spearman_rho": spearman_rho(s, t),
        "sparse_kendall_tau": sparse_kendall_tau(s, t),
        "top20_kendall_tau": top_kendall_tau(s, t, 0.2),
    }
    for fraction in PRECISION_FRACTIONS:
        result[f"p_at_{round(fraction * 100)}"] = precision_at(s, t, fraction)
    return result
