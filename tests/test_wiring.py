"""Wiring: which batch each update uses, the order of the two steps, and what is derived.

Each test here fails on a specific wrong wiring that the method-level tests in
``tests/methods/`` would not see: an α loss on the train batch instead of the
valid batch, a loop that ignores ``alpha_first``, a step order flipped, a
derivation that drops ``none``, a weight step on the wrong weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny import TRAIN_LABELS, VALID_LABELS, Batch, context, make, tiny_state
from torch import Tensor

from harness import search, train
from harness.methods import registry
from harness.methods.base import Method, StepContext
from harness.methods.da2s import edge_entropy
from harness.methods.rdarts import stage_distance
from harness.space import NUM_OPS

STEPS = 3  # batches per half in tiny.tiny_state

# The order of the two steps per iteration, from each method's source (methods-spec):
# DARTS-V1 w then α; DARTS-V2 α (unrolled) then w; Amended as V2 [I]; DARTS-PRIME decides
# and steps α before w; DA2S single-level steps α first (one joint backward in the code).
# GDAS (AutoDL) w then α; SNAS, DrNAS and PC-DARTS as DrNAS's NB201 code runs them, α then w.
ALPHA_FIRST = {
    ("darts", ()): False,
    ("darts2", ()): True,
    ("amended", ()): True,
    ("cdao", ()): False,
    ("da2s", ()): False,
    ("da2s", (("single_level", True),)): True,
    ("constrained", ()): True,
    ("rdarts", ()): False,
    # SDARTS, DARTS-, β-DARTS and FairDARTS code: architect.step before the weight update.
    ("sdarts_rs", ()): True,
    ("sdarts_adv", ()): True,
    ("darts_minus", ()): True,
    ("beta_darts", ()): True,
    ("fairdarts", ()): True,
    ("rsps", ()): False,  # no α step to speak of: its path is drawn in the weight step
    ("gdas", ()): False,
    ("snas", ()): True,
    ("drnas", ()): True,
    ("drnas", (("progressive", True),)): True,
    ("pcdarts", ()): True,
}


pytestmark = pytest.mark.usefixtures("float64_default")


def batch(labels: range, seed: int, n: int = 8) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    index = torch.randint(0, len(labels), (n,), generator=generator)
    return images, torch.tensor(list(labels))[index]


def gradient(method: Method, loss: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(loss, method.arch_parameters())
    return grad


def close(a: Tensor, b: Tensor, rtol: float = 1e-9) -> bool:
    return bool((a - b).norm() <= rtol * b.norm())


# --- which batch the α step uses --------------------------------------------------------
def darts_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    return ctx.loss(batch, method.alpha.softmax(-1))


def cdao_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    probs = method.alpha.softmax(-1)
    hard = F.one_hot(probs.argmax(-1), NUM_OPS).to(probs.dtype)
    blended = probs + method.lam * (hard - probs).detach()
    divergence = ((probs - hard) ** 2).sum(-1).mean()  # μ = 1 by default
    return ctx.loss(batch, blended) + divergence


def da2s_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    x = 2 * method.alpha
    probs = torch.where(x < -1, x**3, x).softmax(-1)
    return ctx.loss(batch, probs) + method.lam * edge_entropy(probs)


def constrained_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    probs = method.alpha.softmax(-1)
    return ctx.loss(batch, probs) + method.penalty(ctx, probs)


def rdarts_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    probs = method.alpha.softmax(-1)
    ce, reg = ctx.loss(batch, probs), stage_distance(probs)
    return ce + 0.1 * ce.detach() / (reg.detach() + 1e-12) * reg


def darts_minus_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    probs = method.alpha.softmax(-1)
    skip = F.one_hot(torch.tensor(1), NUM_OPS).to(probs)  # β·x = β more weight on skip
    return ctx.loss(batch, probs + (1 - method.epoch / method.config.epochs) * skip)


def beta_darts_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    lam = 50.0 * method.epoch / method.config.epochs
    return ctx.loss(batch, method.alpha.softmax(-1)) + lam * method.alpha.logsumexp(-1).mean()


def fairdarts_loss(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    weights = method.alpha.sigmoid()
    return ctx.loss(batch, weights) - 10.0 * ((weights - 0.5) ** 2).mean()


LossFn = Callable[[Method, StepContext, Batch], Tensor]
ALPHA_BATCH: list[tuple[str, dict[str, Any], int, int, LossFn, str]] = [
    # (method, options, epoch, step, the loss α descends, the batch it must use)
    ("darts", {}, 0, 0, darts_loss, "valid"),
    ("cdao", {}, 0, 0, cdao_loss, "valid"),  # λ_t = 0
    ("cdao", {}, 30, 0, cdao_loss, "valid"),  # λ_t = 2/3: the blended point
    ("da2s", {}, 40, 0, da2s_loss, "valid"),  # bilevel, entropy weight on
    ("da2s", {"single_level": True}, 40, 5, da2s_loss, "train"),
    ("constrained", {"schedule": "every"}, 10, 3, constrained_loss, "valid"),
    ("rdarts", {}, 0, 0, rdarts_loss, "valid"),
    ("sdarts_rs", {}, 20, 0, darts_loss, "valid"),  # α at the clean softmax
    ("sdarts_adv", {}, 20, 0, darts_loss, "valid"),
    ("darts_minus", {}, 20, 0, darts_minus_loss, "valid"),  # β = 0.6 on the skip
    ("beta_darts", {}, 20, 0, beta_darts_loss, "valid"),  # λ = 20
    ("fairdarts", {}, 0, 0, fairdarts_loss, "valid"),
    ("pcdarts", {}, 0, 0, darts_loss, "valid"),  # on the partial-channel supernet
]


@pytest.mark.parametrize(
    ("name", "options", "epoch", "step", "loss_fn", "which"),
    ALPHA_BATCH,
    ids=[f"{c[0]}-{c[5]}-epoch{c[2]}" for c in ALPHA_BATCH],
)
def test_alpha_step_descends_its_loss_on_the_right_batch(
    name: str, options: dict[str, Any], epoch: int, step: int, loss_fn: LossFn, which: str
) -> None:
    method = make(name, **options)
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    ctx = context(method, epoch, step)
    train, valid = batch(TRAIN_LABELS, 1), batch(VALID_LABELS, 2)
    right, wrong = (train, valid) if which == "train" else (valid, train)
    expected = gradient(method, loss_fn(method, ctx, right))
    other = gradient(method, loss_fn(method, ctx, wrong))
    assert not close(other, expected, rtol=1e-2)  # the two batches really differ
    method.arch_step(ctx, train, valid)
    assert method.alpha.grad is not None and close(method.alpha.grad, expected)


# --- the order of the two steps, through the loop ---------------------------------------
def role(labels: Tensor) -> str:
    if set(labels.tolist()) <= set(TRAIN_LABELS):
        return "train"
    return "valid" if set(labels.tolist()) <= set(VALID_LABELS) else "mixed"


@pytest.mark.parametrize(("name", "options"), list(ALPHA_FIRST), ids=str)
def test_the_loop_orders_the_steps_and_hands_out_the_batches(
    name: str, options: tuple[tuple[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    method = make(name, epochs=10, **dict(options))
    assert method.alpha_first == ALPHA_FIRST[(name, options)]
    events: list[tuple[str, ...]] = []
    arch_step, weight_step = method.arch_step, train.weight_step

    def record_alpha(ctx: StepContext, train: Batch, valid: Batch) -> None:
        events.append(("alpha", role(train[1]), role(valid[1]), str(ctx.step)))
        arch_step(ctx, train, valid)

    def record_weights(state: train.SearchState, ctx: StepContext, batch: Batch) -> Tensor:
        events.append(("w", role(batch[1]), str(ctx.step)))
        return weight_step(state, ctx, batch)

    monkeypatch.setattr(method, "arch_step", record_alpha)
    monkeypatch.setattr(train, "weight_step", record_weights)
    search.train_epoch(tiny_state(method), 10)

    alpha = [("alpha", "train", "valid", str(s)) for s in range(STEPS)]
    weights = [("w", "train", str(s)) for s in range(STEPS)]
    pairs = zip(alpha, weights, strict=True)
    first_alpha = ALPHA_FIRST[(name, options)]
    expected = [e for a, w in pairs for e in ((a, w) if first_alpha else (w, a))]
    assert events == expected


def test_every_registered_method_has_a_pinned_order() -> None:
    assert {name for name, _ in ALPHA_FIRST} == set(registry())


# --- what the weight step trains on ------------------------------------------------------
def test_cdao_default_weight_step_trains_on_the_continuous_weights() -> None:
    method = make("cdao")
    with torch.no_grad():
        method.alpha.normal_(0, 1)
    method.begin_epoch(45)  # λ_t = 1: the α step works at the one-hot point
    assert method.lam == 1.0
    probs = method.alpha.softmax(-1).detach()
    assert torch.equal(method.weight_step_weights(), probs)  # p, never the blend (CDAO-ST)


# --- derivation keeps `none` --------------------------------------------------------------
@pytest.mark.parametrize(
    "name", sorted(n for n, cls in registry().items() if cls.derives_from_alpha)
)
def test_derive_takes_none_where_it_leads(name: str) -> None:
    # fairdarts's default, the code's threshold_sparse, leaves `none` out of its argmax
    # (tests/methods/test_fairdarts.py); its argmax option is the rule tested here
    method = make(name, **({"derive": "argmax"} if name == "fairdarts" else {}))
    with torch.no_grad():
        method.alpha.zero_()
        method.alpha[..., 3] = 0.5  # nor_conv_3x3 leads every edge ...
        method.alpha[..., 0, 0] = 1.0  # ... except edge 0, where `none` leads
    cell = method.derive()
    assert cell.ops == ("none",) + ("nor_conv_3x3",) * 5
    weights = method.discrete_weights()  # the one-hot cell of the discretization gap
    assert weights[0].argmax() == 0 and weights[0, 0] == 1


# --- schedules at chosen epochs -------------------------------------------------------------
def test_da2s_single_level_alpha_lr_is_zero_before_the_interval_and_a_lr_after() -> None:
    method = make("da2s", epochs=10, single_level=True)  # interval 0.3·10 = epoch 3
    train, valid = batch(TRAIN_LABELS, 1), batch(VALID_LABELS, 2)
    lrs = {}
    for epoch in (0, 2, 3, 9):
        method.arch_step(context(method, epoch, step=0), train, valid)
        lrs[epoch] = method.optimizer.param_groups[0]["lr"]
    assert lrs == {0: 0.0, 2: 0.0, 3: method.config.a_lr, 9: method.config.a_lr}
    assert method.telemetry()["alpha_steps"] == 1  # only epoch 9's step of this epoch moved α
