"""β-DARTS: the Beta-Decay regulariser on the α loss (methods-spec §9).

**[S]** (Ye et al., CVPR 2022, arXiv 2203.01665; code Sunshine-Ye/Beta-DARTS,
``optimizers/darts/architect.py`` ``mlc_loss`` and ``nasbench201/train_search.py``):
the α step descends

    L_val(w, softmax(α)) + λ_t · (1/|E|) Σ_e log Σ_k exp(α_{e,k})

on the valid batch, first order, before the weight step. In the NB201 code
λ_t = 50·t/100 for the 0-based epoch t of a 100-epoch search (lineage 2: SGD wd 3e-4,
no Nesterov), which :attr:`Options.PAPER_PROTOCOL` applies under the ``paper`` preset.
Derivation: argmax per edge including ``none`` (AutoDL's genotype).

**[I]** Other epoch counts scale the ramp: λ_t = λ_max·t/T, λ_max = 50, so the
weight at a given fraction of the search is the code's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.config import Rule, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.regularizers import beta_decay, linear_ramp


@dataclass
class Options:
    RULES: ClassVar[dict[str, Rule]] = {"lambda_max": real(0)}
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {  # [S] the NB201 search script's defaults
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }

    lambda_max: float = 50.0  # [S] λ_t = 50·t/100 at T = 100


@register
class BetaDarts(Method):
    name = "beta_darts"
    summary = "β-DARTS: α loss + λ_t·mean_e logsumexp(α_e), λ linear 0→50"
    Options = Options
    alpha_first = True

    @property
    def lam(self) -> float:
        """λ_t = λ_max·t/T for the 0-based epoch t."""
        return linear_ramp(self.epoch, self.config.epochs, 0.0, self.options.lambda_max)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.edge_weights()) + self.lam * beta_decay(self.alpha)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, Any]:
        with torch.no_grad():
            term = float(beta_decay(self.alpha))
        return {"lambda_t": self.lam, "beta_decay": term}
