"""RDARTS: the stage distance R, the stages' disagreement and derivation, the ratio and
dual weights.
"""

from __future__ import annotations

import pytest
import torch
from exact_helpers import _saved, close, make, make_batch

from harness.methods.rdarts import disagreement_rate, stage_distance

pytestmark = pytest.mark.usefixtures("float64_default")


# --- RDARTS --------------------------------------------------------------------
def test_rdarts_distance_zero_for_equal_stages_and_a_step_reduces_it() -> None:
    shared = torch.randn(6, 5)
    assert float(stage_distance(shared.expand(3, 6, 5).softmax(-1))) == 0.0
    alpha = torch.randn(3, 6, 5, requires_grad=True)
    before = stage_distance(alpha.softmax(-1))
    assert before > 0
    (grad,) = torch.autograd.grad(before, alpha)
    after = stage_distance((alpha - 0.5 * grad).softmax(-1))
    assert after < before
    with torch.no_grad():
        pair = ((alpha[0].softmax(-1) - alpha[1].softmax(-1)) ** 2).sum(-1).mean()
        assert float(stage_distance(alpha[:2].softmax(-1))) == pytest.approx(float(pair))


def test_rdarts_stage_weights_disagreement_and_derivation() -> None:
    method, ctx = make("rdarts")
    assert method.edge_weights().shape == (3, 6, 5)
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[:, :4, 2] = 1.0  # edges 0-3 agree on op 2
        method.alpha[0, 4:, 1] = 1.0  # edges 4-5: stage 0 prefers op 1 ...
        method.alpha[1:, 4:, 3] = 0.9  # ... the other two op 3 (which wins on average)
    probs = method.edge_weights().detach()
    assert disagreement_rate(probs) == pytest.approx(2 / 6)
    assert method.derive().op_indices == (2, 2, 2, 2, 3, 3)
    telemetry = method.telemetry()
    assert telemetry["stage_disagreement"] == pytest.approx(2 / 6)
    assert telemetry["stage_archs"][0].count("skip_connect") == 2
    method.model(make_batch()[0], method.edge_weights())  # the supernet takes [3, 6, 5]


def test_rdarts_ratio_and_dual_weights() -> None:
    method, ctx = make("rdarts")
    with torch.no_grad():
        method.alpha.normal_(0, 1)
    valid = make_batch()
    probs = method.alpha.softmax(-1)
    ce, reg = ctx.loss(valid, probs), stage_distance(probs)
    loss = ce + 0.1 * ce.detach() / (reg.detach() + 1e-12) * reg
    (expected,) = torch.autograd.grad(loss, method.alpha)
    method.arch_step(ctx, make_batch(seed=2), valid)
    assert close(method.alpha.grad, expected)
    assert method.telemetry()["reg_share"] == pytest.approx(0.1, rel=1e-9)  # Reg holds κ of L_CE
    at_init, ctx = make("rdarts")  # R ≈ 1e-6 at α init: the share must hold there too
    at_init.arch_step(ctx, make_batch(seed=2), valid)
    assert at_init.telemetry()["reg_share"] == pytest.approx(0.1, rel=1e-4)

    dual, ctx = make("rdarts", adapt="dual", lambda_init=1.0)
    with torch.no_grad():
        dual.alpha.normal_(0, 1)
    reg = float(stage_distance(dual.edge_weights().detach()))
    dual.arch_step(ctx, make_batch(seed=2), valid)
    assert float(dual.dual_lambda) == pytest.approx(max(0.0, 1.0 + 0.01 * (reg - 0.05)))
    fresh, _ = make("rdarts", adapt="dual")
    fresh.load_state_dict(torch.load(_saved(dual.state_dict()), weights_only=False))
    assert torch.equal(fresh.dual_lambda, dual.dual_lambda)
