"""DARTS, first order (DARTS-V1; methods-spec §2.1–2.2).

Per step: a weight step on the train batch, then an α step with
g_α = ∇_α L_val(w, α) at the current weights.
"""

from __future__ import annotations

import torch

from harness.methods import register
from harness.methods.base import Batch, Method, StepContext


@register
class Darts(Method):
    name = "darts"
    summary = "DARTS first order: α step on the valid batch at the current weights"

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.edge_weights())
        grads = torch.autograd.grad(loss, self.arch_parameters())
        self.apply_gradient(list(grads))
