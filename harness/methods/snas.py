"""SNAS: a relaxed Gumbel-softmax sample of the cell per forward (methods-spec §9).

**[S]** Xie et al., "SNAS: stochastic neural architecture search", ICLR 2019. The NB201
numbers that later papers quote come from DrNAS's re-implementation
(xiangning-chen/DrNAS ``201-space/train_search.py``, ``--method snas``), which this follows:

* every forward (weight step and α step) draws w_e = softmax((α_e + g_e)/τ), Gumbel g;
* per step first an α step on the valid batch (first order, Adam as DARTS), then a
  weight step on the train batch — bilevel, like the rest of that code;
* τ starts at 10 and falls by (10 − 1)/epochs after every epoch, so τ_t = 10 − 9t/T;
* 100 epochs, SGD weight decay 3e-4 without Nesterov (the code's defaults);
* the cell is the argmax of α.

**[I]** Not the original paper's protocol: SNAS trains α and w on the same training
loss (single level) with its own temperature schedule and an optional resource
penalty; neither is reproduced. The gap's continuous supernet uses softmax(α).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.sampling import gumbel_softmax, linear_temperature


@dataclass
class Options:
    """SNAS hyper-parameters: [S] DrNAS's NB201 code (``--tau_max 10 --tau_min 1``)."""

    RULES: ClassVar[dict[str, Rule]] = {
        "tau_max": real(0, above=True),
        "tau_min": real(0, above=True),
    }
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {  # [S] DrNAS train_search.py defaults
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }

    tau_max: float = 10.0
    tau_min: float = 1.0


@register
class Snas(Method):
    name = "snas"
    summary = "SNAS: Gumbel-softmax sample of the cell each forward, τ 10→1 (DrNAS's NB201)"
    Options = Options
    alpha_first = True

    @property
    def tau(self) -> float:
        """DrNAS: τ_t = τ_max − (τ_max − τ_min)·t/epochs."""
        o = self.options
        return linear_temperature(self.epoch, self.config.epochs, o.tau_max, o.tau_min)

    def sample(self) -> Tensor:
        return gumbel_softmax(self.alpha, self.tau)

    def weight_step_weights(self) -> Tensor:
        """A fresh relaxed sample per weight step (no gradient to α)."""
        return self.sample().detach()

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.sample())
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, float]:
        return {"tau": self.tau}
