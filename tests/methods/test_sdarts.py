"""SDARTS-RS and SDARTS-ADV: the ε ramp, the simplex clip, the random and PGD
perturbations, and that the loop trains the weights on what ``perturb_weights`` returns.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from perturb_helpers import CONV3, batch, on_simplex
from tiny import Batch, context, make
from torch import Tensor

from harness.methods.base import StepContext
from harness.methods.parts import perturbation
from harness.space import NUM_EDGES, NUM_OPS
from harness.train import SearchState, weight_optimizer, weight_step

pytestmark = pytest.mark.usefixtures("float64_default")


# --- SDARTS ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sdarts_rs", "sdarts_adv"])
def test_sdarts_epsilon_ramps_linearly_from_0_03_to_0_3_over_the_epochs(name: str) -> None:
    method = make(name, epochs=50)
    values = {}
    for epoch in (0, 25, 49):
        method.begin_epoch(epoch)
        values[epoch] = method.epsilon
    assert values[0] == pytest.approx(0.03)
    assert values[25] == pytest.approx(0.03 + 0.27 * 0.5)
    assert values[49] == pytest.approx(0.03 + 0.27 * 49 / 50)
    assert method.telemetry() == {"epsilon": values[49]}


def test_clip_to_simplex_clamps_renormalises_and_rescues_an_empty_edge() -> None:
    weights = torch.tensor([[-0.1, 0.5, 1.2, 0.3, 0.0], [-0.3, -0.1, -0.2, -0.4, -0.5]])
    clipped = perturbation.clip_to_simplex(weights)
    assert torch.allclose(clipped[0], torch.tensor([0.0, 0.5, 1.0, 0.3, 0.0]) / 1.8)
    assert torch.equal(clipped[1], F.one_hot(torch.tensor(1), NUM_OPS).to(clipped))


def test_random_perturbation_is_clip_of_uniform_noise_within_epsilon() -> None:
    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    eps = 0.1
    torch.manual_seed(3)
    perturbed = perturbation.random_perturbation(probs, eps)
    torch.manual_seed(3)
    noise = torch.empty_like(probs).uniform_(-eps, eps)
    assert noise.abs().max() <= eps and noise.abs().max() > eps / 2
    assert torch.equal(perturbed, perturbation.clip_to_simplex(probs + noise))
    assert on_simplex(perturbed) and not torch.allclose(perturbed, probs)


def test_sdarts_rs_weight_step_trains_on_the_perturbed_softmax() -> None:
    method = make("sdarts_rs")
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    ctx = context(method, epoch=10)
    torch.manual_seed(5)
    weights = method.perturb_weights(ctx, batch(1), method.weight_step_weights())
    torch.manual_seed(5)
    expected = perturbation.random_perturbation(method.alpha.softmax(-1).detach(), method.epsilon)
    assert torch.equal(weights, expected)
    assert not torch.allclose(weights, method.alpha.softmax(-1))


def test_pgd_one_step_moves_by_2eps_sign_of_the_gradient_then_projects() -> None:
    method = make("sdarts_adv")
    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    ctx, train = context(method), batch(1)
    point = probs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ctx.loss(train, point), point)
    eps = 0.05
    moved = (2 * eps * grad.sign()).clamp(-eps, eps)  # one step of 2ε/1, clamped to the ball
    expected = perturbation.clip_to_simplex(probs + moved)
    found = perturbation.pgd_perturbation(
        lambda w: ctx.loss(train, w), probs, eps, steps=1, random_start=False
    )
    assert torch.allclose(found, expected)


def test_pgd_raises_the_loss_and_stays_on_the_simplex_near_the_clean_weights() -> None:
    method = make("sdarts_adv")
    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    ctx, train = context(method), batch(1)
    eps = 0.05
    found = perturbation.pgd_perturbation(lambda w: ctx.loss(train, w), probs, eps)
    with torch.no_grad():
        assert ctx.loss(train, found) > ctx.loss(train, probs)
    assert on_simplex(found)
    # each move stays in the ε-ball before the per-edge renormalisation, whose sum lies
    # in [1 − 5ε, 1 + 5ε]: |found − p| ≤ ε + 5ε/(1 − 5ε) bounds what clip can add
    assert (found - probs).abs().max() <= eps + 5 * eps / (1 - 5 * eps)


def test_pgd_keeps_the_clean_weights_when_the_attack_ends_lower() -> None:
    calls = []

    def loss(weights: Tensor) -> Tensor:  # the 9th call (after 7 steps) reports a drop
        calls.append(1)
        return (weights * 0).sum() + (1.0 if len(calls) < 9 else -1.0)

    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    assert torch.equal(perturbation.pgd_perturbation(loss, probs, 0.1), probs)
    assert len(calls) == 9


def test_sdarts_adv_attacks_the_batch_of_its_weight_step_in_eval_mode() -> None:
    method = make("sdarts_adv", random_start=False)
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    ctx, train, other = context(method, epoch=30), batch(1), batch(2)
    probs = method.alpha.softmax(-1).detach()
    modes = []
    forward = method.model.forward

    def spy(*args: Any, **kwargs: Any) -> Tensor:
        modes.append(method.model.training)
        return forward(*args, **kwargs)

    method.model.forward = spy  # type: ignore[method-assign]
    found = method.perturb_weights(ctx, train, probs)
    del method.model.forward
    assert modes and not any(modes) and method.model.training  # attack in eval, then back

    def attack(b: Batch) -> Tensor:
        return perturbation.pgd_perturbation(
            lambda w: ctx.loss(b, w), probs, method.epsilon, random_start=False
        )

    assert torch.equal(found, attack(train)) and not torch.equal(found, attack(other))


def test_the_loop_trains_the_weights_on_what_perturb_weights_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    method = make("sdarts_rs")
    sentinel = torch.full((NUM_EDGES, NUM_OPS), 0.2)
    sentinel[:, CONV3] = 0.6
    seen: list[Any] = []

    def perturb(ctx: StepContext, b: Batch, weights: Tensor) -> Tensor:
        seen.append((b, weights))
        return sentinel

    monkeypatch.setattr(method, "perturb_weights", perturb)
    used = []
    forward = method.model.forward

    def spy(x: Tensor, w: Tensor, *args: Any) -> Tensor:
        used.append(w)
        return forward(x, w, *args)

    monkeypatch.setattr(method.model, "forward", spy)
    optimizer, scheduler = weight_optimizer(method.model, method.config)
    data = SimpleNamespace(eval_images=torch.zeros(1))  # autocast reads its device
    state = SearchState(method.model, method, optimizer, scheduler, data)  # type: ignore[arg-type]
    train = batch(1)
    weight_step(state, context(method), train)
    assert len(seen) == 1 and seen[0][0] is train  # the step's own train batch ...
    assert torch.equal(seen[0][1], method.alpha.softmax(-1))  # ... and the drawn weights
    assert len(used) == 1 and used[0] is sentinel
