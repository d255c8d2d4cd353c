"""Selection: reading the final cell from a trained supernet, as its own axis.

:data:`SELECTIONS` holds each way by name; the search loop records ``argmax`` and the
configured one (:func:`wanted`) without knowing which they are. A selection trains and
evaluates through :mod:`harness.train`, the loop's own weight step and evaluation.

``select=argmax`` is :meth:`Method.derive` (per edge the op with the largest weight).
``select=pt`` is DARTS-PT's perturbation-based selection (Wang et al., ICLR 2021,
"Rethinking Architecture Selection in Differentiable NAS", arXiv 2108.04392; code
ruocwang/darts-pt ``nasbench201/projection.py``), usable after any method's search:

**[S]** The undecided edges are visited in random order. On the visited edge each op in
turn is masked out (its weight set to 0 in the current weights, decided edges one-hot)
and the supernet's accuracy on the whole search-valid split measured (train-mode BN,
the search's batch size); the op whose removal hurts most is chosen and the edge fixed
one-hot. Between decisions the supernet is fine-tuned as it was searched, α step then
weight step on each train batch, under the projected weights, with a fresh SGD at a
tenth of the initial learning rate (momentum 0.9, weight decay 3e-4, no Nesterov): on
NB201 5, 5, 5, 5 then 4 epochs after a 100-epoch search (``proj_intv`` 5, 25 epochs).

**[I]** Fine-tuning per decision is ``pt_tune_frac`` of the search's epochs (0.05: the
code's 5 of 100), so the CPU presets scale it with their budget. The α step is the
method's own (``Method.arch_step`` at its last epoch's schedule; the code's is DARTS's);
``pt_alpha=frozen`` keeps α as the search left it. ``pt_eval=gap`` scores on the fixed
gap-evaluation images (eval mode) instead; ``pt_tune=search`` fine-tunes equal intervals
with the search's SGD. On an exact tie ``none`` loses to a real op (the code takes the
first op, which is ``none``). The edge order is drawn from a generator seeded with the
run's seed, and the fine-tune batches are the loaders' epochs after the search, so the
selection is a pure function of the trained state.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness import selections, train
from harness.config import Config
from harness.data import CIFAR10_MEAN, CIFAR10_STD, normalize
from harness.methods.base import StepContext
from harness.space import NUM_EDGES, NUM_OPS, OPS, Cell
from harness.supernet import SuperNet
from harness.train import SearchState

PT_LR_FACTOR = 0.1  # [S] fine-tuning lr = base lr / 10 (projection.py: reset_optimizer)
CODE_INTERVALS = (5, 5, 5, 5, 4)
"""[S] Epochs fine-tuned after each of the first five decisions: projections at epochs
0, 5, 10, 15, 20 and 24 of ``proj_intv·(6 − 1)`` = 25 (``projection.py``)."""
CODE_WEIGHT_DECAY = 3e-4  # [S] darts-pt nasbench201/train_search.py --weight_decay
NONE = OPS.index("none")
Accuracy = Callable[[Tensor], float]
"""Supernet validation accuracy (%) under the given edge weights."""
Log = Callable[[str], None]


@dataclass
class PtSelection:
    """DARTS-PT's result: the cell and how each edge was decided."""

    cell: Cell
    order: list[int]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    tune_schedule: list[int] = field(default_factory=list)  # steps after decisions 1–5
    protocol: dict[str, Any] = field(default_factory=dict)  # pt_tune, pt_alpha, pt_eval

    @property
    def tune_steps(self) -> int:
        """Fine-tuning steps after the first decision (all but the code's last interval)."""
        return self.tune_schedule[0] if self.tune_schedule else 0

    def record(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "tune_steps": self.tune_steps,
            "tune_schedule": self.tune_schedule,
            **self.protocol,
            "decisions": self.decisions,
        }


