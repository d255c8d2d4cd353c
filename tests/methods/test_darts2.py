"""DARTS second order: the α gradient against autograd through the unrolled step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exact_helpers import SMOOTH_RADIUS, close, make, make_batch, weight_step
from torch.func import functional_call

from harness.methods import darts2
from harness.methods.base import weight_params

pytestmark = pytest.mark.usefixtures("float64_default")


# --- DARTS-V2 ----------------------------------------------------------------------
def test_darts2_gradient_matches_autograd_through_the_unrolled_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(darts2, "FD_RADIUS", SMOOTH_RADIUS)
    method, ctx = make("darts2")
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    train, valid = make_batch(seed=7), make_batch(seed=8)
    weight_step(method, ctx, make_batch(seed=9))  # so a momentum buffer exists
    model, opt = method.model, ctx.w_optimizer
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = weight_params(model)
    group = opt.param_groups[0]

    probs = method.alpha.softmax(-1)
    train_loss = ctx.loss(train, probs)
    grads = torch.autograd.grad(train_loss, params, create_graph=True)
    unrolled = {
        name: p
        - group["lr"]
        * (group["momentum"] * opt.state[p]["momentum_buffer"] + g + group["weight_decay"] * p)
        for name, p, g in zip(names, params, grads, strict=True)
    }
    images, labels = valid
    logits = functional_call(model, unrolled, (images, probs))
    (expected,) = torch.autograd.grad(F.cross_entropy(logits, labels), method.alpha)

    (actual,) = darts2.second_order_gradient(ctx, method, train, valid)
    assert close(actual, expected, rtol=1e-6)
