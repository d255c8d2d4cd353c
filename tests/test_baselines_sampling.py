"""The sampling and partial-channel baselines: GDAS, SNAS, DrNAS, PC-DARTS.

Each test checks one piece of a method's math against an independent computation on a
tiny float64 supernet, so a wrong wiring fails: the draw (re-made from the same seed),
the temperature schedule, which batch and which forward the α step uses, DrNAS's
regulariser and pathwise gradient, and its progressive stage change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config
from harness.methods import method_class
from harness.methods.base import Method, StepContext
from harness.methods.drnas import kl_to_uniform, widen_partial_channels
from harness.methods.parts.sampling import dirichlet_sample, linear_temperature
from harness.supernet import SearchCell, SuperNet

Batch = tuple[Tensor, Tensor]
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("float64_default")


class ExactContext(StepContext):
    """The loop's context with a loss that keeps float64 logits."""

    def loss(
        self,
        batch: Batch,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
    ) -> Tensor:
        images, labels = batch
        return F.cross_entropy(self.model(images, weights, active, straight_through), labels)


def make(name: str, epochs: int = 50, C: int = 4, **options: Any) -> Method:
    cls = method_class(name)
    opts = cls.Options(**options)
    model = SuperNet(C=C, N=1, **cls.supernet_options(opts))
    method = cls(model, Config(epochs=epochs, dtype="float64"), opts, CPU)
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)  # away from uniform, so every check has a signal
    return method


def context(
    method: Method, epoch: int = 0, step: int = 0, optimizer: torch.optim.SGD | None = None
) -> StepContext:
    method.begin_epoch(epoch)
    if optimizer is None:
        optimizer = torch.optim.SGD(method.model.parameters(), lr=0.025, momentum=0.9)
    return ExactContext(method.model, optimizer, epoch, step, 10, method.config.epochs)


def batch(seed: int, n: int = 8) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def gumbel(shape: tuple[int, ...], seed: int) -> Tensor:
    """The noise the samplers draw after ``torch.manual_seed(seed)``, re-drawn here."""
    torch.manual_seed(seed)
    return -torch.empty(shape).exponential_().log()


