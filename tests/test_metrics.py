"""Metrics on hand-made inputs whose values can be checked with pencil and paper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import metrics
from harness.space import Cell

CONV = Cell(("nor_conv_3x3",) * 6)
SKIP = Cell(("skip_connect",) * 6)


def cell(*ops: str) -> Cell:
    return Cell(tuple(ops))


# --- the existing gap helpers ---------------------------------------------------
def test_alpha_distances_uniform_and_onehot() -> None:
    uniform = np.full((6, 5), 0.2)
    onehot = np.eye(5)[[0, 1, 2, 3, 4, 0]]
    assert metrics.distance_to_onehot(onehot) == 0.0
    assert metrics.distance_to_onehot(uniform) == pytest.approx(0.8**2 + 4 * 0.2**2)
    assert metrics.mean_entropy(uniform) == pytest.approx(math.log(5))
    assert metrics.mean_max_probability(uniform) == pytest.approx(0.2)
    gap = metrics.discretization_gap(60.0, 1.0, 50.0, 1.5)
    assert gap == {"gap_acc": 10.0, "gap_loss": 0.5}


# --- stability -------------------------------------------------------------------
def test_mean_std_uses_sample_std() -> None:
    assert metrics.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert metrics.mean_std([5.0]) == (5.0, 0.0)
    mean, std = metrics.mean_std([])
    assert math.isnan(mean) and math.isnan(std)


def test_seed_stability_per_dataset_and_split() -> None:
    lookups = [
        {"cifar10": {"valid": 80.0, "test": 90.0}},
        {"cifar10": {"valid": 82.0, "test": 94.0}},
    ]
    result = metrics.seed_stability(lookups)
    assert result["cifar10_valid"]["mean"] == 81.0
    assert result["cifar10_test"]["mean"] == 92.0
    assert result["cifar10_test"]["std"] == pytest.approx(math.sqrt(8))
    assert result["cifar10_test"]["n"] == 2


def test_collapse_counts_structure_and_accuracy_separately() -> None:
    four_free = cell("skip_connect", "none", "avg_pool_3x3", "skip_connect", *("nor_conv_1x1",) * 2)
    three_free = cell("skip_connect", "none", "avg_pool_3x3", *("nor_conv_1x1",) * 3)
    assert metrics.structural_collapse(four_free)
    assert not metrics.structural_collapse(three_free)
    rates = metrics.collapse_rates([four_free, three_free, SKIP, CONV], [85.0, 79.9, 54.3, 94.0])
    assert rates == {"structure": 0.5, "accuracy": 0.5, "n": 4}
    assert metrics.collapse_rates([SKIP], [80.0])["accuracy"] == 0.0  # 80 is not below 80
    assert math.isnan(metrics.collapse_rates([], [])["structure"])
    with pytest.raises(ValueError):
        metrics.collapse_rates([SKIP], [])


def test_cell_agreement_uses_canonical_forms() -> None:
    # Nodes 1 and 2 swap when edge 1→2 is none: these two cells are one network.
    a = cell("nor_conv_3x3", "skip_connect", "none", "none", "nor_conv_1x1", "avg_pool_3x3")
    b = cell("skip_connect", "nor_conv_3x3", "none", "none", "avg_pool_3x3", "nor_conv_1x1")
    result = metrics.cell_agreement([a, b, CONV])
    assert result["pairs"] == 3
    assert result["identical"] == pytest.approx(1 / 3)  # only (a, b)
    # Per raw edge: edges 2 and 3 agree for (a, b) only; others never agree, except
    # edge 0 of (a, CONV) and edge 1 of (b, CONV).
    assert result["per_edge"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1 / 3, 0.0, 0.0])
    assert metrics.cell_agreement([CONV, CONV])["identical"] == 1.0
    assert math.isnan(metrics.cell_agreement([CONV])["identical"])


def test_final_minus_best() -> None:
    assert metrics.final_minus_best([50.0, 90.0, 54.3]) == pytest.approx(-35.7)
    assert metrics.final_minus_best([50.0, 60.0]) == 0.0
    assert math.isnan(metrics.final_minus_best([]))


def test_late_changes_window() -> None:
    assert metrics.late_window(50) == 5
    assert metrics.late_window(3) == 1  # at least the last epoch
    assert metrics.late_window(11) == 2
    # 3 epochs: only the change into the last epoch counts.
    assert metrics.late_changes(["a", "b", "c"]) == 1
    assert metrics.late_changes(["a", "b", "b"]) == 0
    # 20 epochs: window 2, the changes into epochs 19 and 20.
    archs = ["a"] * 17 + ["b", "c", "a"]
    assert metrics.late_changes(archs) == 2
    assert metrics.late_changes(["a"]) == 0
    assert metrics.late_changes([]) == 0


# --- ranking ---------------------------------------------------------------------
def test_kendall_and_spearman_by_hand() -> None:
    # One swapped pair of five: 9 concordant, 1 discordant → τ = 0.8;
    # rank differences (0,0,0,1,1) → ρ = 1 − 6·2 / (5·24) = 0.9.
    s, t = [1, 2, 3, 4, 5], [1, 2, 3, 5, 4]
    assert metrics.kendall_tau(s, t) == pytest.approx(0.8)
    assert metrics.spearman_rho(s, t) == pytest.approx(0.9)
    assert metrics.kendall_tau(s, s[::-1]) == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties() -> None:
    # s = (1, 1, 2), t = (1, 2, 3): pairs (1,2) tied in s, (1,3) and (2,3) concordant.
    # τ_b = 2 / sqrt((3 − 1)(3 − 0)) = 2 / sqrt(6).
    assert metrics.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_degenerate_rankings_are_nan() -> None:
    assert math.isnan(metrics.kendall_tau([1.0], [2.0]))
    assert math.isnan(metrics.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(metrics.spearman_rho([1, 2, 3], [4, 4, 4]))
    with pytest.raises(ValueError):
        metrics.kendall_tau([1, 2], [1, 2, 3])


def test_sparse_tau_rounds_only_the_truth() -> None:
    # Truths 90.01 and 90.04 round to 90.0: that pair becomes a tie in t.
    s, t = [1, 2, 3], [90.04, 90.01, 91.0]
    assert metrics.kendall_tau(s, t) == pytest.approx(1 / 3)
    assert metrics.sparse_kendall_tau(s, t) == pytest.approx(2 / math.sqrt(6))


def test_precision_at_k() -> None:
    truth = np.arange(100, dtype=float)  # the true top-5 are indices 95..99
    scores = truth.copy()
    scores[[99, 98]] = -1.0  # the supernet misses two of them
    assert metrics.top_count(100, 0.05) == 5
    assert metrics.top_count(20, 0.01) == 1  # at least one cell
    assert metrics.precision_at(scores, truth, 0.05) == pytest.approx(3 / 5)
    assert metrics.precision_at(scores, truth, 0.01) == 0.0  # top-1 by score is 97
    assert metrics.precision_at(truth, truth, 0.10) == 1.0


def test_top_kendall_tau_looks_only_at_the_true_top() -> None:
    truth = np.arange(10, dtype=float)
    scores = truth.copy()
    scores[:8] = scores[:8][::-1]  # scramble the bottom 80 %
    scores[8], scores[9] = 100.0, 50.0  # reverse the true top 2
    assert metrics.kendall_tau(scores, truth) < 0.5
    assert metrics.top_kendall_tau(scores, truth, 0.2) == pytest.approx(-1.0)


def test_ranking_metrics_keys() -> None:
    result = metrics.ranking_metrics(np.arange(20.0), np.arange(20.0))
    assert set(result) == {
        "kendall_tau",
        "spearman_rho",
        "sparse_kendall_tau",
        "top20_kendall_tau",
        "p_at_1",
        "p_at_5",
        "p_at_10",
    }
    assert all(value == pytest.approx(1.0) for value in result.values())


# --- the one-shot scorer (harness.ranking) ----------------------------------------
def test_sample_cells_is_seeded_and_deduplicated() -> None:
    from harness import ranking

    first = ranking.sample_cells(300, ranking.rank_generator(3))
    again = ranking.sample_cells(300, ranking.rank_generator(3))
    assert first == again
    assert len({c.canonical() for c in first}) == 300
    assert first != ranking.sample_cells(300, ranking.rank_generator(4))


def test_score_cells_matches_the_search_evaluation() -> None:
    import torch

    from harness import ranking
    from harness.supernet import SuperNet
    from harness.train import evaluate

    torch.manual_seed(0)
    model = SuperNet(C=4, N=1, num_classes=10)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    cells = [CONV, SKIP]
    scores = ranking.score_cells(model, cells, images, labels, batch_size=8)
    assert scores.shape == (2,)
    weights = torch.nn.functional.one_hot(torch.tensor(CONV.op_indices), 5).float()
    expected, _ = evaluate(model, weights, None, images, labels, 8)
    assert scores[0] == pytest.approx(expected)
    assert model.training  # left as it was found
