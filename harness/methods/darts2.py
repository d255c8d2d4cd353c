"""DARTS, second order (DARTS-V2; methods-spec §2.1–2.2).

Per step the α step comes first, on the unrolled weights of one virtual SGD
step that includes momentum and weight decay (AutoDL):

    w' = w − ξ (μ·m + ∇_w L_tr(w, α) + λ_w w)
    g_α = ∇_α L_val(w', α) − ξ · ∇²_{α,w} L_tr(w, α) · ∇_{w'} L_val(w', α)

The mixed second derivative times v = ∇_{w'} L_val is a central finite
difference of ∇_α L_tr at w ± ε v with ε = 0.01 / ‖v‖.
"""

from __future__ import annotations

import torch
from torch import Tensor

from harness.methods import register
from harness.methods.base import Batch, Method, StepContext, norm, shifted_weights, weight_params

FD_RADIUS = 0.01


def unrolled_step(ctx: StepContext, method: Method, train: Batch) -> list[Tensor]:
    """The displacement w' − w of the virtual SGD step (no gradient to α)."""
    params = weight_params(ctx.model)
    loss = ctx.loss(train, method.edge_weights().detach())
    grads = torch.autograd.grad(loss, params)
    group = ctx.w_optimizer.param_groups[0]
    lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
    displacement = []
    for param, grad in zip(params, grads, strict=True):
        step = grad + decay * param.detach()
        buffer = ctx.w_optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            step = step + momentum * buffer
        displacement.append(-lr * step)
    return displacement


def mixed_hvp(ctx: StepContext, method: Method, batch: Batch, vector: list[Tensor]) -> list[Tensor]:
    """∇²_{α,w} L(w, α) · vector by a central difference of ∇_α L at w ± ε·vector."""
    eps = FD_RADIUS / (norm(vector) + 1e-12)
    grads = []
    for sign in (1.0, -1.0):
        with shifted_weights(ctx.model, vector, sign * eps):
            loss = ctx.loss(batch, method.edge_weights())
            grads.append(torch.autograd.grad(loss, method.arch_parameters()))
    return [(gp - gm) / (2 * eps) for gp, gm in zip(grads[0], grads[1], strict=True)]


def second_order_gradient(
    ctx: StepContext, method: Method, train: Batch, valid: Batch
) -> list[Tensor]:
    displacement = unrolled_step(ctx, method, train)
    params = weight_params(ctx.model)
    arch = method.arch_parameters()
    with shifted_weights(ctx.model, displacement, 1.0):
        loss = ctx.loss(valid, method.edge_weights())
        grads = torch.autograd.grad(loss, arch + params)
    alpha_grads, v = list(grads[: len(arch)]), list(grads[len(arch) :])
    hvp = mixed_hvp(ctx, method, train, v)
    xi = ctx.w_lr
    return [g - xi * h for g, h in zip(alpha_grads, hvp, strict=True)]


@register
class Darts2(Method):
    name = "darts2"
    summary = "DARTS second order: unrolled virtual step, finite-difference Hessian term"
    alpha_first = True

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        self.apply_gradient(second_order_gradient(ctx, self, train, valid))