def edge_order(seed: int) -> list[int]:
    """The random order DARTS-PT visits the edges in, seeded by the run's seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(NUM_EDGES, generator=generator).tolist()


def projected(weights: Tensor, decided: dict[int, int]) -> Tensor:
    """``weights`` ([.., 6, 5]) with each decided edge one-hot on its op (every stage)."""
    out = weights.detach().clone()
    for edge, op in decided.items():
        out[..., edge, :] = F.one_hot(torch.tensor(op), NUM_OPS).to(out)
    return out


def projected_live(weights: Tensor, decided: dict[int, int]) -> Tensor:
    """:func:`projected` that keeps the gradient of the undecided edges (the α step's)."""
    fixed = torch.zeros(NUM_EDGES, 1, dtype=torch.bool, device=weights.device)
    for edge in decided:
        fixed[edge] = True
    return torch.where(fixed, projected(weights, decided), weights)


def masked(weights: Tensor, edge: int, op: int) -> Tensor:
    """``weights`` with op ``op`` of edge ``edge`` set to 0 (DARTS-PT's projection mask)."""
    out = weights.clone()
    out[..., edge, op] = 0
    return out


def decide_edge(weights: Tensor, edge: int, accuracy: Accuracy) -> tuple[int, list[float]]:
    """The op whose removal leaves the lowest accuracy, and all five. Masking ``none``
    changes nothing, so on an exact tie a real op wins (removing it cost as much as
    removing nothing: it is kept, not the edge dropped); among real ops the first."""
    accs = [accuracy(masked(weights, edge, op)) for op in range(NUM_OPS)]
    return min(range(NUM_OPS), key=lambda op: (accs[op], op == NONE, op)), accs


def tune_schedule(config: Config, steps_per_epoch: int) -> list[int]:
    """Fine-tuning steps after each of the first five decisions: ``pt_tune_frac`` of the
    search's steps each, the last 4/5 of that under ``pt_tune=code`` (the code's 5,5,5,5,4)."""
    per_decision = config.pt_tune_frac * config.epochs * steps_per_epoch
    if config.pt_tune == "search":
        return [round(per_decision)] * (NUM_EDGES - 1)
    return [round(per_decision * k / CODE_INTERVALS[0]) for k in CODE_INTERVALS]


def tune_optimizer(model: SuperNet, config: Config) -> torch.optim.SGD:
    """A fresh SGD at a tenth of the search's lr: the code's (wd 3e-4, no Nesterov) under
    ``pt_tune=code``, the search's momentum, Nesterov and weight decay under ``search``."""
    code = config.pt_tune == "code"
    return train.sgd(
        model,
        config.w_lr * PT_LR_FACTOR,
        config.w_momentum,
        False if code else config.w_nesterov,
        CODE_WEIGHT_DECAY if code else config.w_weight_decay,
    )


def valid_accuracy(state: SearchState, batch_size: int) -> Accuracy:
    """Supernet accuracy on every image of the search-valid split, un-augmented, in
    batches of ``batch_size`` with train-mode BN (the code's ``infer(eval=False)``)."""
    images, labels = state.data.valid.images, state.data.valid.labels
    dtype = state.data.valid.dtype
    numerics = dataclasses.replace(state.numerics, channels_last=False)  # NCHW, as ever

    def accuracy(weights: Tensor) -> float:
        model = state.model
        model.train()
        correct = torch.zeros((), dtype=torch.int64, device=labels.device)
        with torch.no_grad():
            for start in range(0, labels.shape[0], batch_size):
                batch = normalize(
                    images[start : start + batch_size], CIFAR10_MEAN, CIFAR10_STD, dtype
                )
                logits = numerics.logits(lambda x: model(x, weights), batch)
                correct += (logits.argmax(1) == labels[start : start + batch_size]).sum()
        return 100.0 * int(correct) / labels.shape[0]

    return accuracy


def pt_select(
    state: SearchState,
    config: Config,
    accuracy: Accuracy,
    log: Callable[[str], None] = lambda _: None,
) -> PtSelection:
    """DARTS-PT on the trained ``state``; fine-tunes ``state.model`` (and, under
    ``pt_alpha=step``, the method's α) in place."""
    order = edge_order(config.seed)
    protocol = {"pt_tune": config.pt_tune, "pt_alpha": config.pt_alpha, "pt_eval": config.pt_eval}
    schedule = tune_schedule(config, state.data.train.batches_per_epoch)
    result = PtSelection(Cell.from_indices([0] * NUM_EDGES), order, [], schedule, protocol)
    tuning = _Tuning(state, config, tune_optimizer(state.model, config))
    prefix = f"pt: {config.method} seed {config.seed}:"
    decided: dict[int, int] = {}
    for i, edge in enumerate(order):
        weights = projected(state.method.edge_weights(), decided)
        op, accs = decide_edge(weights, edge, accuracy)
        decided[edge] = op
        result.decisions.append({"edge": edge, "op": OPS[op], "acc_without": accs})
        log(f"{prefix} edge {edge} -> {OPS[op]} (accuracy without each op: {accs})")
        if i < NUM_EDGES - 1:
            tuning.run(decided, schedule[i])
    result.cell = Cell.from_indices([decided[k] for k in range(NUM_EDGES)])
    return result


@dataclass
class ProjectedContext(StepContext):
    """The step context of PT's fine-tuning: every loss sees the ``decided`` edges
    one-hot (the code's ``get_projected_weights`` inside its forward), α's step included."""

    decided: dict[int, int] = field(default_factory=dict)

    def loss(
        self,
        batch: tuple[Tensor, Tensor],
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        sampled: Tensor | None = None,
    ) -> Tensor:
        weights = projected_live(weights, self.decided)
        if active is not None:  # a sampled cell: the decided edges run their chosen op
            active = projected(active.to(weights.dtype), self.decided).bool()
        if sampled is not None:
            sampled = projected(sampled.to(weights.dtype), self.decided).bool()
        return super().loss(batch, weights, active, straight_through, sampled)


class _Tuning:
    """PT's fine-tuning between decisions, on the loaders' epochs after the search."""

    def __init__(self, state: SearchState, config: Config, optimizer: torch.optim.SGD):
        self.state, self.config, self.optimizer = state, config, optimizer
        self.train = _batches(state.data.train, config.epochs)
        self.valid = _batches(state.data.valid, config.epochs)
        self.steps_per_epoch = state.data.train.batches_per_epoch
        self.done = 0

    def run(self, decided: dict[int, int], steps: int) -> None:
        """``steps`` fine-tuning steps with ``decided`` edges one-hot."""
        state, config = self.state, self.config
        state.model.train()
        for _ in range(steps):
            train = state.prepare(next(self.train))
            if config.pt_alpha == "step":
                self._alpha_step(decided, train, state.prepare(next(self.valid)))
            self._weight_step(projected(state.method.edge_weights(), decided), train)
            self.done += 1

    def _alpha_step(
        self, decided: dict[int, int], train: tuple[Tensor, Tensor], valid: tuple[Tensor, Tensor]
    ) -> None:
        """The method's α step (the code's ``architect.step``, before the weight step)."""
        config = self.config
        ctx = ProjectedContext(
            self.state.model,
            self.optimizer,
            config.epochs - 1,
            self.done % self.steps_per_epoch,
            self.steps_per_epoch,
            config.epochs,
            self.state.numerics,
            decided=decided,
        )
        self.state.method.arch_step(ctx, train, valid)

    def _weight_step(self, weights: Tensor, batch: tuple[Tensor, Tensor]) -> None:
        """One SGD step on the shared weights under the projected ``weights``."""
        state, model = self.state, self.state.model

        def forward(images: Tensor) -> Tensor:
            return model(images, weights)

        train.sgd_step(model, self.optimizer, state.numerics, state.grad_clip, forward, batch)


def _batches(loader: Any, first_epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
    """A loader's batches of the epochs after the search, endlessly."""
    epoch = first_epoch
    while True:
        yield from loader.epoch_batches(epoch)
        epoch += 1


def gap_accuracy(state: SearchState, config: Config) -> Accuracy:
    """Supernet accuracy (eval mode) on the fixed gap-evaluation images (``pt_eval=gap``)."""
    data = state.data
    args = (data.eval_images, data.eval_labels, config.gap_eval_batch)
    return lambda weights: train.evaluate(state.model, weights, None, *args, state.numerics)[0]


def pt_accuracy(state: SearchState, config: Config) -> Accuracy:
    """PT's supernet accuracy under given edge weights: on the whole search-valid split
    (``pt_eval=valid``) or the gap-evaluation images (``gap``)."""
    if config.pt_eval == "valid":
        return valid_accuracy(state, config.batch_size)
    return gap_accuracy(state, config)


# --- the registry -------------------------------------------------------------------------
Read = Callable[[SearchState, Config, Log], tuple[Cell, dict[str, Any]]]
"""A selection on a trained state: its cell and what ``final.json`` records beside it."""


@dataclass(frozen=True)
class Selection:
    """One way to read the final cell from the trained supernet."""

    read: Read
    needs_finished: bool  # only a finished search leaves a supernet worth reading this way


def _argmax(state: SearchState, config: Config, log: Log) -> tuple[Cell, dict[str, Any]]:
    del config, log
    return state.method.derive(), {}


def _pt(state: SearchState, config: Config, log: Log) -> tuple[Cell, dict[str, Any]]:
    started = time.perf_counter()
    result = pt_select(state, config, pt_accuracy(state, config), log)
    return result.cell, {**result.record(), "wall_s": round(time.perf_counter() - started, 3)}


SELECTIONS: dict[str, Selection] = {
    "argmax": Selection(_argmax, needs_finished=False),
    "pt": Selection(_pt, needs_finished=True),  # fine-tunes the supernet in place
}
"""Every selection by name, as :data:`harness.selections.NAMES` lists them for the config."""


def wanted(select: str) -> list[str]:
    """The selections a run records: ``argmax`` always (the cell every method derives, what
    the gap is measured on), then the configured one."""
    return list(dict.fromkeys([selections.ALWAYS, select]))