def alpha_grad(method: Method, loss: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(loss, method.arch_parameters())
    return grad


def close(a: Tensor, b: Tensor, rtol: float = 1e-9) -> bool:
    return bool((a - b).norm() <= rtol * b.norm())


# --- temperature schedules -----------------------------------------------------------------
def test_gdas_tau_is_autodl_linear_10_to_0_1_reached_at_the_last_epoch() -> None:
    method = make("gdas", epochs=250)
    taus = {}
    for epoch in (0, 1, 124, 249):
        method.begin_epoch(epoch)
        taus[epoch] = method.tau
    assert taus[0] == 10.0 and taus[249] == pytest.approx(0.1, abs=1e-12)
    assert taus[1] == pytest.approx(10 - 9.9 / 249)
    assert taus[124] == pytest.approx(10 - 9.9 * 124 / 249)
    assert method.telemetry() == {"tau": method.tau}


def test_snas_tau_is_drnas_linear_10_to_1_never_reaching_1() -> None:
    method = make("snas", epochs=100)
    method.begin_epoch(0)
    assert method.tau == 10.0
    method.begin_epoch(99)
    assert method.tau == pytest.approx(10 - 9 * 99 / 100)  # 1.09: the code's last τ
    assert linear_temperature(3, 10, 2.0, 1.0) == pytest.approx(1.7)


# --- GDAS ----------------------------------------------------------------------------------
def test_gdas_sample_is_the_gumbel_max_cell_with_straight_through_weights() -> None:
    method = make("gdas", epochs=10)
    method.begin_epoch(4)
    torch.manual_seed(3)
    weights, active = method.sample()
    g = gumbel((6, 5), 3)
    probs = ((method.alpha.log_softmax(-1) + g) / method.tau).softmax(-1)
    assert torch.equal(active, F.one_hot(probs.argmax(-1), 5).bool())
    torch.testing.assert_close(weights, active.double(), rtol=0, atol=1e-15)  # value: one-hot
    # gradient: that of p̃ (straight through), to every α entry
    direction = torch.randn(6, 5)
    (ours,) = torch.autograd.grad((weights * direction).sum(), method.alpha)
    (theirs,) = torch.autograd.grad((probs * direction).sum(), method.alpha)
    torch.testing.assert_close(ours, theirs)


def test_gdas_alpha_step_is_the_straight_through_gradient_on_the_valid_batch() -> None:
    method = make("gdas", epochs=10)
    ctx = context(method, epoch=2)
    train, valid = batch(1), batch(2)
    reference = SuperNet(C=4, N=1, impl="reference")
    reference.load_state_dict(method.model.state_dict())

    def expected(data: Batch, straight_through: bool) -> Tensor:
        g = gumbel((6, 5), 11)
        probs = ((method.alpha.log_softmax(-1) + g) / method.tau).softmax(-1)
        hard = F.one_hot(probs.argmax(-1), 5).double()
        weights = hard - probs.detach() + probs
        logits = reference(data[0], weights, hard.bool(), straight_through)
        return alpha_grad(method, F.cross_entropy(logits, data[1]))

    right = expected(valid, True)
    assert not close(expected(train, True), right, 1e-2)  # the batches differ
    assert not close(expected(valid, False), right, 1e-2)  # the constants matter
    torch.manual_seed(11)
    method.arch_step(ctx, train, valid)
    assert method.alpha.grad is not None and close(method.alpha.grad, right, 1e-8)


def test_gdas_weight_step_computes_one_fresh_sampled_cell() -> None:
    method = make("gdas")
    draws = []
    for _ in range(3):
        weights, active = method.weight_step_inputs()
        assert active is not None and not weights.requires_grad
        assert torch.equal(active.sum(-1), torch.ones(6, dtype=torch.long))
        torch.testing.assert_close(weights, active.double(), rtol=0, atol=1e-15)
        draws.append(active)
    assert not all(torch.equal(draws[0], d) for d in draws[1:])  # a new cell per step
    assert method.active_mask() is None  # the gap's continuous supernet stays dense
    torch.testing.assert_close(method.edge_weights(), method.alpha.softmax(-1))


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


# --- DrNAS ---------------------------------------------------------------------------------
def kl_by_hand(beta: Tensor) -> Tensor:
    """Σ_e KL(Dir(β_e) ‖ Dir(1)) = lnΓ(β₀) − Σ lnΓ(β_i) − lnΓ(K) + Σ (β_i − 1)(ψ(β_i) − ψ(β₀))."""
    b0 = beta.sum(-1)
    k = beta.shape[-1]
    digamma_gap = torch.digamma(beta) - torch.digamma(b0)[:, None]
    per_edge = (
        torch.lgamma(b0)
        - torch.lgamma(beta).sum(-1)
        - torch.lgamma(torch.tensor(float(k)))
        + ((beta - 1) * digamma_gap).sum(-1)
    )
    return per_edge.sum()


def test_drnas_kl_regularizer_value_and_gradient_by_hand() -> None:
    method = make("drnas", reg_type="kl", reg_scale=0.5)
    theta = method.alpha.detach()
    beta = F.elu(theta) + 1
    reg = method.regularizer()
    torch.testing.assert_close(reg, 0.5 * kl_by_hand(beta))
    torch.testing.assert_close(kl_to_uniform(beta), kl_by_hand(beta))
    # ∂KL/∂β_i = (β_i − 1)ψ'(β_i) − (β₀ − K)ψ'(β₀); dβ/dθ = 1 (θ > 0) or e^θ
    b0 = beta.sum(-1, keepdim=True)
    d_beta = (beta - 1) * torch.polygamma(1, beta) - (b0 - 5) * torch.polygamma(1, b0)
    d_theta = torch.where(theta > 0, torch.ones_like(theta), theta.exp())
    torch.testing.assert_close(alpha_grad(method, reg), 0.5 * d_beta * d_theta)
    assert method.optimizer.param_groups[0]["weight_decay"] == 0.0  # KL replaces the L2


def test_drnas_l2_is_the_alpha_weight_decay_and_adds_no_loss() -> None:
    method = make("drnas")
    assert method.optimizer.param_groups[0]["weight_decay"] == method.config.a_weight_decay
    assert float(method.regularizer()) == 0.0


def test_drnas_rsample_gives_pathwise_gradients_of_the_mean() -> None:
    """E[∇_β c·w] = ∇_β c·E[w] = ∇_β c·β/β₀: the sample is differentiable and unbiased."""
    beta = torch.tensor([0.7, 1.3, 2.0, 0.9, 1.6], requires_grad=True)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])
    torch.manual_seed(0)
    samples = dirichlet_sample(beta.expand(20000, 5))
    assert samples.requires_grad
    (mc,) = torch.autograd.grad((samples * c).sum(-1).mean(), beta)
    (exact,) = torch.autograd.grad((c * beta / beta.sum()).sum(), beta)
    torch.testing.assert_close(mc, exact, rtol=0.05, atol=0.01)


