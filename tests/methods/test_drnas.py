"""DrNAS: the KL and L2 regularisers, pathwise Dirichlet gradients, the α step and the
progressive stages (pruning, widening, freezing).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sampling_helpers import alpha_grad, batch, close, context, make
from torch import Tensor

from harness.methods.drnas import kl_to_uniform, widen_partial_channels
from harness.methods.parts.sampling import dirichlet_sample
from harness.supernet import SearchCell, SuperNet

Batch = tuple[Tensor, Tensor]
pytestmark = pytest.mark.usefixtures("float64_default")


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
