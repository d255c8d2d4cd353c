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
* The README's recommended configuration is softmax activation, prox, dynamic
  schedule with s = 10 and ``dyno_split``; our default is that without
  ``dyno_split``.

**[I]** NB201 mapping and harness choices (spec §6.5):

* P = one-hot argmax per edge over all six edges, never onto ``none``: the
  code's ``_parse`` skips ``none`` under both activations. An edge with no live
  op other than ``none`` (CRB, all pruned) projects to ``none``.
* The derived cell for the NB201 lookup is the argmax over the live ops with
  ``none`` included under softmax (the NB201/AutoDL convention), so it can differ
  from P where ``none`` leads an edge.
* With CRB, |O| = 4 (the live ops) in the init, and both penalties are taken
  over the live entries only (M = alive mask), so a fully pruned edge does not
  add a constant that would shrink the norm's gradient elsewhere. With softmax
  M is all ones and the penalties are exactly the spec's.
* Order as in the code (``train_scheduled_hard_statebn.py``): per step the
  decision and the α step come first (``alpha_first``), on F̄ from the previous
  weight steps, then the weight step, after which F̄ is updated. F̄ starts at the
  first measured value (the code's −1 sentinel), so the very first step takes no
  α step. The proximity clock τ counts the current step as done (the code ticks
  it before the α step).
* ADMM works in A-space, as the code's loss does: Z₀ = α as in the code (= A(α₀)
  under CRB; under softmax the raw logits, whose uniform part the softmax
  Jacobian annihilates), then every ``admm_freq`` α steps Z ← P(A(α) + U),
  U ← (c·U + A(α) − Z) ⊙ M, c = ``admm_u_ewma`` = 1 (the script never passes its
  ``--zuewma`` to the model, whose default is 1). The code adds U to α before
  activating and accumulates α − Z; the two agree under CRB, not under softmax.
