"""DARTS-: an auxiliary skip with decaying coefficient β on every edge (methods-spec §9).

**[S]** (Chu et al., ICLR 2021, arXiv 2009.01027; code Meituan-AutoML/DARTS-,
``src/search/model_search.py`` and ``src/utils.py``): every mixed edge computes

    ō(x) = β_t·x + Σ_o softmax(α)_o·o(x),

in the α step and the weight step alike, so the skip's advantage in the early
search comes from the auxiliary term rather than from α. β decays linearly from
β₀ = 1 to 0 over the search (the code's ``DecayScheduler``, ``linear``):
β_t = β₀·(T − t)/T for epoch t of T. The α step is DARTS first order on the valid
batch and comes before the weight step (DARTS's ``train_search``). Derivation is
DARTS's: argmax of softmax(α) per edge, the auxiliary skip dropped.

**[I]** harness choices: t is the 0-based epoch (β = 1 in the first epoch, 1/T in the
last); the code's epoch indexing is not pinned by the paper. The auxiliary skip is
carried as β more weight on ``skip_connect`` (exact: the auxiliary op is the identity),
so the continuous supernet of the gap measurement includes it and the one-hot one does not.
The paper searches the DARTS space; NB201 here uses the harness's DARTS protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.perturbation import with_aux_skip
from harness.methods.parts.regularizers import linear_ramp
from harness.space import Cell


@dataclass
class Options:
    RULES: ClassVar[dict[str, Rule]] = {"beta0": real(0)}

    beta0: float = 1.0  # [S] --skip_beta: β at the start of the linear decay to 0


@register
class DartsMinus(Method):
    name = "darts_minus"
    summary = "DARTS-: auxiliary skip β_t·x on every edge, β linear 1→0; argmax softmax(α)"
    Options = Options
    alpha_first = True

    @property
    def beta(self) -> float:
        """β_t = β₀·(T − t)/T for the 0-based epoch t."""
        return linear_ramp(self.epoch, self.config.epochs, self.options.beta0, 0.0)

    def softmax(self) -> Tensor:
        return self.alpha.softmax(-1)

    def edge_weights(self) -> Tensor:
        """softmax(α) plus β_t on skip: the supernet with the auxiliary skip."""
        return with_aux_skip(self.softmax(), self.beta)

    def derive(self) -> Cell:
        """Argmax of softmax(α) per edge, ``none`` included; no auxiliary skip."""
        return Cell.from_indices(self.softmax().detach().argmax(-1).tolist())

    def probabilities(self) -> Tensor:
        return self.softmax().detach()

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.edge_weights())
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, Any]:
        return {"beta": self.beta}
