"""DARTS first order: the α step is ∇_α L_val at the current weights, nothing more.

The loop-level checks (which batch, which order, the xautodl oracle) are in
``tests/test_wiring.py`` and ``tests/test_oracle.py``; this file pins the step itself.
"""

from __future__ import annotations

import pytest
import torch
from exact_helpers import close, make, make_batch

from harness.methods.base import Method

pytestmark = pytest.mark.usefixtures("float64_default")


def test_darts_alpha_step_is_one_adam_step_on_the_valid_gradient_at_fixed_weights() -> None:
    method, ctx = make("darts")
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    train, valid = make_batch(seed=1), make_batch(seed=2)
    (expected,) = torch.autograd.grad(ctx.loss(valid, method.alpha.softmax(-1)), method.alpha)
    (other,) = torch.autograd.grad(ctx.loss(train, method.alpha.softmax(-1)), method.alpha)
    weights = [p.detach().clone() for p in method.model.parameters()]
    alpha = method.alpha.detach().clone()
    reference = torch.optim.Adam([torch.nn.Parameter(alpha.clone())], **_adam(method))
    reference.param_groups[0]["params"][0].grad = expected.clone()
    reference.step()

    method.arch_step(ctx, train, valid)

    assert close(method.alpha.grad, expected) and not close(method.alpha.grad, other, 1e-3)
    assert torch.equal(method.alpha.detach(), reference.param_groups[0]["params"][0].detach())
    assert all(torch.equal(a, b) for a, b in zip(weights, method.model.parameters(), strict=True))


def _adam(method: Method) -> dict[str, object]:
    """The method's Adam hyper-parameters, for a reference optimizer."""
    group = method.optimizer.param_groups[0]
    return {k: group[k] for k in ("lr", "betas", "weight_decay")}
