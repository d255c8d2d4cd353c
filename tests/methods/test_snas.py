"""SNAS: the τ schedule, the Gumbel-softmax sample, the α step on the sampled loss."""

from __future__ import annotations

import pytest
import torch
from sampling_helpers import alpha_grad, batch, close, context, gumbel, make
from torch import Tensor

from harness.methods.parts.sampling import linear_temperature

Batch = tuple[Tensor, Tensor]
pytestmark = pytest.mark.usefixtures("float64_default")


def test_snas_tau_is_drnas_linear_10_to_1_never_reaching_1() -> None:
    method = make("snas", epochs=100)
    method.begin_epoch(0)
    assert method.tau == 10.0
    method.begin_epoch(99)
    assert method.tau == pytest.approx(10 - 9 * 99 / 100)  # 1.09: the code's last τ
    assert linear_temperature(3, 10, 2.0, 1.0) == pytest.approx(1.7)


# --- SNAS ----------------------------------------------------------------------------------
def test_snas_sample_is_softmax_of_alpha_plus_gumbel_over_tau() -> None:
    method = make("snas", epochs=10)
    method.begin_epoch(5)
    torch.manual_seed(4)
    sample = method.sample()
    expected = ((method.alpha + gumbel((6, 5), 4)) / method.tau).softmax(-1)
    torch.testing.assert_close(sample, expected)
    torch.manual_seed(4)
    assert torch.equal(method.weight_step_weights(), expected.detach())


def test_snas_alpha_step_descends_the_sampled_loss_on_the_valid_batch() -> None:
    method = make("snas", epochs=10)
    ctx = context(method, epoch=1)
    train, valid = batch(1), batch(2)

    def expected(data: Batch) -> Tensor:
        weights = ((method.alpha + gumbel((6, 5), 5)) / method.tau).softmax(-1)
        return alpha_grad(method, ctx.loss(data, weights))

    right = expected(valid)
    assert not close(expected(train), right, 1e-2)
    torch.manual_seed(5)
    method.arch_step(ctx, train, valid)
    assert method.alpha.grad is not None and close(method.alpha.grad, right)
