"""PC-DARTS: the partial-channel supernet and DARTS's α step on the valid batch."""

from __future__ import annotations

import pytest
import torch
from sampling_helpers import alpha_grad, batch, close, context, make

from harness.supernet import SuperNet

pytestmark = pytest.mark.usefixtures("float64_default")


# --- PC-DARTS ------------------------------------------------------------------------------
def test_pcdarts_builds_a_partial_channel_supernet_and_steps_darts_on_the_valid_batch() -> None:
    method = make("pcdarts", C=8)
    assert method.model.partial_channels == 4 and method.alpha_first
    ctx = context(method)
    train, valid = batch(1), batch(2)
    right = alpha_grad(method, ctx.loss(valid, method.alpha.softmax(-1)))
    assert not close(alpha_grad(method, ctx.loss(train, method.alpha.softmax(-1))), right, 1e-2)
    method.arch_step(ctx, train, valid)
    assert method.alpha.grad is not None and close(method.alpha.grad, right)
    full = SuperNet(C=8, N=1)
    full.load_state_dict(method.model.state_dict())
    probs = method.alpha.detach().softmax(-1)
    assert not torch.allclose(full(valid[0], probs), method.model(valid[0], probs))
