"""β-DARTS: the β-decay regulariser's value and gradient, λ's schedule and its paper
protocol.
"""

from __future__ import annotations

import math

import pytest
import torch
from tiny import make

from harness.methods import method_class
from harness.methods.parts import regularizers
from harness.space import NUM_EDGES, NUM_OPS

pytestmark = pytest.mark.usefixtures("float64_default")


# --- β-DARTS -----------------------------------------------------------------------------------
def test_beta_decay_value_and_gradient_at_a_known_alpha() -> None:
    alpha = torch.zeros(NUM_EDGES, NUM_OPS)
    alpha[0] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    alpha[1] = torch.tensor([2.0, 2.0, 0.0, -1.0, 0.0])
    alpha.requires_grad_(True)
    value = regularizers.beta_decay(alpha)
    rows = [math.log(math.e + 4), math.log(2 * math.e**2 + 2 + math.exp(-1))] + [math.log(5)] * 4
    assert float(value.detach()) == pytest.approx(sum(rows) / NUM_EDGES)
    (grad,) = torch.autograd.grad(value, alpha)
    assert torch.allclose(grad, alpha.detach().softmax(-1) / NUM_EDGES)


def test_beta_darts_lambda_is_50_t_over_T_and_the_paper_protocol_is_lineage_2() -> None:
    method = make("beta_darts", epochs=100)
    method.begin_epoch(30)
    assert method.lam == pytest.approx(15.0)  # the code's 50·30/100
    short = make("beta_darts", epochs=10)
    short.begin_epoch(5)
    assert short.lam == pytest.approx(25.0)
    protocol = method_class("beta_darts").Options.PAPER_PROTOCOL
    assert protocol == {
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }
