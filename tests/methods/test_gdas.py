"""GDAS: the τ schedule, the Gumbel-max draw with straight-through weights, the α step on
the valid batch, one sampled cell per weight step and its unsampled rows left alone.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sampling_helpers import ExactContext, alpha_grad, batch, close, context, gumbel, make
from torch import Tensor

from harness.supernet import SearchCell, SuperNet

Batch = tuple[Tensor, Tensor]
pytestmark = pytest.mark.usefixtures("float64_default")


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


def test_gdas_device_sampling_takes_the_host_sampling_steps_without_reading_the_sample() -> None:
    """``gdas.sampling=device`` (every op computed, the sample a device mask): from the same
    start and seeds, eight search steps (weight step with momentum, Nesterov and weight
    decay, then the α step) end at the host mode's α, weights and momentum up to float64
    rounding: unsampled rows held, and what the host's sparse forward leaves without a
    gradient (a sampled op off every path, a cell that does not pass its input on) held
    as SGD leaves it there."""
    from harness.data import SearchData
    from harness.methods.gdas import reached
    from harness.supernet import CONV3
    from harness.train import SearchState, weight_step

    torch.manual_seed(11)
    host = make("gdas")
    with torch.no_grad():
        host.alpha[:, CONV3] += 1.0  # conv3 sampled on some edges, not on others
        host.alpha[:, 0] += 1.0  # `none` often enough to cut paths
    device = make("gdas", sampling="device")
    device.model.load_state_dict(host.model.state_dict())
    with torch.no_grad():
        device.alpha.copy_(host.alpha)
    runs = []
    for method in (host, device):
        model = method.model
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1
        )
        data = SearchData(None, None, torch.zeros(1), torch.zeros(1), "t", "")  # type: ignore[arg-type]
        state = SearchState(model, method, optimizer, None, data)  # type: ignore[arg-type]
        masks = []
        for step in range(8):
            ctx = ExactContext(model, optimizer, 0, step, 10, 50)
            torch.manual_seed(step)
            weight_step(state, ctx, batch(step))
            masks.append(method._step_active.clone())
            torch.manual_seed(100 + step)
            method.arch_step(ctx, batch(10 + step), batch(20 + step))
        buffers = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
        runs.append((masks, method.alpha.detach(), [*model.parameters(), *buffers]))
    (h_masks, h_alpha, h_state), (d_masks, d_alpha, d_state) = runs
    assert [m.tolist() for m in h_masks] == [m.tolist() for m in d_masks]
    paths = [reached(m) for m in h_masks]
    assert any(not bool(p.through) for p in paths)  # the cases the holds are for occur
    pairs = zip(h_masks, paths, strict=True)
    assert any(bool(m[:, CONV3].any()) and not bool(p.ops[CONV3]) for m, p in pairs)
    torch.testing.assert_close(d_alpha, h_alpha, rtol=1e-10, atol=1e-12)
    for a, b in zip(d_state, h_state, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-9, atol=1e-11)


def test_reached_follows_the_edges_that_carry_an_op() -> None:
    """Which sampled ops reach node 3, and whether node 0 reaches it, for hand-made cells
    (edges in the official order 1←0, 2←0, 2←1, 3←0, 3←1, 3←2; ops none, skip, 1×1,
    3×3, pool)."""
    from harness.methods.gdas import reached

    def cell(*ops: int) -> Tensor:
        return F.one_hot(torch.tensor(ops), 5).bool()

    paths = reached(cell(3, 3, 0, 1, 0, 0))  # the conv3s feed nothing: 3←1, 3←2 are none
    assert bool(paths.through) and paths.ops.tolist() == [False, True, False, False, False]
    paths = reached(cell(2, 1, 3, 0, 0, 4))  # 0 → 2 → 3 by skip and pool; 1's conv3 via 2
    assert bool(paths.through) and paths.ops.tolist() == [False, True, True, True, True]
    paths = reached(cell(3, 0, 1, 0, 2, 0))  # 0 → 1 → 3: through; 2 is read by nothing
    assert bool(paths.through) and paths.ops.tolist() == [False, False, True, True, False]
    paths = reached(cell(0, 0, 3, 0, 2, 1))  # nothing leaves 0 with an op: ops only
    assert not bool(paths.through) and paths.ops.tolist() == [False, True, True, True, False]
    paths = reached(cell(3, 3, 3, 0, 0, 0))  # nothing enters 3
    assert not bool(paths.through) and not bool(paths.ops.any())


def test_gdas_device_sampling_refuses_running_statistics() -> None:
    """Every op runs under ``sampling=device``: tracked BN statistics would move for ops
    the sample did not pick, so the combination is refused with the way out."""
    from harness.config import Config
    from harness.errors import UsageError
    from harness.methods import method_class

    cls = method_class("gdas")
    config = Config(epochs=2, dtype="float64", track_running_stats=True)
    model = SuperNet(C=4, N=1, track_running_stats=True)
    with pytest.raises(UsageError, match="sampling=host"):
        cls(model, config, cls.Options(sampling="device"), torch.device("cpu"))


def test_a_diverged_alpha_ends_the_draw_instead_of_redrawing_forever() -> None:
    """AutoDL redraws while p̃ is not finite; with a NaN α no redraw can help, so the
    host draw returns (its loss is NaN, and the loop ends the run as diverged)."""
    from harness.methods.parts.sampling import straight_through_gumbel

    alpha = torch.full((6, 5), float("nan"))
    weights, mask = straight_through_gumbel(alpha, 1.0)
    assert bool(weights.isnan().any()) and mask.shape == (6, 5)
