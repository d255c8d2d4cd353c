"""Constrained optimization in differentiable NAS / DARTS-PRIME (methods-spec §6).

**[S]** (Maile et al., arXiv 2106.11655; code k8lion/DARTS-PRIME):

* CRB activation: A(α) = clamp(α, 0, 1) per op (no competition), BN after every
  node sum, ``none`` removed, α₀ = 1/|O| + 1e-4·N(0, 1), and permanent pruning:
  an α that reaches ≤ 0 is set to 0 and masked for the rest of the search.
* Dynamic informed schedule: F_t = ‖∇_w L_tr‖² after each weight step, smoothed
  F̄ ← γF_t + (1−γ)F̄ with γ = 0.2; an α step is taken iff 0 < F̄ < θ, after which
  θ ← θ·1.05^(−s), else θ ← θ·1.05 (s = 10, θ₀ = 1). Alternatives: a fixed
  schedule (one α step every s weight steps) and, for reference, every step.
* Proximity regularizer (τ/T)(ρ/2)‖A(α) − P(A(α))‖₂ (τ = fractional epoch,
  norm not squared, ρ = 0.1) or ADMM: (ρ/2)‖(A(α) − Z + U) ⊙ M‖ with Z, U
  updated every 10 α steps. First-order α steps with the DARTS Adam.
* The README's recommended configuration — softmax activation, prox, dynamic
  schedule — is our default.

**[I]** NB201 mapping and harness choices (spec §6.5):

* P = one-hot argmax per edge over all six edges; with softmax ``none`` is a
  candidate, with CRB it is not, and an edge whose ops are all pruned projects
  (and derives) to ``none``.
* With CRB, |O| = 4 (the live ops) in the init, and both penalties are taken
  over the live entries only (M = alive mask), so a fully pruned edge does not
  add a constant that would shrink the norm's gradient elsewhere. With softmax
  M is all ones and the penalties are exactly the spec's.
* ADMM works in A-space: Z ← P(A(α) + U), U ← U + c·(A(α) − Z) with the code's
  EWMA factor c = 1 by default (the source mixes α and A(α), which differ for
  softmax).
* The loop calls arch_step after the weight step (``alpha_first = False``), so
  the decision uses F̄ including the step just taken. Across steps this is the
  code's order — w step, update F̄, decide, α step, next w step — and the
  current step's information is never stale. F̄ starts at 0 (hence "0 < F̄").
* Not implemented: ``dyno_split`` (a 10/11 train fraction); the harness's data
  split is owned by the loop and stays the protocol's 50/50. ``proxadj`` is
  not implemented either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config, Rule, integer, one_of, real
from harness.errors import UsageError
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.space import NUM_EDGES, NUM_OPS, Cell
from harness.supernet import SuperNet

NONE = 0
CHOICES = {
    "activation": ("softmax", "crb"),
    "regularizer": ("prox", "admm", "none"),
    "schedule": ("dynamic", "fixed", "every"),
}


@dataclass
class Options:
    """Hyper-parameters; all [S] from the DARTS-PRIME code unless marked [I]."""

    RULES: ClassVar[dict[str, Rule]] = {  # checked at plan time (config.check_config)
        **{key: one_of(*allowed) for key, allowed in CHOICES.items()},
        "rho": real(0),
        "sched_freq": integer(1),
        "gamma": real(0, 1),
        "threshold_factor": real(0, above=True),
        "admm_freq": integer(1),
        "admm_u_ewma": real(0, 1),
        "init_noise": real(0),
    }

    activation: str = "softmax"  # "softmax" (README's recommendation) or "crb"
    regularizer: str = "prox"  # "prox", "admm" or "none"
    rho: float = 0.1
    schedule: str = "dynamic"  # "dynamic", "fixed" (every s steps) or "every" [I]
    sched_freq: int = 10  # s
    gamma: float = 0.2  # EWMA factor of F̄
    threshold0: float = 1.0  # θ₀
    threshold_factor: float = 1.05
    admm_freq: int = 10  # α steps between Z, U updates
    admm_u_ewma: float = 1.0  # U's EWMA factor (code default 1); the form is [I]
    init_noise: float = 1e-4  # CRB: α₀ = 1/|O| + init_noise·N(0, 1)


def projection(weights: Tensor, alive: Tensor) -> Tensor:
    """P: one-hot argmax per edge over live ops; an edge with no live op → ``none``."""
    scores = weights.detach().masked_fill(~alive, float("-inf"))
    index = torch.where(alive.any(-1), scores.argmax(-1), NONE)
    return F.one_hot(index, NUM_OPS).to(weights.dtype)


def prox_penalty(
    weights: Tensor, alive: Tensor, progress: float, epochs: int, rho: float
) -> Tensor:
    """(τ/T)(ρ/2)‖(A − P(A)) ⊙ M‖₂ — the norm is not squared (as in the code)."""
    distance = (weights - projection(weights, alive)) * alive
    return (progress / epochs) * (rho / 2) * torch.linalg.vector_norm(distance)


@register
class Constrained(Method):
    name = "constrained"
    summary = "Maile et al. / DARTS-PRIME: dynamic α schedule, prox/ADMM, optional CRB"
    Options = Options
    alpha_first = False

    @classmethod
    def supernet_options(cls, options: Any) -> dict[str, Any]:
        """CRB needs BN after each node sum so clamped edges are comparable."""
        return {"node_bn": True} if options.activation == "crb" else {}

    def __init__(
        self, model: SuperNet, config: Config, options: Options, device: torch.device
    ) -> None:
        for key, allowed in CHOICES.items():
            if getattr(options, key) not in allowed:
                raise UsageError(
                    f"constrained.{key} must be one of {', '.join(allowed)}, "
                    f"got {getattr(options, key)!r}"
                )
        super().__init__(model, config, options, device)
        self.alive = torch.ones(NUM_EDGES, NUM_OPS, dtype=torch.bool, device=self.device)
        if self.crb:
            self.alive[:, NONE] = False
        self._alive_host = self.alive.cpu()
        self.threshold, self.fisher = float(options.threshold0), 0.0
        self.calls = self.admm_count = 0
        self.z = projection(self.edge_weights(), self.alive)
        self.u = torch.zeros_like(self.z)
        self._reset_epoch_counters()

    @property
    def crb(self) -> bool:
        return self.options.activation == "crb"

    # --- α and its weights ---------------------------------------------------
    def initial_alpha(self) -> Tensor:
        """Softmax: DARTS's 1e-3·N(0,1). CRB: 1/4 + 1e-4·N(0,1) on the live ops, 0 on none."""
        if not self.crb:
            return super().initial_alpha()
        alpha = 1.0 / (NUM_OPS - 1) + self.options.init_noise * torch.randn(NUM_EDGES, NUM_OPS)
        alpha[:, NONE] = 0.0
        return alpha.to(self.device)

    def edge_weights(self) -> Tensor:
        if not self.crb:
            return self.alpha.softmax(-1)
        return self.alpha.clamp(0.0, 1.0) * self.alive

    def active_mask(self) -> Tensor | None:
        """CRB: the live ops, so pruned ones cost no compute; softmax: all live."""
        return self._alive_host if self.crb else None

    def derive(self) -> Cell:
        weights = self.edge_weights().detach()
        return Cell.from_indices(projection(weights, self.alive).argmax(-1).tolist())

    # --- the schedule ----------------------------------------------------------
    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        """F̄ ← γ‖∇_w L_tr‖² + (1−γ)F̄ (a host value: the schedule decides on it)."""
        del ctx
        if self.options.schedule == "dynamic":
            gamma = self.options.gamma
            self.fisher = gamma * float(grad_norm) ** 2 + (1 - gamma) * self.fisher

    def decide(self) -> bool:
        """Whether this call takes an α step; moves θ under the dynamic schedule."""
        opts = self.options
        self.calls += 1
        if opts.schedule == "every":
            return True
        if opts.schedule == "fixed":
            return self.calls % opts.sched_freq == 0
        take = 0.0 < self.fisher < self.threshold
        factor = opts.threshold_factor ** (-opts.sched_freq) if take else opts.threshold_factor
        self.threshold *= factor
        return take

    # --- the α step ----------------------------------------------------------
    def penalty(self, ctx: StepContext, weights: Tensor) -> Tensor:
        opts = self.options
        if opts.regularizer == "prox":
            return prox_penalty(weights, self.alive, ctx.progress, ctx.epochs, opts.rho)
        if opts.regularizer == "admm":
            return (opts.rho / 2) * torch.linalg.vector_norm(
                (weights - self.z + self.u) * self.alive
            )
        return weights.new_zeros(())

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        self._epoch_calls += 1
        if not self.decide():
            return
        weights = self.edge_weights()
        reg = self.penalty(ctx, weights)
        loss = ctx.loss(valid, weights, self.active_mask()) + reg
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))
        self._epoch_steps += 1
        self._reg_sum = self._reg_sum + reg.detach()
        self._prune()
        self._admm_update()

    def _prune(self) -> None:
        """CRB: α ≤ 0 → 0, masked for good (one host copy of the mask per α step)."""
        if not self.crb:
            return
        with torch.no_grad():
            self.alive &= self.alpha > 0
            self.alpha.masked_fill_(~self.alive, 0.0)
        self._alive_host = self.alive.cpu()

    def _admm_update(self) -> None:
        """Every ``admm_freq`` α steps: Z ← P(A + U), U ← U + c(A − Z)."""
        if self.options.regularizer != "admm":
            return
        self.admm_count += 1
        if self.admm_count % self.options.admm_freq:
            return
        with torch.no_grad():
            weights = self.edge_weights()
            self.z = projection(weights + self.u, self.alive)
            self.u = self.u + self.options.admm_u_ewma * (weights - self.z)

    # --- telemetry and state ---------------------------------------------------
    def _reset_epoch_counters(self) -> None:
        self._epoch_calls = self._epoch_steps = 0
        self._reg_sum = torch.zeros((), device=self.device)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._reset_epoch_counters()

    def telemetry(self) -> dict[str, Any]:
        steps, calls = self._epoch_steps, self._epoch_calls
        dynamic = self.options.schedule == "dynamic"
        pruned = int((~self._alive_host[:, NONE + 1 :]).sum()) if self.crb else 0
        return {
            "alpha_step_rate": steps / calls if calls else None,
            "alpha_steps": steps,
            "threshold": self.threshold if dynamic else None,
            "fisher_ewma": self.fisher if dynamic else None,
            "pruned_ops": pruned,
            "reg": float(self._reg_sum) / steps if steps else None,
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "fisher": self.fisher,
            "calls": self.calls,
            "admm_count": self.admm_count,
            "alive": self.alive.clone(),
            "z": self.z.clone(),
            "u": self.u.clone(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.threshold, self.fisher = float(state["threshold"]), float(state["fisher"])
        self.calls, self.admm_count = int(state["calls"]), int(state["admm_count"])
        self.alive = state["alive"].to(self.device)
        self.z, self.u = state["z"].to(self.device), state["u"].to(self.device)
        self._alive_host = self.alive.cpu()
