"""The statistics a report adds (issue 29), each on a constructed case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness import discretization, inference
from harness.benchmark import seed_spread
from harness.space import NUM_CELLS, NUM_EDGES, NUM_OPS, Cell

# --- intervals --------------------------------------------------------------------------


def test_t_interval_matches_a_hand_computation_and_is_absent_for_one_value() -> None:
    low, high = inference.t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.3027
    assert (low, high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)))
    assert all(math.isnan(v) for v in inference.t_interval([89.61]))


def test_bootstrap_kendall_is_one_for_the_same_order_and_fixed_by_its_seed() -> None:
    truth = np.linspace(80, 94, 30)
    assert inference.bootstrap_kendall(truth * 2, truth) == (1.0, 1.0)
    assert inference.bootstrap_kendall(-truth, truth) == (-1.0, -1.0)
    noisy = truth + np.random.default_rng(3).normal(0, 3, truth.size)
    low, high = inference.bootstrap_kendall(noisy, truth)
    tau = stats.kendalltau(noisy, truth).statistic
    assert low < tau < high and high - low > 0.05  # a real interval around the estimate
    assert inference.bootstrap_kendall(noisy, truth) == (low, high)


def test_bootstrap_kendall_equals_tau_b_of_a_resample_with_ties() -> None:
    """The weighted sign-matrix form is τ-b of the resampled points (duplicates are ties)."""
    rng = np.random.default_rng(0)
    scores, truth = rng.integers(0, 5, 12).astype(float), rng.normal(size=12)
    low, high = inference.bootstrap_kendall(scores, truth, resamples=1, seed=7)
    pick = np.random.default_rng(7).integers(0, 12, (1, 12))[0]
    expected = stats.kendalltau(scores[pick], truth[pick], variant="b").statistic
    assert low == pytest.approx(expected) and high == pytest.approx(expected)


# --- tests and their floors ---------------------------------------------------------------


def test_mann_whitney_is_exact_with_ties_and_never_below_its_floor() -> None:
    """da2s's all-zero gaps against five larger values: scipy's normal approximation (the
    fallback with ties) gives p = 0.007 below the exact floor 2 / C(10, 5) = 0.0079."""
    zeros, others = [0.0] * 5, [3.0, 5.0, 8.0, 9.0, 12.0]
    result = inference.mann_whitney(zeros, others)
    assert result.method == "exact"
    assert result.p == pytest.approx(2 / 252) and result.floor == pytest.approx(2 / 252)
    assert stats.mannwhitneyu(zeros, others).pvalue < 2 / 252  # the bug this replaces
    tied = inference.mann_whitney([1.0, 1.0, 2.0], [1.0, 2.0, 2.0])
    assert tied.p >= tied.floor and "ties" in tied.note


def test_paired_test_finds_what_an_independent_test_misses() -> None:
    """The same six supernets read two ways: every pair moves up by about one point, while
    the supernets themselves spread over 50 points. Paired: p = 2 / 2⁶; independent: no."""
    before = np.array([40.0, 50.0, 60.0, 70.0, 80.0, 90.0])
    after = before + np.array([1.0, 1.1, 0.9, 1.2, 0.8, 1.3])
    paired = inference.wilcoxon_signed_rank(after.tolist(), before.tolist())
    independent = inference.mann_whitney(after.tolist(), before.tolist())
    assert paired.p == pytest.approx(2 / 64) and paired.floor == pytest.approx(2 / 64)
    assert independent.p > 0.5
    assert inference.paired_hodges_lehmann(after, before) == pytest.approx(1.05)
    assert inference.paired_dominance(after, before) == 1.0


def test_wilcoxon_drops_zero_differences_and_says_so() -> None:
    assert inference.wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0]).p == 1.0
    result = inference.wilcoxon_signed_rank([1.0, 2.0, 5.0, 7.0], [1.0, 1.0, 1.0, 1.0])
    assert result.p == pytest.approx(2 / 8) and "1 zero difference" in result.note


def test_holm_against_a_hand_computation() -> None:
    """Sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06."""
    adjusted = inference.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert inference.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_effect_sizes() -> None:
    assert inference.cliffs_delta([5, 6, 7], [1, 2, 3]) == 1.0
    assert inference.cliffs_delta([1, 2], [1, 2]) == 0.0
    assert inference.hodges_lehmann([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]) == 2.0


# --- the discretization judged against the table ------------------------------------------
SCALE = 1e-3


def code_table() -> np.ndarray:
    """A table whose accuracy is the cell's code: best op (avg_pool, index 4) everywhere."""
    return np.arange(NUM_CELLS, dtype=np.float64)


def matching_alpha() -> np.ndarray:
    """Probabilities whose log is SCALE · code − const: the α order is the table's."""
    logits = np.array(
        [
            [SCALE * op * NUM_OPS ** (NUM_EDGES - 1 - e) for op in range(NUM_OPS)]
            for e in range(NUM_EDGES)
        ]
    )
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def test_alpha_ordered_like_the_table_has_alpha_tau_one() -> None:
    ranking = discretization.alpha_ranking(matching_alpha(), code_table())
    assert ranking == {"alpha_tau": pytest.approx(1.0), "alpha_tau_top5": pytest.approx(1.0)}
    reversed_ = discretization.alpha_ranking(matching_alpha(), -code_table())
    assert reversed_["alpha_tau"] == pytest.approx(-1.0)
    uniform = discretization.alpha_ranking(np.full((6, 5), 0.2), code_table())
    assert math.isnan(uniform["alpha_tau"])


def test_alpha_scores_follow_the_code_order_of_edges() -> None:
    p = np.full((NUM_EDGES, NUM_OPS), 0.1)
    p[0, 3], p[5, 1] = 0.6, 0.6  # edge 0 → nor_conv_3x3, edge 5 → skip_connect
    best = int(np.argmax(discretization.alpha_scores(p)))
    assert (
        Cell.from_code(best).ops[0] == "nor_conv_3x3"
        and Cell.from_code(best).ops[5] == "skip_connect"
    )


def test_a_cell_best_at_every_edge_has_no_regret() -> None:
    best = Cell.from_code(NUM_CELLS - 1)
    found = discretization.edge_decisions(best, code_table())
    assert found["edge_regret"] == 0.0 and found["edges_right"] == 1.0 and found["local_optimum"]
    worse = Cell(best.ops[:5] + ("none",))  # last edge: op 0 instead of 4, 4 codes lower
    found = discretization.edge_decisions(worse, code_table())
    assert found["edge_regrets"] == [0.0] * 5 + [4.0]
    assert found["edges_right"] == pytest.approx(5 / 6) and not found["local_optimum"]


def test_top_k_gain_is_what_the_alpha_distribution_held_beyond_the_cell() -> None:
    best, worse = Cell.from_code(NUM_CELLS - 1), Cell.from_code(NUM_CELLS - 5)
    assert discretization.top_k_gain(matching_alpha(), best, code_table())["top1_gain"] == 0.0
    gains = discretization.top_k_gain(matching_alpha(), worse, code_table())
    assert gains == {"top1_gain": 4.0, "top10_gain": 4.0, "top100_gain": 4.0}


def test_seed_spread_is_the_std_over_the_benchmarks_seeds(data_dir) -> None:
    spread = seed_spread(data_dir)
    rows = pd.read_csv(data_dir / "nb201" / "nb201_perseed_200ep.csv", nrows=40)
    first = rows[rows["index"] == 0]["cifar10_valid_acc"]
    assert spread.loc[0, "n"] == len(first) and spread.loc[0, "std"] == pytest.approx(first.std())
