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
