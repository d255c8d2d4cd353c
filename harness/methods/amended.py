"""Amended gradient estimation on architectural parameters (methods-spec §8).

**[S]** (Bi et al., arXiv 1910.11831; form corroborated by the AdversarialNAS
implementation): by the implicit function theorem the true hypergradient is
∇_α L_val − ∇²_{αw} L_tr · H⁻¹ · ∇_w L_val with H = ∇²_w L_tr; DARTS-V2 takes
H⁻¹ ≈ ξI, the amended estimate takes H⁻¹ ≈ ηH:

    g_α = ∇_α L_val(w, α) − η · ∇²_{αw} L_tr(w, α) · H · ∇_w L_val(w, α)

**[I]** computation (spec §8.3–8.4), following that implementation:

1. v = ∇_w L_val and ∇_α L_val from one pass on the valid batch;
2. u = H v by a central difference of ∇_w L_tr at w ± ε₁v, ε₁ = 0.01/‖v‖;
3. z = ∇²_{αw} L_tr · u by a central difference of ∇_α L_tr at w ± ε₂u,
   ε₂ = 0.01/‖u‖ (the same difference DARTS-V2 takes for its term);
4. g_α = ∇_α L_val − ηz, with w (and BN buffers) restored exactly after every
   perturbation. No unrolled step: the current w stands in for w*.

η = 0.1 (AdversarialNAS; the spec's grid is {0.01, 0.1, 1}); ``normalize_c`` > 0
rescales ηz to c‖∇_α L_val‖ (spec grid c ∈ {0.1, 0.5}). ``fd_radius`` is the
0.01 of both ε. At realistic sizes the differences straddle many ReLU kinks
and measure something far from autograd's Hessian at any radius
(docs/methods.md), so ``hessian=autograd`` [I] computes both products by double
backward instead. As in DARTS-V2 the α step comes before the weight step. Five
forward/backward passes per α step with differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, one_of, real
from harness.errors import UsageError
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext, norm, shifted_weights, weight_params
from harness.supernet import SuperNet


@dataclass
class Options:
    """Amended-gradient hyper-parameters; all [I] (no published values)."""

    RULES: ClassVar[dict[str, Rule]] = {  # checked at plan time (config.check_config)
        "normalize_c": real(0, note="0 = off"),
        "fd_radius": real(0, above=True),
        "hessian": one_of("fd", "autograd"),
    }

    eta: float = 0.1  # η, the stand-in for H⁻¹ ≈ ηH
    normalize_c: float = 0.0  # 0 = off; else ‖ηz‖ := c·‖∇_α L_val‖
    fd_radius: float = 0.01  # ε = fd_radius/‖vector‖ for both differences (DARTS's 0.01)
    hessian: str = "fd"  # "fd" (the spec's differences) or "autograd" (double backward) [I]


def central_difference(
    model: SuperNet,
    vector: list[Tensor],
    radius: float,
    gradient: Callable[[], list[Tensor]],
) -> list[Tensor]:
    """[g(w + εv) − g(w − εv)] / 2ε with ε = radius/‖v‖; w and BN buffers restored exactly."""
    eps = radius / (norm(vector) + 1e-12)
    grads = []
    for sign in (1.0, -1.0):
        with shifted_weights(model, vector, sign * eps):
            grads.append(gradient())
    return [(gp - gm) / (2 * eps) for gp, gm in zip(grads[0], grads[1], strict=True)]


def hessian_vector(
    ctx: StepContext, method: Method, batch: Batch, vector: list[Tensor], radius: float
) -> list[Tensor]:
    """H·vector with H = ∇²_w L(w, α): a central difference of ∇_w L."""
    weights = method.edge_weights().detach()
    params = weight_params(ctx.model)

    def gradient() -> list[Tensor]:
        loss = ctx.loss(batch, weights, method.active_mask())
        return list(torch.autograd.grad(loss, params))

    return central_difference(ctx.model, vector, radius, gradient)


def mixed_hessian_vector(
    ctx: StepContext, method: Method, batch: Batch, vector: list[Tensor], radius: float
) -> list[Tensor]:
    """∇²_{αw} L(w, α)·vector: a central difference of ∇_α L (as DARTS-V2's term)."""

    def gradient() -> list[Tensor]:
        loss = ctx.loss(batch, method.edge_weights(), method.active_mask())
        return list(torch.autograd.grad(loss, method.arch_parameters()))

    return central_difference(ctx.model, vector, radius, gradient)


def _dot(xs: list[Tensor] | tuple[Tensor, ...], ys: list[Tensor]) -> Tensor:
    return torch.stack([(x * y).sum() for x, y in zip(xs, ys, strict=True)]).sum()


def autograd_products(
    ctx: StepContext, method: Method, batch: Batch, vector: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """(u = H·vector, z = ∇²_{αw} L · u) by double backward.

    Autograd differentiates ReLU twice as 0, so this is the Hessian without the
    kink terms that a finite difference over many units picks up.
    """
    params, arch = weight_params(ctx.model), method.arch_parameters()
    with shifted_weights(ctx.model, vector, 0.0):  # only to restore BN buffers afterwards
        loss = ctx.loss(batch, method.edge_weights(), method.active_mask())
        grads = torch.autograd.grad(loss, params, create_graph=True)
        u = torch.autograd.grad(_dot(grads, vector), params, retain_graph=True)
        z = torch.autograd.grad(_dot(grads, [t.detach() for t in u]), arch)
    return [t.detach() for t in u], [t.detach() for t in z]


def amended_gradient(
    ctx: StepContext, method: Method, train: Batch, valid: Batch, options: Options
) -> tuple[list[Tensor], Tensor]:
    """(g_α, ‖ηz‖/‖∇_α L_val‖ before any normalisation)."""
    arch, params = method.arch_parameters(), weight_params(ctx.model)
    loss = ctx.loss(valid, method.edge_weights(), method.active_mask())
    grads = torch.autograd.grad(loss, arch + params)
    g_val, v = list(grads[: len(arch)]), list(grads[len(arch) :])
    if options.hessian == "autograd":
        _, z = autograd_products(ctx, method, train, v)
    else:
        u = hessian_vector(ctx, method, train, v, options.fd_radius)
        z = mixed_hessian_vector(ctx, method, train, u, options.fd_radius)
    amendment = [options.eta * t for t in z]
    ratio = norm(amendment) / (norm(g_val) + 1e-12)
    if options.normalize_c > 0:
        scale = options.normalize_c / (ratio + 1e-12)
        amendment = [a * scale for a in amendment]
    return [g - a for g, a in zip(g_val, amendment, strict=True)], ratio


@register
class Amended(Method):
    name = "amended"
    summary = "Amended-DARTS [I]: ∇_α L_val − η·∇²_{αw}L_tr·H·∇_w L_val by finite differences"
    Options = Options
    alpha_first = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.hessian not in ("fd", "autograd"):
            raise UsageError(
                f"amended.hessian must be 'fd' or 'autograd', got {self.options.hessian!r}"
            )
        self._reset_ratio()

    def _reset_ratio(self) -> None:
        self._ratio_sum = torch.zeros((), device=self.device)
        self._count = 0

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._reset_ratio()

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        grads, ratio = amended_gradient(ctx, self, train, valid, self.options)
        self.apply_gradient(grads)
        self._ratio_sum = self._ratio_sum + ratio
        self._count += 1

    def telemetry(self) -> dict[str, Any]:
        n = self._count
        return {"amend_ratio": float(self._ratio_sum) / n if n else None}
