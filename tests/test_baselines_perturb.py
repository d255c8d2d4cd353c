"""The math of the DARTS-family baselines on a tiny supernet: SDARTS-RS/ADV, DARTS-,
β-DARTS and FairDARTS, and the shared pieces they compose (``methods/parts``).

Each test pins a value or a gradient at a known α, or an order of calls, that a wrong
wiring would change. Which batch each α step uses and the step order are in
``test_wiring.py`` (ALPHA_BATCH, ALPHA_FIRST).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny import Batch, context, make
from torch import Tensor

from harness.methods import method_class
from harness.methods.base import StepContext
from harness.methods.fairdarts import threshold_cell as fairdarts_threshold_cell
from harness.methods.parts import perturbation, regularizers
from harness.space import NUM_EDGES, NUM_OPS, OPS
from harness.supernet import SuperNet, avg_pool3
from harness.train import SearchState, weight_optimizer, weight_step

pytestmark = pytest.mark.usefixtures("float64_default")
SKIP, CONV3 = OPS.index("skip_connect"), OPS.index("nor_conv_3x3")


def batch(seed: int, n: int = 8) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def on_simplex(weights: Tensor) -> bool:
    sums = weights.sum(-1)
    return bool((weights >= 0).all() and torch.allclose(sums, torch.ones_like(sums)))


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


# --- DARTS- ----------------------------------------------------------------------------------
def test_darts_minus_beta_decays_linearly_from_one_to_zero() -> None:
    method = make("darts_minus", epochs=50)
    betas = {}
    for epoch in (0, 25, 49):
        method.begin_epoch(epoch)
        betas[epoch] = method.beta
    assert betas == pytest.approx({0: 1.0, 25: 0.5, 49: 1 / 50})
    half = make("darts_minus", epochs=10, beta0=0.5)
    half.begin_epoch(4)
    assert half.beta == pytest.approx(0.5 * 6 / 10)


def test_darts_minus_weights_are_softmax_plus_beta_on_skip_and_derive_ignores_it() -> None:
    method = make("darts_minus", epochs=10)
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[:, CONV3] = 0.2  # conv leads the softmax ...
        method.alpha[:, SKIP] = 0.1  # ... skip only leads once β is added
    method.begin_epoch(0)
    probs = method.alpha.softmax(-1)
    expected = probs.clone()
    expected[:, SKIP] += 1.0
    assert torch.allclose(method.edge_weights(), expected)
    assert method.derive().ops == ("nor_conv_3x3",) * NUM_EDGES
    assert torch.allclose(method.probabilities(), probs)


def cell_with_explicit_aux_skip(net: SuperNet, x: Tensor, weights: Tensor, beta: float) -> Tensor:
    """The first searched cell as DARTS- writes it: β·x + Σ_o w_o·o(x) on every edge."""
    cell = net.layers[0]
    nodes = [x]
    for target in range(1, 4):
        total = 0
        for k, (t, source) in enumerate(((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))):
            if t != target:
                continue
            h = nodes[source]
            ops = (
                h * 0,
                h,
                cell._conv_op(h, "conv1", k),
                cell._conv_op(h, "conv3", k),
                avg_pool3(h),
            )
            total = total + beta * h + sum(weights[k, o] * ops[o] for o in range(NUM_OPS))
        nodes.append(total)
    return nodes[3]


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_aux_skip_adds_beta_times_the_input_on_every_edge(impl: str) -> None:
    from harness.space import EDGES

    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    net = SuperNet(C=4, N=1, impl=impl)
    x = torch.randn(2, 4, 8, 8)
    probs = torch.randn(NUM_EDGES, NUM_OPS).softmax(-1)
    beta = 0.7
    expected = cell_with_explicit_aux_skip(net, x, probs, beta)
    shifted = perturbation.with_aux_skip(probs, beta)
    got = net._cell_forward(net.layers[0], x, shifted, None, False)
    assert torch.allclose(got, expected, atol=1e-12)
    plain = net._cell_forward(net.layers[0], x, probs, None, False)
    assert not torch.allclose(plain, expected, atol=1e-3)


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


# --- FairDARTS ----------------------------------------------------------------------------------
def test_fairdarts_weights_are_independent_sigmoids_starting_at_one_half() -> None:
    method = make("fairdarts")
    assert torch.equal(method.alpha.detach(), torch.zeros(NUM_EDGES, NUM_OPS))
    with torch.no_grad():
        method.alpha.fill_(math.log(3))  # σ = 3/4 for every op: no softmax coupling
    assert torch.allclose(method.edge_weights(), torch.full((NUM_EDGES, NUM_OPS), 0.75))


def test_zero_one_loss_value_and_gradient_at_a_known_alpha() -> None:
    alpha = torch.full((NUM_EDGES, NUM_OPS), math.log(3), requires_grad=True)
    value = regularizers.zero_one(alpha.sigmoid())
    assert float(value.detach()) == pytest.approx(-0.0625)  # −mean((3/4 − 1/2)²)
    (grad,) = torch.autograd.grad(value, alpha)
    n = NUM_EDGES * NUM_OPS
    assert torch.allclose(grad, torch.full_like(grad, -2 * 0.25 * 0.75 * 0.25 / n))
    at_half = torch.zeros(NUM_EDGES, NUM_OPS, requires_grad=True)
    (flat,) = torch.autograd.grad(regularizers.zero_one(at_half.sigmoid()), at_half)
    assert float(flat.abs().max()) == 0.0  # σ = 1/2 is the loss's maximum


# σ(α) of FairDARTS after each of the 4 epochs of a real search, rounded to 4 decimals:
# `--preset ci --methods fairdarts --seeds 0` (float64, 512 + 512 images), recorded at
# this commit's parent by building the run's state (search.build_state) and running its
# epochs (search.train_epoch) as Search does, then reading method.alpha.sigmoid(). Edges in
# NB201 order, ops none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.
FAIRDARTS_CI_SEED0_SIGMA = [
    [
        [0.5, 0.4321, 0.4339, 0.6225, 0.4427],
        [0.5, 0.3452, 0.6028, 0.3495, 0.3568],
        [0.5, 0.3437, 0.3495, 0.3429, 0.3483],
        [0.5, 0.341, 0.5534, 0.6536, 0.3555],
        [0.5, 0.3425, 0.6413, 0.3535, 0.3478],
        [0.5, 0.3846, 0.3606, 0.3606, 0.4019],
    ],
    [
        [0.5, 0.304, 0.2601, 0.7744, 0.3588],
        [0.5, 0.2017, 0.7659, 0.2067, 0.2041],
        [0.5, 0.2017, 0.2062, 0.2, 0.2026],
        [0.5, 0.2018, 0.6705, 0.7989, 0.2056],
        [0.5, 0.2054, 0.7776, 0.2154, 0.2058],
        [0.5, 0.231, 0.2111, 0.2164, 0.2397],
    ],
    [
        [0.5, 0.185, 0.1413, 0.8659, 0.2298],
        [0.5, 0.1265, 0.8612, 0.1277, 0.1262],
        [0.5, 0.125, 0.1274, 0.126, 0.125],
        [0.5, 0.1334, 0.8037, 0.8756, 0.1359],
        [0.5, 0.1355, 0.8623, 0.1409, 0.1364],
        [0.5, 0.1407, 0.1304, 0.1313, 0.1424],
    ],
    [
        [0.5, 0.1144, 0.0882, 0.9106, 0.136],
        [0.5, 0.0849, 0.9095, 0.0855, 0.0841],
        [0.5, 0.0828, 0.0854, 0.0856, 0.0822],
        [0.5, 0.0924, 0.885, 0.9178, 0.0936],
        [0.5, 0.0909, 0.9105, 0.0964, 0.0913],
        [0.5, 0.089, 0.087, 0.0879, 0.089],
    ],
]
C1, C3, NO = "nor_conv_1x1", "nor_conv_3x3", "none"
ARGMAX_EARLY = (C3, C1, NO, C3, C1, NO)  # edges whose real ops all fall below ½: `none`


@pytest.mark.parametrize(
    ("epoch", "threshold_cell", "argmax_cell"),
    [
        (1, (NO,) * 6, ARGMAX_EARLY),  # every real op below 0.85: the code keeps none
        (2, (NO,) * 6, ARGMAX_EARLY),
        (3, ARGMAX_EARLY, ARGMAX_EARLY),  # 0.8659, 0.8612, 0.8756, 0.8623 pass 0.85
        (4, ARGMAX_EARLY, ARGMAX_EARLY),
    ],
)
def test_fairdarts_derives_the_codes_threshold_sparse_on_a_real_trajectory(
    epoch: int, threshold_cell: tuple[str, ...], argmax_cell: tuple[str, ...]
) -> None:
    """The default is the code's ``threshold_sparse`` (real op with σ ≥ 0.85, else the
    edge is dropped); ``derive=argmax`` (the old default) keeps an op from σ > ½."""
    sigma = torch.tensor(FAIRDARTS_CI_SEED0_SIGMA[epoch - 1], dtype=torch.float64)
    assert (sigma[:, OPS.index("none")] == 0.5).all()  # σ(α_none) never moves
    for derive, expected in (("threshold", threshold_cell), ("argmax", argmax_cell)):
        method = make("fairdarts") if derive == "threshold" else make("fairdarts", derive=derive)
        with torch.no_grad():
            method.alpha.copy_(torch.logit(sigma))
        assert method.derive().ops == expected, derive


def test_fairdarts_alpha_none_gets_no_gradient_in_a_real_step() -> None:
    """Why σ(α_none) stays ½: a real α step (valid batch, zero-one loss, Adam's decay)
    leaves α_none at exactly 0 while every real op moves."""
    method = make("fairdarts")
    ctx = context(method)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 3, 8, 8, generator=generator), torch.arange(8) % 10)
    for _ in range(3):
        method.arch_step(ctx, batch, batch)
    alpha = method.alpha.detach()
    assert (alpha[:, OPS.index("none")] == 0).all() and (alpha[:, 1:] != 0).all()


def test_fairdarts_threshold_is_inclusive_and_ignores_none() -> None:
    sigma = torch.full((NUM_EDGES, NUM_OPS), 0.2, dtype=torch.float64)
    sigma[:, OPS.index("none")] = 0.5  # as on NB201: σ(α_none) stays ½
    sigma[0, CONV3] = 0.85  # the code keeps W >= op_threshold
    sigma[1, CONV3] = 0.4  # below ½ as well as 0.85: dropped
    assert fairdarts_threshold_cell(sigma, 0.85).ops[:2] == ("nor_conv_3x3", "none")
    assert fairdarts_threshold_cell(sigma, 0.3).ops[1] == "nor_conv_3x3"  # none (½) ignored


def test_fairdarts_derive_argmax_and_threshold_semantics() -> None:
    logit = math.log  # σ(log(p/(1−p))) = p
    alpha = torch.full((NUM_EDGES, NUM_OPS), logit(0.1 / 0.9))
    alpha[0, CONV3] = logit(0.9 / 0.1)  # above 0.85: kept by both
    alpha[1, CONV3] = logit(0.8 / 0.2)  # the largest, but below 0.85
    alpha[1, SKIP] = logit(0.7 / 0.3)
    for name, expected_edge1 in (("argmax", "nor_conv_3x3"), ("threshold", NO)):
        method = make("fairdarts", derive=name)
        with torch.no_grad():
            method.alpha.copy_(alpha)
        cell = method.derive()
        assert cell.ops[0] == "nor_conv_3x3" and cell.ops[1] == expected_edge1, name
    threshold = make("fairdarts", derive="threshold")
    with torch.no_grad():
        threshold.alpha.copy_(alpha)
    assert threshold.derive().ops[2:] == ("none",) * 4  # no op above 0.85
    assert threshold.telemetry()["above_threshold"] == 1
