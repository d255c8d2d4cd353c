"""RSPS: random search with parameter sharing (Li & Talwalkar, UAI 2019; a NAS-Bench-201
baseline, methods-spec §2.4).

Every weight step trains one cell drawn uniformly from the space (each edge's op
uniform and independent), so the shared weights are trained without any
architecture preference; there are no architecture parameters to learn. The cell
is derived as the best of K uniformly sampled cells by one-shot accuracy on the
fixed search-valid images ([S]: AutoDL's RANDOM-NAS picks from 100 candidates;
[I]: it scores each on one valid batch, we score all K on the same fixed images so
candidates are compared on equal terms). It separates "at this scale the shared
weights cannot rank anything" from "a DARTS-trained supernet ranks poorly".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Rule, integer
from harness.devices import to_device
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.space import NUM_EDGES, NUM_OPS, Cell

PATH_STREAM = 7_201
"""Salt of the path-sampling stream, apart from every other seeded stream."""
CANDIDATE_STREAM = 7_202
"""Salt of the candidate stream: the same K candidates at every derive of a run."""


@dataclass
class RspsOptions:
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {"epochs": 250}  # [S] AutoDL RANDOM.config
    RULES: ClassVar[dict[str, Rule]] = {
        "candidates": integer(1, note="cells sampled and scored to derive one"),
        "eval_size": integer(0, note="images each candidate is scored on; 0 = gap_eval_size"),
    }
    candidates: int = 100
    eval_size: int = 0


@register
class Rsps(Method):
    name = "rsps"
    summary = "random search with parameter sharing: uniform single-path training, best of K"
    Options = RspsOptions
    derives_from_alpha = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paths = np.random.default_rng([self.config.seed, PATH_STREAM])
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        self.batch_size = 0
        self._derived: tuple[int, Cell] | None = None  # (weight steps seen, cell)
        self._steps = 0

    def initial_alpha(self) -> Tensor:
        """No architecture preference: α stays zero (uniform weights) for the whole run."""
        return torch.zeros(self.alpha_shape(), device=self.device)

    def bind_data(self, images: Tensor, labels: Tensor, batch_size: int) -> None:
        size = self.options.eval_size or images.shape[0]
        self.images, self.labels, self.batch_size = images[:size], labels[:size], batch_size

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        """Nothing to learn: the architecture is never a parameter."""
        del ctx, train, valid

    def weight_step_inputs(self) -> tuple[Tensor, Tensor | None]:
        """This step's cell, drawn uniformly (one op per edge), and its mask: the fused
        supernet computes only the drawn path."""
        ops = torch.from_numpy(self.paths.integers(0, NUM_OPS, NUM_EDGES))
        mask = F.one_hot(ops, NUM_OPS).bool()  # drawn on the host: the mask stays there
        return to_device(mask.to(self.dtype), self.device), mask

    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        del ctx, grad_norm
        self._steps += 1

    def derive(self) -> Cell:
        """The best of K candidates by one-shot accuracy; cached until the weights move."""
        if self._derived is None or self._derived[0] != self._steps:
            self._derived = (self._steps, self._best_candidate())
        return self._derived[1]

    def _best_candidate(self) -> Cell:
        from harness import ranking  # ranking imports the search stack; methods stay light

        if self.images is None or self.labels is None:
            raise RuntimeError("rsps derives on search-valid images: call bind_data first")
        generator = np.random.default_rng([self.config.seed, CANDIDATE_STREAM])
        cells = ranking.sample_cells(self.options.candidates, generator)
        scores = ranking.score_cells(self.model, cells, self.images, self.labels, self.batch_size)
        return cells[int(np.argmax(scores))]  # first best on ties: deterministic

    def extra_state(self) -> dict[str, Any]:
        return {"paths": self.paths.bit_generator.state, "steps": self._steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state:
            self.paths.bit_generator.state = state["paths"]
            self._steps = int(state["steps"])
