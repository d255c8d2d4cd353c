"""DA2S: the sharpening, the entropy term by hand, the code's ramp and the single-level
cadence.
"""

from __future__ import annotations

import math

import pytest
import torch
from exact_helpers import at_epoch, close, make, make_batch

from harness.methods.da2s import Options as Da2sOptions
from harness.methods.da2s import da2s_lambda, edge_entropy, sharpen

pytestmark = pytest.mark.usefixtures("float64_default")


# --- DA2S ----------------------------------------------------------------------
def test_da2s_sharpening_values() -> None:
    alpha = torch.tensor([1.0, 0.25, 0.0, -0.5, -1.0, -2.0])
    expected = torch.tensor([2.0, 0.5, 0.0, -1.0, -8.0, -64.0])
    assert torch.equal(sharpen(alpha), expected)


def test_da2s_loss_adds_lambda_times_hand_computed_entropy() -> None:
    method, ctx = make("da2s")
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[0] = torch.tensor([0.5, 0.0, 0.0, 0.0, -1.0])  # f → [1, 0, 0, 0, -8]
    uniform = math.log(5)
    logits = [1.0, 0.0, 0.0, 0.0, -8.0]
    z = sum(math.exp(v) for v in logits)
    first = -sum(math.exp(v) / z * (v - math.log(z)) for v in logits)
    hand = first + 5 * uniform
    entropy = float(edge_entropy(method.edge_weights().detach()))
    assert entropy == pytest.approx(hand, rel=1e-12)

    ctx = at_epoch(method, ctx, 49)  # λ_t = (49 − 16)/49/2, the code's last value
    valid = make_batch()
    ce = ctx.loss(valid, method.edge_weights())
    added = float((method.arch_loss(ctx, valid) - ce).detach())
    assert added == pytest.approx(33 / 49 / 2 * hand, rel=1e-12)


def test_da2s_ramp_is_the_codes_over_50_epochs_and_stretches_with_the_run() -> None:
    opts = Da2sOptions()
    # DAAS: linear(epoch − 15)/2 with linear(e) = max(0, (e − 1)/49), 0-based epoch of 50
    code = {t: max(0.0, (t - 15 - 1) / 49) / 2 for t in range(50)}
    assert {t: da2s_lambda(t, 50, opts) for t in range(50)} == pytest.approx(code, abs=1e-15)
    assert da2s_lambda(16, 50, opts) == 0 and da2s_lambda(17, 50, opts) == pytest.approx(1 / 98)
    assert da2s_lambda(49, 50, opts) == pytest.approx(0.3367, abs=1e-4)
    # 10 epochs: t' = 5t, so epochs 0-3 are 0, epoch 4 is (20 − 16)/49/2, epoch 9 (45 − 16)/49/2
    short = [da2s_lambda(t, 10, opts) for t in range(10)]
    assert short[:4] == [0, 0, 0, 0]
    assert short[4] == pytest.approx(4 / 98) and short[9] == pytest.approx(29 / 98)
    assert da2s_lambda(49, 50, Da2sOptions(lambda_max=1.0)) == pytest.approx(33 / 49)


def test_da2s_single_level_steps_on_train_batch_every_k_with_lr_zero_before_the_interval() -> None:
    method, ctx = make("da2s", epochs=10, single_level=True, alpha_optimizer="sgd")
    assert method.alpha_first
    train, valid = make_batch(seed=3), make_batch(seed=4)
    before = method.alpha.detach().clone()
    method.arch_step(ctx, train, valid)  # epoch 0 < interval 3: a step at lr 0, as the code's
    assert torch.equal(method.alpha, before)
    buffer = method.optimizer.state[method.alpha]["momentum_buffer"]
    (frozen_grad,) = torch.autograd.grad(method.arch_loss(ctx, train), method.alpha)
    assert close(buffer, frozen_grad + 1e-3 * before)  # the momentum buffer fills meanwhile
    ctx = at_epoch(method, ctx, 5, step=1)  # not a multiple of alpha_every
    method.arch_step(ctx, train, valid)
    assert torch.equal(method.alpha, before)
    ctx = at_epoch(method, ctx, 5, step=5)
    (expected,) = torch.autograd.grad(method.arch_loss(ctx, train), method.alpha)
    start = method.edge_weights().detach()
    method.arch_step(ctx, train, valid)
    assert not torch.equal(method.alpha, before)
    assert close(method.alpha.grad, expected)
    # the weight step of this step trains at the α the α gradient saw (one joint backward)
    assert torch.equal(method.weight_step_weights(), start)
    assert not torch.equal(method.edge_weights().detach(), start)
