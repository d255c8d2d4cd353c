"""DARTS-: β's linear decay, the auxiliary skip β·x on every edge (reference and fused),
and a derivation that ignores it.
"""

from __future__ import annotations

import pytest
import torch
from perturb_helpers import CONV3, SKIP
from tiny import make
from torch import Tensor

from harness.methods.parts import perturbation
from harness.space import NUM_EDGES, NUM_OPS
from harness.supernet import SuperNet, avg_pool3

pytestmark = pytest.mark.usefixtures("float64_default")


# --- DARTS- ----------------------------------------------------------------------------------
def test_darts_minus_beta_decays_linearly_from_one_to_zero() -> None:
    method = make("darts_minus", epochs=50)
    betas = {}
    for epoch in (0, 25, 49):
        method.begin_epoch(epoch)
        betas[epoch] = method.beta
    assert betas == pytest.approx({0: 1.0, 25: 0.5, 49: 1 / 50})
    half = make("darts_minus", epochs=10, beta0=0.5)
    half.begin_epoch(4)
    assert half.beta == pytest.approx(0.5 * 6 / 10)


def test_darts_minus_weights_are_softmax_plus_beta_on_skip_and_derive_ignores_it() -> None:
    method = make("darts_minus", epochs=10)
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[:, CONV3] = 0.2  # conv leads the softmax ...
        method.alpha[:, SKIP] = 0.1  # ... skip only leads once β is added
    method.begin_epoch(0)
    probs = method.alpha.softmax(-1)
    expected = probs.clone()
    expected[:, SKIP] += 1.0
    assert torch.allclose(method.edge_weights(), expected)
    assert method.derive().ops == ("nor_conv_3x3",) * NUM_EDGES
    assert torch.allclose(method.probabilities(), probs)


def cell_with_explicit_aux_skip(net: SuperNet, x: Tensor, weights: Tensor, beta: float) -> Tensor:
    """The first searched cell as DARTS- writes it: β·x + Σ_o w_o·o(x) on every edge."""
    cell = net.layers[0]
    nodes = [x]
    for target in range(1, 4):
        total = 0
        for k, (t, source) in enumerate(((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))):
            if t != target:
                continue
            h = nodes[source]
            ops = (
                h * 0,
                h,
                cell._conv_op(h, "conv1", k),
                cell._conv_op(h, "conv3", k),
                avg_pool3(h),
            )
            total = total + beta * h + sum(weights[k, o] * ops[o] for o in range(NUM_OPS))
        nodes.append(total)
    return nodes[3]


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_aux_skip_adds_beta_times_the_input_on_every_edge(impl: str) -> None:
    from harness.space import EDGES

    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    net = SuperNet(C=4, N=1, impl=impl)
    x = torch.randn(2, 4, 8, 8)
    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    beta = 0.7
    expected = cell_with_explicit_aux_skip(net, x, probs, beta)
    shifted = perturbation.with_aux_skip(probs, beta)
    got = net._cell_forward(net.layers[0], x, shifted, None, False)
    assert torch.allclose(got, expected, atol=1e-12)
    plain = net._cell_forward(net.layers[0], x, probs, None, False)
    assert not torch.allclose(plain, expected, atol=1e-3)
