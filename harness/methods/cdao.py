"""DARTS-CDAO: continuous–discrete alignment by coarse-gradient weighting (methods-spec §4).

What is public **[S]** (Liu et al., EAAI 2025, abstract only): discretization is
formalised and built into the α update, which uses a *coarse-gradient
weighting* that shrinks the divergence between the continuous and the discrete
architecture, at no extra search time. The grounding techniques are
BinaryConnect, Yin et al.'s coarse gradients (STE) and ProxylessNAS's softmax
Jacobian weighting **[S]**. No equations, code or hyper-parameters are public,
so everything below is our reconstruction **[I]** (spec §4.3–4.5):

* p_e = softmax(α_e), h_e = D(α)_e = onehot(argmax_k α_{e,k}) (``none`` included).
* CDAO-ST (default): the α step forwards the supernet on the mixed weights
  m = p + λ_t·sg(h − p) — value (1−λ_t)p + λ_t h, with ∂m/∂p := I (an STE) — so
  g_α = J_softmax(α)ᵀ ∇_m L_val(w, m). λ_t = 0 is exactly DARTS-V1; λ_t = 1 is
  the coarse gradient of the discretized architecture's loss.
* Alignment penalty g_α += μ ∇_α Δ(α), Δ(α) = (1/|E|) Σ_e ‖p_e − h_e‖² (h held fixed),
  μ = 1 by default: of the spec's grid {0, 0.1, 1}, μ = 1 gave the best NB201 cells and
  the smallest gap at the proxy preset (5 seeds; docs/methods.md).
* λ_t = 0 until t₀ (10 of 50 epochs → ``t0_frac`` = 0.2), linear to λ_max = 1 at
  0.8T, then held.
* CDAO-2P (``two_pass``): g = (1−λ_t) g_c + λ_t g_d with g_c the continuous and g_d
  the coarse one-hot gradient, each from its own pass.
* CDAO-ST-W (``weights_use_blend``): the weight step also trains on m.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config import Rule, integer, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.space import NUM_OPS


@dataclass
class Options:
    """CDAO hyper-parameters; every one is [I] (no published values)."""

    RULES: ClassVar[dict[str, Rule]] = {  # checked at plan time (config.check_config)
        "t0_frac": real(0, 1),
        "ramp_end_frac": real(0, 1),
        "lambda_max": real(0, 1),
        "mu": real(0),
        "loss_gap_every": integer(0, note="0 = off"),
    }

    t0_frac: float = 0.2  # λ_t = 0 before this fraction of the epochs (10 of 50)
    ramp_end_frac: float = 0.8  # λ_t reaches lambda_max here (0.8T) and is held
    lambda_max: float = 1.0
    mu: float = 1.0  # alignment penalty μ·Δ(α); {0, 0.1, 1} measured, docs/methods.md
    two_pass: bool = False  # CDAO-2P ablation
    weights_use_blend: bool = False  # CDAO-ST-W: the w step on m as well
    loss_gap_every: int = 10  # sample L_val(w,p) − L_val(w,h) every k-th α step; 0 = off


def cdao_lambda(epoch: int, epochs: int, options: Options) -> float:
    """λ_t: 0 before t₀, linear from t₀ to the ramp end, then λ_max (per epoch)."""
    start, end = options.t0_frac * epochs, options.ramp_end_frac * epochs
    if epoch < start:
        return 0.0
    if end <= start:
        return options.lambda_max
    return options.lambda_max * min(1.0, (epoch - start) / (end - start))


def one_hot_argmax(probs: Tensor) -> Tensor:
    """h = D(α): one-hot of the per-edge argmax, in the dtype of ``probs``."""
    return F.one_hot(probs.argmax(-1), NUM_OPS).to(probs.dtype)


def blended_weights(probs: Tensor, lam: float) -> Tensor:
    """m = p + λ·sg(h − p): forward value (1−λ)p + λh, backward ∂m/∂p = I."""
    if lam == 0.0:
        return probs
    hard = one_hot_argmax(probs.detach())
    return probs + lam * (hard - probs).detach()


def divergence(probs: Tensor) -> Tensor:
    """Δ(α) = mean_e ‖p_e − h_e‖² with h held fixed (its gradient flows through p)."""
    hard = one_hot_argmax(probs.detach())
    return ((probs - hard) ** 2).sum(-1).mean()


def coarse_gradient(
    ctx: StepContext, method: Method, batch: Batch, lam: float
) -> tuple[list[Tensor], Tensor]:
    """(J_softmaxᵀ ∇_m L(w, m) for m = blend(p, λ), the loss L(w, m))."""
    loss = ctx.loss(batch, blended_weights(method.edge_weights(), lam))
    return list(torch.autograd.grad(loss, method.arch_parameters())), loss.detach()


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Undo BN running-statistic updates made by telemetry-only forwards."""
    saved = [b.detach().clone() for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved, strict=True):
                buffer.copy_(value)


