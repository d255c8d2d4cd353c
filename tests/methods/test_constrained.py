"""Constrained optimisation / DARTS-PRIME: the dynamic and fixed schedules, CRB pruning,
the prox penalty by hand, ADMM's updates, checkpoints and ``dyno_split``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from exact_helpers import _saved, at_epoch, make, make_batch
from smoke_helpers import run_cli

from harness.methods import method_class
from harness.methods.constrained import projection, prox_penalty
from harness.space import NUM_OPS

pytestmark = pytest.mark.usefixtures("float64_default")


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


def test_constrained_decide_on_device_takes_the_host_schedules_steps_without_a_read() -> None:
    """``decide=device``: F̄ and θ stay on the device, every step computes the α step and
    keeps it only where the schedule takes it; over the same grad norms it ends where
    the host schedule ends — θ, F̄, α and Adam's state bit for bit — having read nothing."""
    runs = []
    for decide in ("host", "device"):
        torch.manual_seed(0)
        method, ctx = make("constrained", decide=decide)
        norms = [0.5, 0.5, 2.0, 3.0, 3.0, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
        taken = []
        for g in norms:
            before = method.alpha.detach().clone()
            method.arch_step(ctx, make_batch(), make_batch(seed=2))
            taken.append(not torch.equal(method.alpha, before))
            method.after_weight_step(ctx, torch.tensor(g))
        assert isinstance(method.threshold, torch.Tensor) == (decide == "device")
        state = method.optimizer.state[method.alpha]
        runs.append((taken, float(method.threshold), float(method.fisher), method.alpha, state))
        assert method.telemetry()["alpha_steps"] == sum(taken)
    (h_taken, h_theta, h_fisher, h_alpha, h_state), (d_taken, *device) = runs
    assert h_taken == d_taken and any(h_taken) and not all(h_taken)
    assert device[:2] == [h_theta, h_fisher]
    assert torch.equal(device[2], h_alpha)
    assert all(
        torch.equal(torch.as_tensor(device[3][k]), torch.as_tensor(v)) for k, v in h_state.items()
    )


def test_constrained_decide_on_device_refuses_what_reads_the_host() -> None:
    from harness.errors import UsageError

    for options in ({"activation": "crb"}, {"regularizer": "admm"}):
        with pytest.raises(UsageError, match="decide=device needs activation=softmax"):
            make("constrained", decide="device", **options)


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


def test_constrained_decide_on_device_resumes_its_schedule_on_the_device() -> None:
    """A checkpoint holds F̄ and θ as numbers; a ``decide=device`` method loads them back
    onto the device, equal to the last bit, and goes on deciding there."""
    method, ctx = make("constrained", decide="device")
    for g in (0.1, 0.2, 5.0):
        method.arch_step(ctx, make_batch(), make_batch(seed=2))
        method.after_weight_step(ctx, torch.tensor(g))
    state = torch.load(_saved(method.state_dict()), weights_only=False)
    fresh, _ = make("constrained", decide="device")
    fresh.load_state_dict(state)
    assert isinstance(fresh.threshold, torch.Tensor) and isinstance(fresh.fisher, torch.Tensor)
    assert float(fresh.threshold) == float(method.threshold) and fresh.calls == method.calls
    assert float(fresh.fisher) == float(method.fisher)
    assert isinstance(fresh.decide(0), torch.Tensor)


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