def test_drnas_weights_are_dirichlet_samples_and_the_mean_is_continuous() -> None:
    method = make("drnas")
    beta = F.elu(method.alpha.detach()) + 1
    torch.testing.assert_close(method.edge_weights(), beta / beta.sum(-1, keepdim=True))
    torch.manual_seed(2)
    sample = method.sample()
    torch.manual_seed(2)
    expected = torch.distributions.Dirichlet(beta).rsample()
    torch.testing.assert_close(sample.detach(), expected)
    torch.testing.assert_close(sample.sum(-1), torch.ones(6))


def test_drnas_alpha_step_uses_a_sample_on_the_valid_batch_plus_the_regularizer() -> None:
    method = make("drnas", reg_type="kl")
    ctx = context(method)
    train, valid = batch(1), batch(2)

    def expected(data: Batch) -> Tensor:
        torch.manual_seed(6)
        loss = ctx.loss(data, method.sample()) + method.regularizer()
        return alpha_grad(method, loss)

    right = expected(valid)
    assert not close(expected(train), right, 1e-2)
    torch.manual_seed(6)
    method.arch_step(ctx, train, valid)
    assert method.alpha.grad is not None and close(method.alpha.grad, right)


def test_drnas_progressive_prunes_widens_and_freezes_alpha_per_stage() -> None:
    method = make("drnas", epochs=10, C=8, progressive=True)  # stages of 5, warm-up 1
    model = method.model
    assert model.partial_channels == 4
    train, valid = batch(1), batch(2)
    ctx = context(method, epoch=0)
    start = method.alpha.detach().clone()
    method.arch_step(ctx, train, valid)  # stage-1 warm-up: α frozen
    assert torch.equal(method.alpha.detach(), start)
    ctx = context(method, epoch=1)
    method.arch_step(ctx, train, valid)
    assert not torch.equal(method.alpha.detach(), start)

    # one weight step, so that momentum buffers exist and get widened
    weights, active = method.weight_step_inputs()
    ctx.w_optimizer.zero_grad()
    F.cross_entropy(model(train[0], weights, active), train[1]).backward()
    ctx.w_optimizer.step()
    cell = next(m for m in model.layers if isinstance(m, SearchCell))
    old_kernel = cell.conv3_weight.detach()[:, :2, :2].clone()
    theta = method.alpha.detach().clone()

    torch.manual_seed(9)
    ctx = context(method, epoch=5, optimizer=ctx.w_optimizer)
    method.arch_step(ctx, train, valid)  # the first step of stage 2: prune, widen, warm-up
    keep = theta.topk(3, -1).indices
    assert method.mask is not None and torch.equal(
        method.mask, torch.zeros(6, 5, dtype=torch.bool).scatter(-1, keep, True)
    )
    assert torch.equal(method.alpha.detach()[~method.mask], torch.zeros(12))
    assert torch.equal(method.alpha.detach()[method.mask], theta[method.mask])  # α frozen
    assert model.partial_channels == 2 and cell.op_channels == 4
    kernel = cell.conv3_weight.detach()
    assert torch.equal(kernel[:, :2, :2], old_kernel)  # the old block stays
    for slot in range(6):  # every new input column, and then row, copies an old one
        block = kernel[slot, :4, :4]
        for j in (2, 3):
            assert any(torch.equal(block[:2, j], block[:2, i]) for i in (0, 1))
            assert any(torch.equal(block[j], block[i]) for i in (0, 1))
    momentum = ctx.w_optimizer.state[cell.conv3_weight]["momentum_buffer"]
    for slot in range(6):
        assert any(torch.equal(momentum[slot, 2, :4], momentum[slot, i, :4]) for i in (0, 1))

    sample = method.sample()
    assert torch.equal(sample[~method.mask], torch.zeros(12))
    torch.testing.assert_close(sample.sum(-1), torch.ones(6))
    assert torch.equal(method.active_mask(), method.mask)
    assert method.derive().op_indices == tuple(
        int(i) for i in (method.alpha.detach() + 1e6 * method.mask).argmax(-1)
    )

    # a resumed run rebuilds K from the checkpointed stage
    fresh = make("drnas", epochs=10, C=8, progressive=True)
    fresh.load_state_dict(method.state_dict())
    assert fresh.model.partial_channels == 2 and torch.equal(fresh.mask, method.mask)


