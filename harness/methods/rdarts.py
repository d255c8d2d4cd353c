"""RDARTS: regularized DARTS with stage-wise α (methods-spec §7).

**[S]** (Wang et al., IEEE ESL 2023, abstract only): cells at different depths
get their own α; a "Reg distance" measures how far the cells differ; the
validation loss weights cross-entropy against the Reg loss with an adaptive
adjustment. No code or hyper-parameters are public.

**[I]** NB201 mapping (spec §7.3), all ours:

* α has shape [3, 6, 5], one 6×5 matrix per stage, each shared by that stage's N
  cells; :meth:`edge_weights` returns the [3, 6, 5] softmax the supernet takes
  directly. Each stage's α is drawn independently, 1e-3·N(0, 1).
* R = Σ_{s<s'} (1/|E|) Σ_e ‖p_e^(s) − p_e^(s')‖² over the three stage pairs;
  the α-step loss is L_val + λ_t R (first order, DARTS-V1 protocol).
* The sign: + λ_t R, a penalty on the distance between stages. The abstract
  does not give it; we read it so because it calls the term a "Reg loss"
  weighted with cross-entropy into the validation loss that is minimised, and
  presents RDARTS as the regularised form of the free 5-cell search whose
  "uneven resource allocation" it criticises — a term rewarding distance would
  push further toward that free search.
* λ_t, option ``adapt``: ``ratio`` (default) λ = κ·sg(L_CE)/sg(R + ε) with κ = 0.1,
  so λR = κ·L_CE·R/(R + ε): Reg holds the share κ of the cross-entropy as long as
  ε ≪ R. ε is only a guard against R = 0 (1e-12; R starts near 1e-6 at α init
  1e-3·N(0, 1)); telemetry ``reg_share`` = mean λR/L_CE shows the share held.
  ``dual`` λ ← max(0, λ + η_λ(R − δ)) per α step (δ = 0.05, η_λ = 0.01, from
  ``lambda_init``); ``fixed`` λ = ``lambda_fixed`` (0 gives the free stage-wise
  ablation).
* The single looked-up genotype is the argmax of the stage-averaged weights
  (``none`` included; the base class averages 3-dim weights). Telemetry adds
  each stage's own genotype and the stage disagreement rate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, one_of, real
from harness.errors import UsageError
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.space import NUM_EDGES, NUM_OPS, Cell

STAGES = 3


@dataclass
class Options:
    """RDARTS hyper-parameters; all [I] (spec §7.3)."""

    RULES: ClassVar[dict[str, Rule]] = {  # checked at plan time (config.check_config)
        "adapt": one_of("ratio", "dual", "fixed"),
        "kappa": real(0),
        "eps": real(0, above=True),
        "delta": real(0),
        "eta_lambda": real(0),
    }

    adapt: str = "ratio"  # "ratio", "dual" or "fixed"
    kappa: float = 0.1  # ratio: Reg's share κ of the cross-entropy
    eps: float = 1e-12  # ratio: ε in sg(R + ε), a guard against R = 0 only
    delta: float = 0.05  # dual: target distance δ
    eta_lambda: float = 0.01  # dual: ascent step η_λ
    lambda_init: float = 0.0  # dual: initial λ
    lambda_fixed: float = 1.0  # fixed: λ (0 = free stage-wise α ablation)


def stage_distance(probs: Tensor) -> Tensor:
    """R = Σ_{s<s'} (1/|E|) Σ_e ‖p_e^(s) − p_e^(s')‖² for probs of shape [S, E, O]."""
    total = probs.new_zeros(())
    for a, b in itertools.combinations(range(probs.shape[0]), 2):
        total = total + ((probs[a] - probs[b]) ** 2).sum(-1).mean()
    return total


def disagreement_rate(probs: Tensor) -> float:
    """Fraction of edges whose argmax is not the same in every stage."""
    choice = probs.argmax(-1)
    agree = (choice == choice[0]).all(0)
    return float((~agree).float().mean())


@register
class Rdarts(Method):
    name = "rdarts"
    summary = "RDARTS [I]: one α per stage, Reg distance between stages with adaptive weight"
    Options = Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.adapt not in ("ratio", "dual", "fixed"):
            raise UsageError(
                f"rdarts.adapt must be 'ratio', 'dual' or 'fixed', got {self.options.adapt!r}"
            )
        self.dual_lambda = torch.tensor(float(self.options.lambda_init), device=self.device)
        self._reset_epoch_sums()

    def alpha_shape(self) -> tuple[int, ...]:
        return (STAGES, NUM_EDGES, NUM_OPS)

    def reg_weight(self, ce: Tensor, reg: Tensor) -> Tensor:
        """λ_t for this α step, a constant (no gradient) on the device."""
        opts = self.options
        if opts.adapt == "ratio":
            return opts.kappa * ce.detach() / (reg.detach() + opts.eps)
        if opts.adapt == "dual":
            return self.dual_lambda
        return ce.new_tensor(opts.lambda_fixed)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        probs = self.edge_weights()
        ce = ctx.loss(valid, probs)
        reg = stage_distance(probs)
        weight = self.reg_weight(ce, reg)
        loss = ce + weight * reg
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))
        if self.options.adapt == "dual":
            step = self.options.eta_lambda * (reg.detach() - self.options.delta)
            self.dual_lambda = (self.dual_lambda + step).clamp_min(0.0)
        self._reg_sum = self._reg_sum + reg.detach()
        self._weight_sum = self._weight_sum + weight.detach()
        self._share_sum = self._share_sum + (weight * reg / ce).detach()
        self._count += 1

    def _reset_epoch_sums(self) -> None:
        self._reg_sum = torch.zeros((), device=self.device)
        self._weight_sum = torch.zeros((), device=self.device)
        self._share_sum = torch.zeros((), device=self.device)
        self._count = 0

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._reset_epoch_sums()

    def telemetry(self) -> dict[str, Any]:
        probs = self.edge_weights().detach()
        n = self._count
        return {
            "reg_distance": float(self._reg_sum) / n if n else None,
            "reg_weight": float(self._weight_sum) / n if n else None,
            "reg_share": float(self._share_sum) / n if n else None,
            "reg_distance_end": float(stage_distance(probs)),
            "stage_disagreement": disagreement_rate(probs),
            "stage_archs": [
                Cell.from_indices(stage.argmax(-1).tolist()).to_arch_str() for stage in probs
            ],
        }

    def extra_state(self) -> dict[str, Any]:
        return {"dual_lambda": self.dual_lambda.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "dual_lambda" in state:
            self.dual_lambda = state["dual_lambda"].to(self.device)
