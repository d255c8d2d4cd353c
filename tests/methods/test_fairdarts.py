"""FairDARTS: independent sigmoids, the zero-one loss, and the code's thresholded
derivation on a real trajectory.
"""

from __future__ import annotations

import math

import pytest
import torch
from perturb_helpers import CONV3, SKIP
from tiny import context, make

from harness.methods.fairdarts import threshold_cell as fairdarts_threshold_cell
from harness.methods.parts import regularizers
from harness.space import NUM_EDGES, NUM_OPS, OPS

pytestmark = pytest.mark.usefixtures("float64_default")


# --- FairDARTS ----------------------------------------------------------------------------------
def test_fairdarts_weights_are_independent_sigmoids_starting_at_one_half() -> None:
    method = make("fairdarts")
    assert torch.equal(method.alpha.detach(), torch.zeros(NUM_EDGES, NUM_OPS))
    with torch.no_grad():
        method.alpha.fill_(math.log(3))  # σ = 3/4 for every op: no softmax coupling
    assert torch.allclose(method.edge_weights(), torch.full((NUM_EDGES, NUM_OPS), 0.75))


def test_zero_one_loss_value_and_gradient_at_a_known_alpha() -> None:
    alpha = torch.full((NUM_EDGES, NUM_OPS), math.log(3), requires_grad=True)
    value = regularizers.zero_one(alpha.sigmoid())
    assert float(value.detach()) == pytest.approx(-0.0625)  # −mean((3/4 − 1/2)²)
    (grad,) = torch.autograd.grad(value, alpha)
    n = NUM_EDGES * NUM_OPS
    assert torch.allclose(grad, torch.full_like(grad, -2 * 0.25 * 0.75 * 0.25 / n))
    at_half = torch.zeros(NUM_EDGES, NUM_OPS, requires_grad=True)
    (flat,) = torch.autograd.grad(regularizers.zero_one(at_half.sigmoid()), at_half)
    assert float(flat.abs().max()) == 0.0  # σ = 1/2 is the loss's maximum


# σ(α) of FairDARTS after each of the 4 epochs of a real search, rounded to 4 decimals:
# `--preset ci --methods fairdarts --seeds 0` (float64, 512 + 512 images), recorded at
# this commit's parent by building the run's state (search.build_state) and running its
# epochs (search.train_epoch) as Search does, then reading method.alpha.sigmoid(). Edges in
# NB201 order, ops none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.
FAIRDARTS_CI_SEED0_SIGMA = [
    [
        [0.5, 0.4321, 0.4339, 0.6225, 0.4427],
        [0.5, 0.3452, 0.6028, 0.3495, 0.3568],
        [0.5, 0.3437, 0.3495, 0.3429, 0.3483],
        [0.5, 0.341, 0.5534, 0.6536, 0.3555],
        [0.5, 0.3425, 0.6413, 0.3535, 0.3478],
        [0.5, 0.3846, 0.3606, 0.3606, 0.4019],
    ],
    [
        [0.5, 0.304, 0.2601, 0.7744, 0.3588],
        [0.5, 0.2017, 0.7659, 0.2067, 0.2041],
        [0.5, 0.2017, 0.2062, 0.2, 0.2026],
        [0.5, 0.2018, 0.6705, 0.7989, 0.2056],
        [0.5, 0.2054, 0.7776, 0.2154, 0.2058],
        [0.5, 0.231, 0.2111, 0.2164, 0.2397],
    ],
    [
        [0.5, 0.185, 0.1413, 0.8659, 0.2298],
        [0.5, 0.1265, 0.8612, 0.1277, 0.1262],
        [0.5, 0.125, 0.1274, 0.126, 0.125],
        [0.5, 0.1334, 0.8037, 0.8756, 0.1359],
        [0.5, 0.1355, 0.8623, 0.1409, 0.1364],
        [0.5, 0.1407, 0.1304, 0.1313, 0.1424],
    ],
    [
        [0.5, 0.1144, 0.0882, 0.9106, 0.136],
        [0.5, 0.0849, 0.9095, 0.0855, 0.0841],
        [0.5, 0.0828, 0.0854, 0.0856, 0.0822],
        [0.5, 0.0924, 0.885, 0.9178, 0.0936],
        [0.5, 0.0909, 0.9105, 0.0964, 0.0913],
        [0.5, 0.089, 0.087, 0.0879, 0.089],
    ],
]
C1, C3, NO = "nor_conv_1x1", "nor_conv_3x3", "none"
ARGMAX_EARLY = (C3, C1, NO, C3, C1, NO)  # edges whose real ops all fall below ½: `none`


