"""Uncertainty and tests for a handful of seeds: pure functions on arrays, no I/O.

A report compares methods on 1–10 seeds each, so every test here is exact where it
can be (the whole permutation distribution is enumerated, ties included), and each
p-value comes with the smallest p that the same values could have given: a p is
never below its own floor. Intervals are t-intervals over seeds (n stated beside
them); the one-shot τ's interval is a bootstrap over the scored cells, with a fixed
seed, so a regenerated report gives the same bytes. ``docs/reports.md`` defines
each statistic and says when it is not meaningful.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
EXACT_LIMIT = 200_000
"""Most permutations enumerated for an exact test; above it, the normal approximation."""


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# --- intervals -------------------------------------------------------------------
def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-interval of the mean over ``values`` (seeds); NaNs with fewer than two
    values, where a spread cannot be estimated (never a zero-width interval)."""
    array = _array(values)
    if array.size < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, array.size - 1) * array.std(ddof=1)
    half /= math.sqrt(array.size)
    mean = float(array.mean())
    return mean - float(half), mean + float(half)


def _signs(values: np.ndarray) -> np.ndarray:
    """[n, n] matrix of sign(v_i − v_j), as integers (sums stay exact)."""
    return np.sign(values[:, None] - values[None, :]).astype(np.int64)


def bootstrap_kendall(
    scores: Sequence[float],
    truth: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of Kendall τ-b over cells (resampled with
    replacement, fixed seed). With w the times each cell is drawn and s, t the signs of
    score and truth differences, a resample's τ-b is wᵀ(s∘t)w / √(wᵀ(s∘s)w · wᵀ(t∘t)w):
    integer sums, so the interval does not depend on the order of float additions.
    NaNs with fewer than 3 cells or a constant side."""
    s, t = _array(scores), _array(truth)
    if s.size < 3 or np.ptp(s) == 0 or np.ptp(t) == 0:
        return math.nan, math.nan
    sign_s, sign_t = _signs(s), _signs(t)
    picks = np.random.default_rng(seed).integers(0, s.size, (resamples, s.size))
    weights = np.stack([np.bincount(row, minlength=s.size) for row in picks])

    def quadratic(matrix: np.ndarray) -> np.ndarray:
        return ((weights @ matrix) * weights).sum(axis=1)

    numerator = quadratic(sign_s * sign_t)
    ties = quadratic(sign_s * sign_s).astype(np.float64) * quadratic(sign_t * sign_t)
    denominator = np.sqrt(ties)
    taus = numerator[denominator > 0] / denominator[denominator > 0]
    if not taus.size:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(taus, [tail, 100 - tail])
    return float(low), float(high)


# --- tests --------------------------------------------------------------------------
@dataclass(frozen=True)
class TestResult:
    """A two-sided test: statistic, p, the smallest p these values allow, how p was
    computed (``exact`` or ``normal approximation``) and a note (ties, zeros)."""

    statistic: float
    p: float
    floor: float
    method: str
    note: str = ""


NOT_TESTED = TestResult(math.nan, math.nan, math.nan, "not tested", "a side has no value")


def _two_sided(null: np.ndarray, observed: float, centre: float) -> tuple[float, float]:
    """p = share of the null at least as far from ``centre`` as ``observed``; the floor
    is that share for the farthest value the null holds."""
    distance = np.abs(null - centre)
    far = abs(observed - centre)
    tolerance = 1e-9 * max(1.0, float(distance.max()))
    p = float(np.mean(distance >= far - tolerance))
    floor = float(np.mean(distance >= distance.max() - tolerance))
    return p, floor


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U (A's wins over B, ties half), exact: every split of
    the pooled midranks into groups of |A| and |B| is enumerated, so ties are handled
    exactly and p never falls below the floor. Above :data:`EXACT_LIMIT` splits,
    scipy's normal approximation (said in ``method``)."""
    x, y = _array(a), _array(b)
    if x.size == 0 or y.size == 0:
        return NOT_TESTED
    pooled = np.concatenate([x, y])
    ranks = stats.rankdata(pooled)
    observed = float(ranks[: x.size].sum() - x.size * (x.size + 1) / 2)
    centre = x.size * y.size / 2
    note = "ties in the pooled values" if np.unique(pooled).size < pooled.size else ""
    if math.comb(pooled.size, x.size) > EXACT_LIMIT:
        result = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
        floor = min(1.0, 2.0 / math.comb(pooled.size, x.size))
        return TestResult(observed, float(result.pvalue), floor, "normal approximation", note)
    groups = itertools.combinations(range(pooled.size), x.size)
    null = np.array([ranks[list(g)].sum() for g in groups]) - x.size * (x.size + 1) / 2
    p, floor = _two_sided(null, observed, centre)
    return TestResult(observed, p, floor, "exact", note)


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Wilcoxon signed-rank test of paired values (a_i with b_i): zero
    differences are dropped (said in the note), the others ranked by |d| (midranks
    for ties), and W+ compared with all 2^m sign patterns, exactly. Above
    :data:`EXACT_LIMIT` patterns, the normal approximation."""
    x, y = _array(a), _array(b)
    if x.size != y.size:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        return NOT_TESTED
    differences = x - y
    nonzero = differences[differences != 0]
    zeros = differences.size - nonzero.size
    notes = [f"{zeros} zero difference(s) dropped"] if zeros else []
    if nonzero.size == 0:
        return TestResult(0.0, 1.0, 1.0, "exact", "every pair is equal")
    ranks = stats.rankdata(np.abs(nonzero))
    if np.unique(np.abs(nonzero)).size < nonzero.size:
        notes.append("tied |differences|")
    observed = float(ranks[nonzero > 0].sum())
    centre = float(ranks.sum()) / 2
    note = "; ".join(notes)
    if 2**nonzero.size > EXACT_LIMIT:
        result = stats.wilcoxon(nonzero, method="approx")
        return TestResult(
            observed, float(result.pvalue), 2.0 / 2**nonzero.size, "normal approximation", note
        )
    patterns = np.array(list(itertools.product((0, 1), repeat=nonzero.size)), dtype=np.float64)
    p, floor = _two_sided(patterns @ ranks, observed, centre)
    return TestResult(observed, p, floor, "exact", note)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment over one family of tests (NaNs are not tests and
    stay NaN): the i-th smallest p times (m − i), made monotone, capped at 1."""
    p = _array(p_values)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.size, math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (order.size - position) * float(p[index])))
        adjusted[index] = running
    return adjusted.tolist()


# --- effect sizes ---------------------------------------------------------------------
def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(A > B) − P(A < B) over all pairs of one A and one B value (−1 to 1)."""
    x, y = _array(a), _array(b)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(np.sign(x[:, None] - y[None, :]).mean())


def paired_dominance(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's δ of paired values: share of pairs with a > b minus share with a < b."""
    x, y = _array(a), _array(b)
    return math.nan if x.size == 0 else float(np.sign(x - y).mean())


def hodges_lehmann(a: Sequence[float], b: Sequence[float]) -> float:
    """The Hodges-Lehmann shift A − B: the median of all differences a_i − b_j."""
    x, y = _array(a), _array(b)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(np.median(x[:, None] - y[None, :]))


def paired_hodges_lehmann(a: Sequence[float], b: Sequence[float]) -> float:
    """The paired Hodges-Lehmann shift: the median of the Walsh averages (d_i + d_j) / 2,
    i ≤ j, of the differences d = a − b."""
    d = _array(a) - _array(b)
    if d.size == 0:
        return math.nan
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))
