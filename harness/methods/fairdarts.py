"""FairDARTS: independent sigmoids and the zero-one loss (methods-spec §9).

**[S]** (Chu et al., ECCV 2020, arXiv 1911.12126; code xiaomi-automl/FairDARTS,
``fairdarts/``): every op weight is an independent σ(α_{e,o}), so ops cooperate
rather than compete for one softmax; α starts at 0 (σ = ½) and its step descends

    L_val(w, σ(α)) + w₀₁ · L₀₁,   L₀₁ = −(1/N) Σ (σ(α) − ½)²,   w₀₁ = 10,

on the valid batch (bilevel, first order), before the weight step (``architect.step``
precedes the weight update). The code derives a DARTS-space cell with
``--parse_method threshold_sparse`` (``fairdarts/utils.py`` ``parse``): per node the two
input edges with the largest σ, and on each the op with the largest σ if it reaches
``--op_threshold`` 0.85, else no op — the edge is dropped. Its op set has no ``none``.

**[I]** On NB201 ``none`` never moves: α starts at 0, the op outputs zero (no loss
gradient), the zero-one loss has zero gradient at σ = ½ and weight decay on 0 is 0, so
σ(α_none) = ½ for the whole run. ``derive="threshold"`` (default) is the code's
``threshold_sparse`` read on NB201: per edge the real op (``none`` excluded, as from
the code's op set) with the largest σ if σ ≥ ``threshold``, else ``none`` (dropped).
The code's two-inputs-per-node limit is DARTS's genotype format; NB201's cell keeps
every edge of its DAG, so it is not applied. ``derive="argmax"`` (the harness's
behaviour before issue 30) takes the largest σ with ``none`` included, which means
"``none`` wherever every real op is below ½". The code's optimiser values (DARTS
space: batch 128, w lr 0.005, α Adam lr 3e-3, betas (0.9, 0.999)) are not an NB201
protocol; the α step uses the configured Adam, as for every method (docs/methods.md
gives the ``--set`` line). Telemetry's ``alpha`` (and the α-space gap metrics) see σ
normalised per edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, one_of, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.regularizers import zero_one
from harness.space import OPS, Cell

NONE = OPS.index("none")


@dataclass
class Options:
    RULES: ClassVar[dict[str, Rule]] = {
        "zero_one_weight": real(0),
        "derive": one_of("argmax", "threshold"),
        "threshold": real(0, 1),
    }

    zero_one_weight: float = 10.0  # [S] --aux_loss_weight
    derive: str = "threshold"  # [S] threshold_sparse on NB201; "argmax": σ, none included
    threshold: float = 0.85  # [S] --op_threshold


def threshold_cell(weights: Tensor, threshold: float) -> Cell:
    """Per edge the real op with the largest weight if it reaches ``threshold``, else
    ``none`` (the code's ``threshold_sparse``: ``W[j][k_best] >= op_threshold``)."""
    real = weights.clone()
    real[..., NONE] = -torch.inf  # the code's op set has no `none`
    top, index = real.max(-1)
    return Cell.from_indices(torch.where(top >= threshold, index, NONE).tolist())


@register
class FairDarts(Method):
    name = "fairdarts"
    summary = "FairDARTS: sigmoid(α) weights, α loss + 10·zero-one loss; σ ≥ 0.85 per edge"
    Options = Options
    alpha_first = True

    def initial_alpha(self) -> Tensor:
        """α = 0 (σ = ½ everywhere), as the code initialises it."""
        return torch.zeros(self.alpha_shape(), device=self.device)

    def edge_weights(self) -> Tensor:
        return self.alpha.sigmoid()

    def derive(self) -> Cell:
        weights = self.edge_weights().detach()
        if self.options.derive == "threshold":
            return threshold_cell(weights, self.options.threshold)
        return Cell.from_indices(weights.argmax(-1).tolist())

    def probabilities(self) -> Tensor:
        weights = self.edge_weights().detach()
        return weights / weights.sum(-1, keepdim=True)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        weights = self.edge_weights()
        loss = ctx.loss(valid, weights) + self.options.zero_one_weight * zero_one(weights)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, Any]:
        with torch.no_grad():
            weights = self.edge_weights()
            return {
                "zero_one": float(zero_one(weights)),
                "sigmoid_max": float(weights.max(-1).values.mean()),
                "above_threshold": int((weights > self.options.threshold).sum()),
            }
