"""GDAS: one sampled op per edge, a straight-through gradient (methods-spec §9).

**[S]** Dong & Yang, "Searching for a robust neural architecture in four GPU hours",
CVPR 2019; the NB201 protocol of AutoDL-Projects ``exps/NAS-Bench-201-algos/GDAS.py``
with ``TinyNetworkGDAS`` and ``scripts-search/NAS-Bench-201-algos/GDAS.sh``:

* every forward draws one cell: per edge p̃ = softmax((log_softmax(α) + g)/τ) with
  Gumbel noise g, h = onehot(argmax p̃), weights h − sg(p̃) + p̃; only the sampled op
  runs, the others add their weight (zero in value) so their gradient reaches α;
* per step a weight step on the train batch (its own sample), then an α step on the
  valid batch (a new sample), Adam as DARTS;
* τ per epoch linear from τ_max = 10 to τ_min = 0.1 over the run (τ_min at the last
  epoch); 250 epochs, otherwise the DARTS-V1 protocol (``GDAS.config``);
* the cell is the argmax of α.

**[I]** The discretization gap's "continuous" supernet uses softmax(α), the
distribution GDAS samples from at τ = 1 (GDAS itself never runs a mixed forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.sampling import linear_temperature, straight_through_gumbel


@dataclass
class Options:
    """GDAS hyper-parameters: [S] AutoDL's NB201 script (GDAS.sh, GDAS.config)."""

    RULES: ClassVar[dict[str, Rule]] = {
        "tau_max": real(0, above=True),
        "tau_min": real(0, above=True),
    }
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {"epochs": 250}  # [S] GDAS.config

    tau_max: float = 10.0  # [S] --tau_max 10
    tau_min: float = 0.1  # [S] --tau_min 0.1


@register
class Gdas(Method):
    name = "gdas"
    summary = "GDAS: one Gumbel-max op per edge, straight-through gradient, τ 10→0.1"
    Options = Options

    @property
    def tau(self) -> float:
        """AutoDL: τ_max − (τ_max − τ_min)·epoch/(epochs − 1)."""
        o = self.options
        return linear_temperature(self.epoch, self.config.epochs - 1, o.tau_max, o.tau_min)

    def sample(self) -> tuple[Tensor, Tensor]:
        """(straight-through weights [6, 5], host bool mask of the sampled ops)."""
        return straight_through_gumbel(self.alpha, self.tau)

    def weight_step_inputs(self) -> tuple[Tensor, Tensor | None]:
        """A fresh cell; only its ops run (the other weights are exactly zero)."""
        weights, active = self.sample()
        return weights.detach(), active

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        weights, active = self.sample()
        loss = ctx.loss(valid, weights, active, straight_through=True)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, float]:
        return {"tau": self.tau}