* ``dyno_split``: the weights train on s/(1+s) = 10/11 of the pooled search
  images and α steps on the rest (the code's ``train_portion``); the method asks
  the loop for that split through :meth:`train_fraction`. Off by default, so
  every method sees the protocol's 50/50 split unless asked.
* ``proxadj`` is not implemented.

Host syncs: the dynamic schedule reads F_t = ‖∇w‖² once per search step
(``float(grad_norm)``), and that read is the algorithm: whether the next α step is
computed at all depends on it, and at the schedule's equilibrium only about 1/(1+s) of
the steps take one. Deciding on the device would mean computing every α step and
discarding most (about twice the cost per step), for numbers the host decision gives
anyway. Under ``crb`` each α step taken also copies the pruning mask to the host (the
supernet skips pruned ops). The ``fixed`` and ``every`` schedules read nothing
(``tests/test_host_syncs.py``). ``decide=device`` (for a GPU; softmax with prox or no
regularizer) keeps F̄ and θ on the device instead: every step computes the α step and
keeps it only where the schedule takes it (α and Adam's state put back otherwise), so no
step reads the device, for an α forward and backward on every step. Same numbers (on a
CPU bit for bit; on CUDA Adam's step count lives on the device, ``capturable``, whose bias
correction rounds in float32).
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
    "decide": ("host", "device"),
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
    admm_u_ewma: float = 1.0  # c in U ← c·U + (A − Z) (the model's default 1)
    init_noise: float = 1e-4  # CRB: α₀ = 1/|O| + init_noise·N(0, 1)
    dyno_split: bool = False  # weights on s/(1+s) of the search images, α on the rest
    decide: str = "host"  # host: F̄ read per step; device: every α step computed, kept or not


def argmax_live(weights: Tensor, live: Tensor) -> Tensor:
    """Per edge the index of the largest live weight; ``none`` where no op is live."""
    scores = weights.detach().masked_fill(~live, float("-inf"))
    return torch.where(live.any(-1), scores.argmax(-1), NONE)


def projection(weights: Tensor, alive: Tensor) -> Tensor:
    """P: one-hot argmax per edge over the live ops other than ``none`` (``_parse``)."""
    candidates = alive.clone()
    candidates[:, NONE] = False
    return F.one_hot(argmax_live(weights, candidates), NUM_OPS).to(weights.dtype)


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
    alpha_first = True

    @classmethod
    def supernet_options(cls, options: Any) -> dict[str, Any]:
        """CRB needs BN after each node sum so clamped edges are comparable."""
        return {"node_bn": True} if options.activation == "crb" else {}

    @classmethod
    def train_fraction(cls, options: Any) -> float | None:
        """``dyno_split``: s/(1+s) of the search images for the weights (the code's split)."""
        s = options.sched_freq
        return s / (1 + s) if options.dyno_split else None

    def __init__(
        self, model: SuperNet, config: Config, options: Options, device: torch.device
    ) -> None:
        for key, allowed in CHOICES.items():
            if getattr(options, key) not in allowed:
                raise UsageError(
                    f"constrained.{key} must be one of {', '.join(allowed)}, "
                    f"got {getattr(options, key)!r}"
                )
        if options.decide == "device" and (options.activation, options.regularizer) not in (
            ("softmax", "prox"),
            ("softmax", "none"),
        ):
            raise UsageError(
                "constrained.decide=device needs activation=softmax and regularizer=prox "
                "or none: crb copies its pruning mask to the host and admm counts α steps "
                "there; use decide=host with those"
            )
        super().__init__(model, config, options, device)
        if self.on_device and self.device.type == "cuda":
            for group in self.optimizer.param_groups:  # Adam's step count on the GPU too
                group["capturable"] = True
        self.alive = torch.ones(NUM_EDGES, NUM_OPS, dtype=torch.bool, device=self.device)
        if self.crb:
            self.alive[:, NONE] = False
        self._alive_host = self.alive.cpu()
        self.threshold: float | Tensor = self._scalar(options.threshold0)
        self.fisher: float | Tensor | None = None  # F̄; None until the first weight step
        self.calls = self.admm_count = 0
        self.z = self.alpha.detach().clone()  # Z₀ = α, as the code initialises it
        self.u = torch.zeros_like(self.z)
        self._reset_epoch_counters()

    @property
    def crb(self) -> bool:
        return self.options.activation == "crb"

    @property
    def on_device(self) -> bool:
        """F̄ and θ kept on the device (``decide=device`` with the dynamic schedule)."""
        return self.options.decide == "device" and self.options.schedule == "dynamic"

    def _scalar(self, value: float) -> float | Tensor:
        """A schedule value: a float, or a float64 tensor on the device under
        ``decide=device`` (float64: the host's arithmetic, operation for operation)."""
        if not self.on_device:
            return float(value)
        return torch.tensor(float(value), dtype=torch.float64, device=self.device)

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
        """Argmax over the live ops, ``none`` included under softmax (NB201 convention)."""
        weights = self.edge_weights().detach()
        return Cell.from_indices(argmax_live(weights, self.alive).tolist())

    # --- the schedule ----------------------------------------------------------
    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        """F̄ ← γ‖∇_w L_tr‖² + (1−γ)F̄, F̄ = the first value at the start (a host value:
        the schedule decides on it)."""
        del ctx
        if self.options.schedule == "dynamic":
            if self.on_device:
                value: float | Tensor = grad_norm.detach().to(torch.float64) ** 2
            else:
                value = float(grad_norm) ** 2
            gamma, previous = self.options.gamma, self.fisher
            self.fisher = value if previous is None else gamma * value + (1 - gamma) * previous

    def decide(self, step: int) -> bool | Tensor:
        """Whether the call at ``step`` of its epoch takes an α step; moves θ under the
        dynamic schedule. Fixed: every s-th step of an epoch, as the code counts. Under
        ``decide=device`` a bool on the device, θ moved there."""
        opts = self.options
        self.calls += 1
        if opts.schedule == "every":
            return True
        if opts.schedule == "fixed":
            return (step + 1) % opts.sched_freq == 0
        down, up = opts.threshold_factor ** (-opts.sched_freq), opts.threshold_factor
        if isinstance(self.fisher, Tensor):
            taken = (self.fisher > 0.0) & (self.fisher < self.threshold)
            self.threshold = torch.where(taken, self.threshold * down, self.threshold * up)
            return taken
        take = self.fisher is not None and 0.0 < self.fisher < self.threshold
        self.threshold = self.threshold * (down if take else up)
        return take

    # --- the α step ----------------------------------------------------------
    def penalty(self, ctx: StepContext, weights: Tensor) -> Tensor:
        opts = self.options
        if opts.regularizer == "prox":
            clock = ctx.progress + 1 / ctx.steps_per_epoch  # the code ticks before the α step
            return prox_penalty(weights, self.alive, clock, ctx.epochs, opts.rho)
        if opts.regularizer == "admm":
            return (opts.rho / 2) * torch.linalg.vector_norm(
                (weights - self.z + self.u) * self.alive
            )
        return weights.new_zeros(())

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        self._epoch_calls += 1
        take = self.decide(ctx.step)
        if take is False:
            return
        weights = self.edge_weights()
        reg = self.penalty(ctx, weights)
        loss = ctx.loss(valid, weights, self.active_mask()) + reg
        grads = list(torch.autograd.grad(loss, self.arch_parameters()))
        if isinstance(take, Tensor):
            self._step_where(take, grads)
            self._epoch_steps = self._epoch_steps + take.long()
            self._reg_sum = self._reg_sum + reg.detach() * take
            return  # decide=device runs with neither crb nor admm (refused at start)
        self.apply_gradient(grads)
        self._epoch_steps += 1
        self._reg_sum = self._reg_sum + reg.detach()
        self._prune()
        self._admm_update()

    def _step_where(self, take: Tensor, grads: list[Tensor]) -> None:
        """The α step kept only where ``take`` (a bool on the device): otherwise α and
        Adam's state are put back, as if the step had not been computed (a state Adam
        creates now goes back to its zeros)."""
        state = self.optimizer.state.get(self.alpha, {})
        before = {key: value.clone() for key, value in state.items()}
        alpha = self.alpha.detach().clone()
        self.apply_gradient(grads)
        with torch.no_grad():
            self.alpha.copy_(torch.where(take, self.alpha, alpha))
            for key, value in self.optimizer.state[self.alpha].items():
                old = before.get(key, torch.zeros_like(value))
                value.copy_(torch.where(take, value, old))

    def _prune(self) -> None:
        """CRB: α ≤ 0 → 0, masked for good (one host copy of the mask per α step)."""
        if not self.crb:
            return
        with torch.no_grad():
            self.alive &= self.alpha > 0
            self.alpha.masked_fill_(~self.alive, 0.0)
        self._alive_host = self.alive.cpu()

    def _admm_update(self) -> None:
        """Every ``admm_freq`` α steps: Z ← P(A + U), U ← (c·U + A − Z) ⊙ M."""
        if self.options.regularizer != "admm":
            return
        self.admm_count += 1
        if self.admm_count % self.options.admm_freq:
            return
        with torch.no_grad():
            weights = self.edge_weights()
            self.z = projection(weights + self.u, self.alive)
            self.u = (self.options.admm_u_ewma * self.u + weights - self.z) * self.alive

    # --- telemetry and state ---------------------------------------------------
    def _reset_epoch_counters(self) -> None:
        self._epoch_calls = self._epoch_steps = 0
        self._reg_sum = torch.zeros((), device=self.device)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._reset_epoch_counters()

    def telemetry(self) -> dict[str, Any]:
        steps, calls = int(self._epoch_steps), self._epoch_calls  # read once an epoch
        dynamic = self.options.schedule == "dynamic"
        pruned = int((~self._alive_host[:, NONE + 1 :]).sum()) if self.crb else 0
        return {
            "alpha_step_rate": steps / calls if calls else None,
            "alpha_steps": steps,
            "threshold": float(self.threshold) if dynamic else None,
            "fisher_ewma": None if not dynamic or self.fisher is None else float(self.fisher),
            "pruned_ops": pruned,
            "reg": float(self._reg_sum) / steps if steps else None,
        }

    def extra_state(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "fisher": None if self.fisher is None else float(self.fisher),
            "calls": self.calls,
            "admm_count": self.admm_count,
            "alive": self.alive.clone(),
            "z": self.z.clone(),
            "u": self.u.clone(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.threshold = self._scalar(state["threshold"])
        self.fisher = None if state["fisher"] is None else self._scalar(state["fisher"])
        self.calls, self.admm_count = int(state["calls"]), int(state["admm_count"])
        self.alive = state["alive"].to(self.device)
        self.z, self.u = state["z"].to(self.device), state["u"].to(self.device)
        self._alive_host = self.alive.cpu()
