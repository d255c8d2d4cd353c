"""DARTS-CDAO: the coarse gradient at the one-hot point, the blend, the λ_t schedule,
each checked against autograd or a hand computation in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exact_helpers import at_epoch, close, make, make_batch, softmax_jacobian_t

from harness.methods.cdao import Options as CdaoOptions
from harness.methods.cdao import blended_weights, cdao_lambda, coarse_gradient
from harness.space import NUM_OPS

pytestmark = pytest.mark.usefixtures("float64_default")


# --- CDAO ------------------------------------------------------------------------
def test_cdao_coarse_gradient_at_lambda_one_is_the_one_hot_gradient_through_the_softmax() -> None:
    method, ctx = make("cdao", mu=0.0)
    with torch.no_grad():
        method.alpha.normal_(0, 1)
    valid = make_batch()
    probs = method.alpha.softmax(-1).detach()
    hard = F.one_hot(probs.argmax(-1), NUM_OPS).to(probs.dtype).requires_grad_(True)
    (grad_h,) = torch.autograd.grad(ctx.loss(valid, hard), hard)
    expected = softmax_jacobian_t(probs, grad_h)

    grads, _ = coarse_gradient(ctx, method, valid, 1.0)
    assert close(grads, expected)
    (darts,) = torch.autograd.grad(ctx.loss(valid, method.alpha.softmax(-1)), method.alpha)
    assert not close(grads, darts, rtol=1e-2)  # the one-hot point is really a different point

    ctx = at_epoch(method, ctx, 49)  # λ_t = 1 here: the α step itself uses the coarse gradient
    method.arch_step(ctx, make_batch(seed=2), valid)
    assert close(method.alpha.grad, expected)


def test_cdao_at_lambda_zero_and_mu_zero_is_plain_darts() -> None:
    method, ctx = make("cdao", mu=0.0)
    valid = make_batch()
    (darts,) = torch.autograd.grad(ctx.loss(valid, method.alpha.softmax(-1)), method.alpha)
    method.arch_step(ctx, make_batch(seed=2), valid)  # epoch 0: λ_t = 0
    assert close(method.alpha.grad, darts)


def test_cdao_default_adds_mu_times_the_divergence_gradient() -> None:
    method, ctx = make("cdao")
    assert method.options.mu == 1.0  # the measured default (docs/methods.md)
    with torch.no_grad():
        method.alpha.normal_(0, 1)
    valid = make_batch()
    probs = method.alpha.softmax(-1)
    hard = F.one_hot(probs.argmax(-1), NUM_OPS).to(probs.dtype)  # held fixed
    divergence = ((probs - hard) ** 2).sum(-1).mean()
    (expected,) = torch.autograd.grad(ctx.loss(valid, probs) + divergence, method.alpha)
    method.arch_step(ctx, make_batch(seed=2), valid)  # epoch 0: λ_t = 0
    assert close(method.alpha.grad, expected)


def test_cdao_blend_forward_value_and_two_pass_mix() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(blended_weights(probs, 0.25), 0.75 * probs + 0.25 * hard)

    method, ctx = make("cdao", two_pass=True, mu=0.0)
    with torch.no_grad():
        method.alpha.normal_(0, 1)
    ctx = at_epoch(method, ctx, 25)  # λ_t = 0.5
    valid = make_batch()
    g_c, _ = coarse_gradient(ctx, method, valid, 0.0)
    g_d, _ = coarse_gradient(ctx, method, valid, 1.0)
    method.arch_step(ctx, make_batch(seed=2), valid)
    assert close(method.alpha.grad, 0.5 * g_c[0] + 0.5 * g_d[0])


def test_cdao_lambda_schedule() -> None:
    opts = CdaoOptions()
    values = {t: cdao_lambda(t, 50, opts) for t in (0, 9, 10, 25, 39, 40, 49)}
    assert values == pytest.approx({0: 0, 9: 0, 10: 0, 25: 0.5, 39: 29 / 30, 40: 1, 49: 1})


def test_cdao_weights_use_blend_trains_w_on_the_one_hot_at_lambda_one() -> None:
    method, ctx = make("cdao", weights_use_blend=True)
    at_epoch(method, ctx, 45)
    weights = method.weight_step_weights()
    assert torch.equal(weights, F.one_hot(weights.argmax(-1), NUM_OPS).to(weights.dtype))