@register
class Cdao(Method):
    name = "cdao"
    summary = "DARTS-CDAO [I]: α step on p + λ_t·sg(onehot − p), coarse gradient via STE"
    Options = Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gap_sum = torch.zeros((), device=self.device)
        self._gap_count = 0

    @property
    def lam(self) -> float:
        return cdao_lambda(self.epoch, self.config.epochs, self.options)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._gap_sum = torch.zeros((), device=self.device)
        self._gap_count = 0

    def weight_step_weights(self) -> Tensor:
        """CDAO-ST-W trains w on m; the default trains on p as DARTS-V1 does."""
        probs = self.edge_weights().detach()
        return blended_weights(probs, self.lam) if self.options.weights_use_blend else probs

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        lam = self.lam
        grads, losses = self._alpha_gradient(ctx, valid, lam)
        if self.options.mu:
            penalty = self.options.mu * divergence(self.edge_weights())
            extra = torch.autograd.grad(penalty, self.arch_parameters())
            grads = [g + e for g, e in zip(grads, extra, strict=True)]
        every = self.options.loss_gap_every
        if every > 0 and ctx.step % every == 0:
            self._record_loss_gap(ctx, valid, losses)
        self.apply_gradient(grads)

    def _alpha_gradient(
        self, ctx: StepContext, valid: Batch, lam: float
    ) -> tuple[list[Tensor], dict[float, Tensor]]:
        """The α gradient and the losses it saw, keyed by the blend λ of their forward.

        CDAO-ST: one pass at m. CDAO-2P: (1−λ) g_c + λ g_d from two passes (one
        pass when λ is 0 or 1, where the other term has no weight).
        """
        if not self.options.two_pass or lam in (0.0, 1.0):
            grads, loss = coarse_gradient(ctx, self, valid, lam)
            return grads, {lam: loss}
        g_c, loss_c = coarse_gradient(ctx, self, valid, 0.0)
        g_d, loss_d = coarse_gradient(ctx, self, valid, 1.0)
        mixed = [(1 - lam) * c + lam * d for c, d in zip(g_c, g_d, strict=True)]
        return mixed, {0.0: loss_c, 1.0: loss_d}

    def _record_loss_gap(self, ctx: StepContext, valid: Batch, losses: dict[float, Tensor]) -> None:
        """L_val(w, p) − L_val(w, h) on this α step's batch, summed on the device.

        A loss the α step already computed (at λ = 0 or 1) is reused; the other is
        a no-grad forward whose BN-statistics side effects are undone.
        """
        with torch.no_grad(), preserved_buffers(ctx.model):
            probs = self.edge_weights()
            at_p = losses[0.0] if 0.0 in losses else ctx.loss(valid, probs)
            at_h = losses[1.0] if 1.0 in losses else ctx.loss(valid, one_hot_argmax(probs))
        self._gap_sum = self._gap_sum + (at_p - at_h)
        self._gap_count += 1

    def telemetry(self) -> dict[str, Any]:
        with torch.no_grad():
            delta = float(divergence(self.edge_weights()))
        gap = float(self._gap_sum) / self._gap_count if self._gap_count else None
        return {"lambda_t": self.lam, "divergence": delta, "loss_gap": gap}