def test_widen_partial_channels_needs_a_smaller_k() -> None:
    model = SuperNet(C=8, N=1, partial_channels=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    widen_partial_channels(model, optimizer, 1)
    assert model.partial_channels == 1


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


# --- published protocols ---------------------------------------------------------------------
AUTODL = {"epochs": 50, "w_weight_decay": 5e-4, "w_nesterov": True}
AUTODL_DATA = {"split": "nb201", "track_running_stats": False}
LINEAGE_2 = {
    "epochs": 100,
    "w_weight_decay": 3e-4,
    "w_nesterov": False,
    "split": "halves",
    "track_running_stats": True,
}
PAPER_PROTOCOLS = {  # docs/methods.md, "The protocol `paper` runs", with each source line
    "darts": {**AUTODL, **AUTODL_DATA},
    "gdas": {**AUTODL, **AUTODL_DATA, "epochs": 250},  # AutoDL GDAS.config
    "rsps": {**AUTODL, **AUTODL_DATA, "epochs": 250},  # AutoDL RANDOM.config
    "snas": LINEAGE_2,  # DrNAS 201-space/train_search.py
    "drnas": LINEAGE_2,
    "pcdarts": LINEAGE_2,
    "beta_darts": LINEAGE_2,  # Beta-DARTS nasbench201/train_search.py
    "sdarts_rs": LINEAGE_2,  # SmoothDARTS nasbench201/train_search.py
    "sdarts_adv": LINEAGE_2,
    "darts_minus": {**AUTODL, **AUTODL_DATA},  # DARTS- published no NB201 search
    "fairdarts": {**AUTODL, **AUTODL_DATA},  # FairDARTS published no NB201 search
}


@pytest.mark.parametrize("name", sorted(PAPER_PROTOCOLS))
def test_paper_protocols_apply_under_the_paper_preset_only(name: str) -> None:
    from harness.config import resolve

    options = method_class(name).Options
    paper = resolve("paper", name, {}, options)
    fields = PAPER_PROTOCOLS[name]
    assert {k: getattr(paper, k) for k in fields} == fields, name
    smoke = resolve("smoke", name, {}, options)
    assert (smoke.w_weight_decay, smoke.epochs, smoke.split) == (5e-4, 3, "nb201"), name
    assert smoke.track_running_stats is False


def test_the_original_pc_darts_protocol_is_a_valid_set_line() -> None:
    """docs/methods.md's `--set` line for PC-DARTS's own protocol resolves as written."""
    from harness.config import resolve

    line = "epochs=50 batch_size=256 w_lr=0.1 w_lr_min=0 w_weight_decay=3e-4"
    line += " w_nesterov=false a_lr=6e-4 warmup_epochs=15 split=halves"
    overrides = dict(item.split("=") for item in line.split())
    config = resolve("paper", "pcdarts", overrides, method_class("pcdarts").Options)
    assert (config.epochs, config.batch_size, config.warmup_epochs) == (50, 256, 15)
    assert (config.a_lr, config.w_lr, config.w_lr_min, config.split) == (6e-4, 0.1, 0, "halves")
    assert config.track_running_stats is True  # still DrNAS's lineage-2 BN under paper


def test_gdas_weight_step_leaves_unsampled_conv_rows_and_their_momentum_alone() -> None:
    """AutoDL's SGD skips the modules of ops not sampled (no gradient): no weight decay,
    no momentum for them; ours restores those rows of the stacked kernels."""
    from harness.data import SearchData
    from harness.supernet import CONV3, SLOT
    from harness.train import SearchState, weight_step

    method = make("gdas")
    with torch.no_grad():
        method.alpha[:, CONV3] += 1.0  # conv3 on about half the edges
    model = method.model
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1
    )
    ctx = ExactContext(model, optimizer, 0, 0, 10, 50)
    data = SearchData(None, None, torch.zeros(1), torch.zeros(1), "t", "")  # type: ignore[arg-type]
    state = SearchState(model, method, optimizer, None, data)  # type: ignore[arg-type]
    cell = next(m for m in model.layers if isinstance(m, SearchCell))
    moved = 0
    for step in range(4):
        before = cell.conv3_weight.detach().clone()
        torch.manual_seed(step)
        weight_step(state, ctx, batch(step))
        active = method._step_active
        assert active is not None
        after = cell.conv3_weight.detach()
        momentum = optimizer.state.get(cell.conv3_weight, {}).get("momentum_buffer")
        for k in range(6):
            row = SLOT[k]
            if active[k, CONV3]:
                moved += int(not torch.equal(after[row], before[row]))
            else:
                assert torch.equal(after[row], before[row])
                if step == 0 and momentum is not None:
                    assert bool((momentum[row] == 0).all())
    assert moved > 0  # sampled rows do train (a sampled op off every path to the output not)