@pytest.mark.parametrize(
    ("epoch", "threshold_cell", "argmax_cell"),
    [
        (1, (NO,) * 6, ARGMAX_EARLY),  # every real op below 0.85: the code keeps none
        (2, (NO,) * 6, ARGMAX_EARLY),
        (3, ARGMAX_EARLY, ARGMAX_EARLY),  # 0.8659, 0.8612, 0.8756, 0.8623 pass 0.85
        (4, ARGMAX_EARLY, ARGMAX_EARLY),
    ],
)
def test_fairdarts_derives_the_codes_threshold_sparse_on_a_real_trajectory(
    epoch: int, threshold_cell: tuple[str, ...], argmax_cell: tuple[str, ...]
) -> None:
    """The default is the code's ``threshold_sparse`` (real op with σ ≥ 0.85, else the
    edge is dropped); ``derive=argmax`` (the old default) keeps an op from σ > ½."""
    sigma = torch.tensor(FAIRDARTS_CI_SEED0_SIGMA[epoch - 1], dtype=torch.float64)
    assert (sigma[:, OPS.index("none")] == 0.5).all()  # σ(α_none) never moves
    for derive, expected in (("threshold", threshold_cell), ("argmax", argmax_cell)):
        method = make("fairdarts") if derive == "threshold" else make("fairdarts", derive=derive)
        with torch.no_grad():
            method.alpha.copy_(torch.logit(sigma))
        assert method.derive().ops == expected, derive


def test_fairdarts_alpha_none_gets_no_gradient_in_a_real_step() -> None:
    """Why σ(α_none) stays ½: a real α step (valid batch, zero-one loss, Adam's decay)
    leaves α_none at exactly 0 while every real op moves."""
    method = make("fairdarts")
    ctx = context(method)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 3, 8, 8, generator=generator), torch.arange(8) % 10)
    for _ in range(3):
        method.arch_step(ctx, batch, batch)
    alpha = method.alpha.detach()
    assert (alpha[:, OPS.index("none")] == 0).all() and (alpha[:, 1:] != 0).all()


def test_fairdarts_threshold_is_inclusive_and_ignores_none() -> None:
    sigma = torch.full((NUM_EDGES, NUM_OPS), 0.2, dtype=torch.float64)
    sigma[:, OPS.index("none")] = 0.5  # as on NB201: σ(α_none) stays ½
    sigma[0, CONV3] = 0.85  # the code keeps W >= op_threshold
    sigma[1, CONV3] = 0.4  # below ½ as well as 0.85: dropped
    assert fairdarts_threshold_cell(sigma, 0.85).ops[:2] == ("nor_conv_3x3", "none")
    assert fairdarts_threshold_cell(sigma, 0.3).ops[1] == "nor_conv_3x3"  # none (½) ignored


def test_fairdarts_derive_argmax_and_threshold_semantics() -> None:
    logit = math.log  # σ(log(p/(1−p))) = p
    alpha = torch.full((NUM_EDGES, NUM_OPS), logit(0.1 / 0.9))
    alpha[0, CONV3] = logit(0.9 / 0.1)  # above 0.85: kept by both
    alpha[1, CONV3] = logit(0.8 / 0.2)  # the largest, but below 0.85
    alpha[1, SKIP] = logit(0.7 / 0.3)
    for name, expected_edge1 in (("argmax", "nor_conv_3x3"), ("threshold", NO)):
        method = make("fairdarts", derive=name)
        with torch.no_grad():
            method.alpha.copy_(alpha)
        cell = method.derive()
        assert cell.ops[0] == "nor_conv_3x3" and cell.ops[1] == expected_edge1, name
    threshold = make("fairdarts", derive="threshold")
    with torch.no_grad():
        threshold.alpha.copy_(alpha)
    assert threshold.derive().ops[2:] == ("none",) * 4  # no op above 0.85
    assert threshold.telemetry()["above_threshold"] == 1
