"""The discretization-aware methods, checked against hand computations and autograd.

Each test would fail if its method were wired wrong: gradients are compared
with independent autograd computations in float64 on a tiny supernet, schedules
with values worked out by hand, and every registered method runs end to end.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from harness import cli
from harness.config import Config
from harness.methods import darts2, method_class, registry
from harness.methods.amended import amended_gradient, hessian_vector, mixed_hessian_vector
from harness.methods.base import Method, StepContext, weight_params
from harness.methods.cdao import Options as CdaoOptions
from harness.methods.cdao import blended_weights, cdao_lambda, coarse_gradient
from harness.methods.constrained import projection, prox_penalty
from harness.methods.da2s import Options as Da2sOptions
from harness.methods.da2s import da2s_lambda, edge_entropy, sharpen
from harness.methods.rdarts import disagreement_rate, stage_distance
from harness.space import NUM_OPS
from harness.supernet import SuperNet

Batch = tuple[Tensor, Tensor]
CPU = torch.device("cpu")


# --- fixtures ------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("float64_default")


def make_batch(n: int = 8, seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def make(name: str, epochs: int = 50, **options: Any) -> tuple[Method, StepContext]:
    """A method on a SuperNet(C=4, N=1) in float64, with a context at epoch 0."""
    cls = method_class(name)
    opts = cls.Options(**options)
    model = SuperNet(C=4, N=1, **cls.supernet_options(opts))
    config = Config(epochs=epochs, dtype="float64")
    method = cls(model, config, opts, CPU)
    w_optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    return method, context(method, w_optimizer, epoch=0, epochs=epochs)


class ExactContext(StepContext):
    """The loop's context with a loss that keeps the logits' dtype.

    The loop's loss may cast logits to float32 (for bf16 autocast); in these
    float64 tests that would swamp the finite differences being checked.
    """

    def loss(self, batch: Batch, weights: Tensor, active: Tensor | None = None) -> Tensor:
        images, labels = batch
        return F.cross_entropy(self.model(images, weights, active), labels)


def context(
    method: Method, w_optimizer: torch.optim.SGD, epoch: int, epochs: int, step: int = 0
) -> StepContext:
    return ExactContext(method.model, w_optimizer, epoch, step, 10, epochs)


def at_epoch(method: Method, ctx: StepContext, epoch: int, step: int = 0) -> StepContext:
    method.begin_epoch(epoch)
    return context(method, ctx.w_optimizer, epoch, ctx.epochs, step)


def close(a: list[Tensor] | Tensor, b: list[Tensor] | Tensor, rtol: float = 1e-9) -> bool:
    """Relative error of the concatenated tensors below ``rtol``."""
    flat_a = torch.cat([t.reshape(-1) for t in (a if isinstance(a, list) else [a])])
    flat_b = torch.cat([t.reshape(-1) for t in (b if isinstance(b, list) else [b])])
    return bool((flat_a - flat_b).norm() <= rtol * flat_b.norm().clamp_min(1e-30))


def softmax_jacobian_t(probs: Tensor, grad: Tensor) -> Tensor:
    """J_softmaxᵀ g per edge, written out: p ⊙ (g − ⟨p, g⟩)."""
    return probs * (grad - (probs * grad).sum(-1, keepdim=True))


def weight_step(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    """One SGD step on w as the loop takes it; returns the pre-clip grad norm."""
    ctx.w_optimizer.zero_grad(set_to_none=True)
    loss = ctx.loss(batch, method.weight_step_weights(), method.active_mask())
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(method.model.parameters(), 5.0)
    ctx.w_optimizer.step()
    return grad_norm


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


# --- constrained (Maile et al. / DARTS-PRIME) ------------------------------------
def test_constrained_dynamic_schedule_follows_threshold() -> None:
    """The code's sequence per step: decide on F̄ of the previous weight steps, α step,
    weight step, update F̄ (which starts at the first measured value)."""
    method, ctx = make("constrained")
    assert method.alpha_first and method.fisher is None
    norms = [0.5, 0.5, 2.0, 3.0, 3.0, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    fisher, theta, taken = None, 1.0, []
    for g in norms:
        before = method.alpha.detach().clone()
        method.arch_step(ctx, make_batch(), make_batch(seed=2))
        step = fisher is not None and 0 < fisher < theta
        theta *= 1.05**-10 if step else 1.05
        assert method.threshold == pytest.approx(theta)
        assert (not torch.equal(method.alpha, before)) == step
        taken.append(step)
        method.after_weight_step(ctx, torch.tensor(g))
        fisher = g**2 if fisher is None else 0.2 * g**2 + 0.8 * fisher
        assert method.fisher == pytest.approx(fisher)
    assert taken[0] is False  # no F̄ yet, as the code's −1 sentinel
    assert any(taken) and not all(taken)
    assert method.telemetry()["alpha_steps"] == sum(taken)


def test_constrained_fixed_schedule_steps_every_s() -> None:
    method, ctx = make("constrained", schedule="fixed", sched_freq=3)
    decisions = [method.decide(step) for step in [0, 1, 2, 3] * 2]  # two epochs of 4 steps
    # the code's (step + 1) % s within each epoch, not a count across epochs
    assert decisions == [False, False, True, False] * 2


def test_constrained_crb_pruning_is_permanent_and_skips_compute() -> None:
    method, ctx = make("constrained", activation="crb", schedule="every", regularizer="none")
    assert method.model.layers[0].node_norms is not None  # CRB brings node BN
    with torch.no_grad():
        method.alpha[0, 2] = -0.1
        method.alpha[1, 1:] = -0.1  # a whole edge
    method.arch_step(ctx, make_batch(), make_batch(seed=2))
    mask = method.active_mask()
    assert mask is not None and not mask[:, 0].any()
    assert not mask[0, 2] and not mask[1].any() and mask[2, 1:].all()
    for step in range(4):
        ctx = at_epoch(method, ctx, 0, step=step)
        method.arch_step(ctx, make_batch(seed=step), make_batch(seed=10 + step))
        assert method.alpha[0, 2] == 0 and (method.alpha[1] == 0).all()
        assert not method.active_mask()[0, 2]
    assert method.derive().ops[1] == "none"
    assert method.telemetry()["pruned_ops"] >= 5

    weights = method.edge_weights().detach()
    zeroed = weights.masked_fill(~method.active_mask(), 0.0)
    images, _ = make_batch()
    masked = method.model(images, weights, method.active_mask())
    assert torch.allclose(masked, method.model(images, zeroed), rtol=1e-12, atol=1e-12)


def test_constrained_prox_value_by_hand() -> None:
    method, ctx = make("constrained", epochs=10)
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[0, 3] = math.log(3.0)  # p_0 = [1,1,1,3,1]/7
    ctx = at_epoch(method, ctx, 5)  # τ = 5 + 1/10 (the code's clock counts this step): τ/T = 0.51
    p0 = [1 / 7] * 3 + [3 / 7] + [1 / 7]
    squares = sum(v**2 for v in p0) - 2 * 3 / 7 + 1
    squares += 5 * (4 * 0.2**2 + 0.8**2)  # uniform edges project to the first non-none op
    hand = 0.51 * (0.1 / 2) * math.sqrt(squares)
    penalty = float(method.penalty(ctx, method.edge_weights()).detach())
    assert penalty == pytest.approx(hand, rel=1e-12)
    alive = torch.ones(6, 5, dtype=torch.bool)
    value = prox_penalty(method.edge_weights().detach(), alive, 5.1, 10, 0.1)
    assert float(value) == pytest.approx(hand, rel=1e-12)


def test_constrained_projects_never_onto_none_but_derives_with_it() -> None:
    method, ctx = make("constrained")
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[:, 0] = 2.0  # `none` leads every edge
        method.alpha[:, 3] = 1.0  # nor_conv_3x3 is the best of the rest
    weights = method.edge_weights().detach()
    assert projection(weights, method.alive).argmax(-1).tolist() == [3] * 6  # DARTS-PRIME _parse
    assert method.derive().ops == ("none",) * 6  # NB201 lookup: argmax over all five
    # the prox penalty pulls toward nor_conv_3x3, not toward `none`
    ctx = at_epoch(method, ctx, 25)
    (grad,) = torch.autograd.grad(method.penalty(ctx, method.edge_weights()), method.alpha)
    assert (grad[:, 3] < 0).all() and (grad[:, 0] > 0).all()


def test_constrained_admm_starts_at_alpha_and_updates_z_and_u() -> None:
    method, ctx = make("constrained", regularizer="admm", schedule="every", admm_freq=2)
    with torch.no_grad():
        method.alpha.normal_(0, 1)
        method.alpha[:, 0] = 5.0  # `none` leads: Z must still avoid it
    fresh, _ = make("constrained", regularizer="admm")
    assert torch.equal(fresh.z, fresh.alpha.detach()) and not fresh.u.any()  # Z₀ = α (the code)
    method.z = method.alpha.detach().clone()
    z0 = method.z.clone()
    method.arch_step(ctx, make_batch(), make_batch(seed=2))
    assert torch.equal(method.z, z0) and not method.u.any()
    method.arch_step(ctx, make_batch(), make_batch(seed=2))
    weights = method.edge_weights().detach()
    expected_z = F.one_hot(weights[:, 1:].argmax(-1) + 1, NUM_OPS).to(weights.dtype)
    assert torch.equal(method.z, expected_z)
    assert torch.allclose(method.u, weights - expected_z)
    u1 = method.u.clone()
    method.options.admm_u_ewma = 0.5
    for _ in range(2):
        method.arch_step(ctx, make_batch(), make_batch(seed=2))
    weights = method.edge_weights().detach()
    expected_z = F.one_hot((weights + u1)[:, 1:].argmax(-1) + 1, NUM_OPS).to(weights.dtype)
    assert torch.equal(method.z, expected_z)
    assert torch.allclose(method.u, 0.5 * u1 + weights - expected_z)  # U ← c·U + (A − Z)


def test_constrained_state_round_trips_through_a_checkpoint() -> None:
    method, ctx = make("constrained", activation="crb", regularizer="admm", admm_freq=1)
    with torch.no_grad():
        method.alpha[2, 3] = -0.1
    for g in (0.1, 0.2, 5.0):
        method.after_weight_step(ctx, torch.tensor(g))
        method.arch_step(ctx, make_batch(), make_batch(seed=2))
    state = torch.load(_saved(method.state_dict()), weights_only=False)
    fresh, _ = make("constrained", activation="crb", regularizer="admm", admm_freq=1)
    fresh.load_state_dict(state)
    assert (fresh.threshold, fresh.fisher, fresh.calls) == (
        method.threshold,
        method.fisher,
        method.calls,
    )
    assert torch.equal(fresh.active_mask(), method.active_mask()) and not fresh.active_mask()[2, 3]
    assert torch.equal(fresh.z, method.z) and torch.equal(fresh.u, method.u)


def _saved(state: dict[str, Any]) -> io.BytesIO:
    """The state as torch.save writes it, ready for torch.load."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


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


