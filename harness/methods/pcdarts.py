"""PC-DARTS: the mixed op on 1/K of the channels, then a channel shuffle (methods-spec §9).

**[S]** Xu et al., "PC-DARTS: partial channel connections for memory-efficient
architecture search", ICLR 2020 (yuhuixu1993/PC-DARTS). On each edge the candidate ops
see the first C/K channels of the source, the rest bypass them, and the edge output is
``channel_shuffle(cat(Σ_o p_o·o(x[:, :C/K]), x[:, C/K:]), K)``; K = 4 on CIFAR. The
supernet does this (``partial_channels``, both implementations); the update rule is
DARTS first order.

The NB201 numbers quoted for PC-DARTS come from DrNAS's runs
(xiangning-chen/DrNAS ``201-space``: ``NAS201SearchCell_PartialChannel`` with
``--method darts``), whose protocol this follows: per step the α step (valid batch)
before the weight step, α from the first epoch, 100 epochs, SGD weight decay 3e-4
without Nesterov. Edge normalisation (β per input edge) is not used there, and it has
nothing to select on NB201, where every edge is kept. **[I]** K = 4 for NB201: the
paper's CIFAR value; DrNAS does not record the K of its PC-DARTS row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.config import Rule, integer
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext


@dataclass
class Options:
    """PC-DARTS hyper-parameters."""

    RULES: ClassVar[dict[str, Rule]] = {"k": integer(1, note="must divide C")}
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {  # [S] DrNAS train_search.py defaults
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }

    k: int = 4  # [S] the paper's K on CIFAR


@register
class Pcdarts(Method):
    name = "pcdarts"
    summary = "PC-DARTS: mixed op on 1/K of the channels + channel shuffle, α step first"
    Options = Options
    alpha_first = True

    @classmethod
    def supernet_options(cls, options: Any) -> dict[str, Any]:
        return {"partial_channels": options.k}

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.edge_weights())
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))