def test_gdas_hold_unsampled_false_is_pytorch_1x_decay_on_unsampled_rows() -> None:
    """``gdas.hold_unsampled=false``: the rows of unsampled ops get a zero gradient, so SGD
    still decays them (PyTorch 1.x's in-place ``zero_grad``), and nothing is held."""
    from harness.data import SearchData
    from harness.supernet import CONV3, SLOT
    from harness.train import SearchState, weight_step

    method = make("gdas", hold_unsampled=False)
    with torch.no_grad():
        method.alpha[:, CONV3] += 1.0  # conv3 on about half the edges
    model = method.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    ctx = ExactContext(model, optimizer, 0, 0, 10, 50)
    data = SearchData(None, None, torch.zeros(1), torch.zeros(1), "t", "")  # type: ignore[arg-type]
    state = SearchState(model, method, optimizer, None, data)  # type: ignore[arg-type]
    cell = next(m for m in model.layers if isinstance(m, SearchCell))
    before = cell.conv3_weight.detach().clone()
    torch.manual_seed(0)
    weight_step(state, ctx, batch(0))
    active = method._step_active
    assert active is not None and method._held == []
    unsampled = [SLOT[k] for k in range(6) if not active[k, CONV3]]
    assert unsampled
    after = cell.conv3_weight.detach()
    assert all(torch.allclose(after[row], before[row] * (1 - 0.1 * 0.1)) for row in unsampled)


# --- resume: the draws and DrNAS's stage survive a kill -------------------------------------
class Killed(Exception):
    pass


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("gdas", {}), ("drnas", {"drnas.progressive": "true", "drnas.reg_type": "kl"})],
    ids=["gdas", "drnas-progressive"],
)
def test_a_killed_sampling_run_resumes_to_the_same_result(
    name: str,
    overrides: dict[str, str],
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed in epoch 4 of 4 (DrNAS: after its stage change at epoch 3), the resumed run
    ends where the uninterrupted one does: the draws come from the checkpointed
    generator, and the stage, mask and K from the method's checkpointed state."""
    from harness import config as cfg
    from harness import methods, results, search
    from harness.benchmark import Benchmark
    from harness.train import SearchState

    torch.set_default_dtype(torch.float32)
    sizes = {"epochs": "4", "train_size": "64", "valid_size": "64", "rank_samples": "0"}
    config = cfg.resolve(
        "smoke",
        name,
        {**sizes, **overrides},
        method_class(name).Options,
        0,
        methods.option_keys(),
    )
    table = Benchmark.load(data_dir)

    def run(directory: Path) -> dict[str, Any]:
        return search.Search(config, directory, data_dir, table, lambda _: None).run()

    whole = run(tmp_path / "whole")
    original, calls = search.train_epoch, {"n": 0}

    def dies_in_the_last_epoch(state: SearchState, epochs: int) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed
        return original(state, epochs)

    monkeypatch.setattr(search, "train_epoch", dies_in_the_last_epoch)
    with pytest.raises(Killed):
        run(tmp_path / "killed")
    monkeypatch.setattr(search, "train_epoch", original)
    resumed = run(tmp_path / "killed")
    assert resumed["arch"] == whole["arch"] and resumed["gap"] == whole["gap"]
    states = [
        torch.load(tmp_path / d / results.CHECKPOINT, weights_only=False)
        for d in ("whole", "killed")
    ]
    assert torch.equal(states[0]["method"]["alpha"], states[1]["method"]["alpha"])
    for key, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][key]), key
    if name == "drnas":
        assert states[1]["method"]["extra"]["stage"] == 1