# --- Amended-DARTS ----------------------------------------------------------------
# The spec's radius 0.01/‖v‖ straddles ReLU kinks on this tiny net (relative error
# > 1 against the exact product; see docs/methods.md), so the FD arithmetic is
# checked at a radius where the loss is smooth: the error then falls to ~1e-9.
SMOOTH_RADIUS = 1e-5


def test_amended_finite_differences_match_autograd_hessian_products() -> None:
    method, ctx = make("amended")
    assert method.options.fd_radius == 0.01
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    train = make_batch(seed=5)
    params = weight_params(method.model)
    saved = [p.detach().clone() for p in params]
    vector = [torch.randn_like(p) for p in params]

    grads = torch.autograd.grad(ctx.loss(train, method.edge_weights()), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector, strict=True))
    exact_hv = torch.autograd.grad(dot, params, retain_graph=True)
    exact_mixed = torch.autograd.grad(dot, method.alpha)

    hv = hessian_vector(ctx, method, train, vector, SMOOTH_RADIUS)
    mixed = mixed_hessian_vector(ctx, method, train, vector, SMOOTH_RADIUS)
    assert close(hv, list(exact_hv), rtol=1e-6)
    assert close(mixed, list(exact_mixed), rtol=1e-6)
    assert all(torch.equal(p, s) for p, s in zip(params, saved, strict=True))  # w restored


def test_amended_gradient_combines_the_pieces() -> None:
    method, ctx = make("amended", eta=0.3)
    train, valid = make_batch(seed=5), make_batch(seed=6)
    params = weight_params(method.model)
    saved = [p.detach().clone() for p in params]
    val = torch.autograd.grad(ctx.loss(valid, method.edge_weights()), [method.alpha, *params])
    g_val, v = val[0], list(val[1:])
    u = hessian_vector(ctx, method, train, v, 0.01)
    z = mixed_hessian_vector(ctx, method, train, u, 0.01)[0]
    grads, ratio = amended_gradient(ctx, method, train, valid, method.options)
    assert close(grads[0], g_val - 0.3 * z)
    assert float(ratio) == pytest.approx(float((0.3 * z).norm() / g_val.norm()))
    assert all(torch.equal(p, s) for p, s in zip(params, saved, strict=True))

    method.options.normalize_c = 0.5
    grads, _ = amended_gradient(ctx, method, train, valid, method.options)
    assert float((grads[0] - g_val).norm()) == pytest.approx(0.5 * float(g_val.norm()))


def test_amended_autograd_products_agree_with_smooth_finite_differences() -> None:
    fd, ctx = make("amended", fd_radius=SMOOTH_RADIUS)
    exact, _ = make("amended", hessian="autograd")
    exact.model.load_state_dict(fd.model.state_dict())
    with torch.no_grad():
        fd.alpha.normal_(0, 0.5)
        exact.alpha.copy_(fd.alpha)
    train, valid = make_batch(seed=5), make_batch(seed=6)
    g_fd, _ = amended_gradient(ctx, fd, train, valid, fd.options)
    exact_ctx = context(exact, ctx.w_optimizer, 0, 50)
    g_exact, _ = amended_gradient(exact_ctx, exact, train, valid, exact.options)
    assert close(g_exact, g_fd, rtol=1e-6)


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


# --- every method end to end -----------------------------------------------------------
TELEMETRY = {
    "cdao": {"lambda_t", "divergence", "loss_gap"},
    "da2s": {"entropy", "lambda_t"},
    "constrained": {"alpha_step_rate", "threshold", "fisher_ewma", "pruned_ops"},
    "rdarts": {"reg_distance", "reg_weight", "stage_disagreement", "stage_archs"},
    "amended": {"amend_ratio"},
    "sdarts_rs": {"epsilon"},
    "sdarts_adv": {"epsilon"},
    "darts_minus": {"beta"},
    "beta_darts": {"lambda_t", "beta_decay"},
    "fairdarts": {"zero_one", "sigmoid_max", "above_threshold"},
    "gdas": {"tau"},
    "snas": {"tau"},
    "drnas": {"concentration_sum", "partial_channels", "stage"},
}
VARIANTS = [
    "cdao.two_pass=true",
    "cdao.weights_use_blend=true",
    "da2s.single_level=true",
    "da2s.alpha_optimizer=sgd",
    "da2s.interval_frac=0",
    "constrained.activation=crb",
    "constrained.regularizer=admm",
    "rdarts.adapt=dual",
    "amended.normalize_c=0.5",
    "fairdarts.derive=argmax",
    "drnas.progressive=true",
    "drnas.reg_type=kl",
]


def run_cli(names: list[str], results: Path, overrides: list[str]) -> None:
    argv = ["run", "--methods", ",".join(names), "--seeds", "1", "--preset", "smoke"]
    argv += ["--results", str(results)]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0


def check_runs(names: list[str], results: Path, epochs: int) -> None:
    for name in names:
        directory = results / "smoke" / "cifar10" / name / "seed-0"
        final = json.loads((directory / "final.json").read_text())
        assert final["status"] == "finished", name
        lines = (directory / "epochs.jsonl").read_text().splitlines()
        assert len(lines) == epochs
        telemetry = json.loads(lines[-1])["method"]
        assert TELEMETRY.get(name, set()) <= set(telemetry), name


def test_every_registered_method_completes_a_smoke_run(tmp_path: Path) -> None:
    names = list(registry())
    assert set(TELEMETRY) <= set(names)
    torch.set_default_dtype(torch.float32)
    run_cli(names, tmp_path, ["epochs=2", "train_size=128", "valid_size=128"])
    check_runs(names, tmp_path, 2)


def test_constrained_dyno_split_trains_weights_on_ten_elevenths(tmp_path: Path) -> None:
    cls = method_class("constrained")
    assert cls.train_fraction(cls.Options()) is None  # off: the protocol's halves
    assert cls.train_fraction(cls.Options(dyno_split=True)) == pytest.approx(10 / 11)
    torch.set_default_dtype(torch.float32)
    sizes = ["epochs=1", "train_size=256", "valid_size=256", "rank_samples=0"]
    run_cli(["constrained"], tmp_path, [*sizes, "constrained.dyno_split=true"])
    final = json.loads((tmp_path / "smoke/cifar10/constrained/seed-0/final.json").read_text())
    info = final["data"]
    assert (info["train_size"], info["valid_size"]) == (465, 47)  # floor(512·10/11), the rest
    assert info["train_fraction"] == pytest.approx(10 / 11)
    assert info["eval_in_train"] == 128 - 47  # smoke gap-eval images beyond the α share


def test_method_variants_complete_a_smoke_run(tmp_path: Path) -> None:
    names = sorted(TELEMETRY)
    torch.set_default_dtype(torch.float32)
    run_cli(names, tmp_path, ["epochs=1", "train_size=96", "valid_size=96", *VARIANTS])
    check_runs(names, tmp_path, 1)
