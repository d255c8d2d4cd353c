"""Selection: reading the final cell from a trained supernet, as its own axis.

``select=argmax`` is :meth:`Method.derive` (per edge the op with the largest weight).
``select=pt`` is DARTS-PT's perturbation-based selection (Wang et al., ICLR 2021,
"Rethinking Architecture Selection in Differentiable NAS", arXiv 2108.04392; code
ruocwang/darts-pt ``nasbench201/projection.py``), usable after any method's search:

**[S]** The undecided edges are visited in random order. On the visited edge each op in
turn is masked out (its weight set to 0 in the current weights, decided edges one-hot)
and the supernet's validation accuracy measured; the op whose removal hurts most is
chosen and the edge fixed one-hot. Between decisions the supernet is fine-tuned with
SGD at a tenth of the search's initial learning rate on the train batches; NB201 takes
5 epochs per decision after a 100-epoch search (``proj_intv``, 25 epochs in all).

**[I]** Fine-tuning per decision is ``pt_tune_frac`` of the search's epochs (0.05: the
code's 5 of 100), so the CPU presets scale it with their budget. Only the shared
weights are fine-tuned: the code also keeps stepping α with its DARTS architect, which
is method-specific; here α stays as the search left it. Accuracy is measured on the
run's fixed gap-evaluation images (a subset of search-valid) rather than all of it.
The edge order is drawn from a generator seeded with the run's seed, and the fine-tune
batches are the train loader's for epochs after the search, so the selection is a pure
function of the trained state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config
from harness.space import NUM_EDGES, NUM_OPS, OPS, Cell

if TYPE_CHECKING:
    from harness.search import SearchState

SELECTIONS = ("argmax", "pt")
PT_LR_FACTOR = 0.1  # [S] fine-tuning lr = base lr / 10
Accuracy = Callable[[Tensor], float]
"""Supernet validation accuracy (%) under the given edge weights."""


@dataclass
class PtSelection:
    """DARTS-PT's result: the cell and how each edge was decided."""

    cell: Cell
    order: list[int]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    tune_steps: int = 0  # fine-tuning steps after each decision but the last

    def record(self) -> dict[str, Any]:
        return {"order": self.order, "tune_steps": self.tune_steps, "decisions": self.decisions}


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


def masked(weights: Tensor, edge: int, op: int) -> Tensor:
    """``weights`` with op ``op`` of edge ``edge`` set to 0 (DARTS-PT's projection mask)."""
    out = weights.clone()
    out[..., edge, op] = 0
    return out


def decide_edge(weights: Tensor, edge: int, accuracy: Accuracy) -> tuple[int, list[float]]:
    """The op whose removal leaves the lowest accuracy (first on ties), and all five."""
    accs = [accuracy(masked(weights, edge, op)) for op in range(NUM_OPS)]
    return min(range(NUM_OPS), key=lambda op: (accs[op], op)), accs


def tune_steps(config: Config, steps_per_epoch: int) -> int:
    """Fine-tuning steps per decision: ``pt_tune_frac`` of the search's steps."""
    return round(config.pt_tune_frac * config.epochs * steps_per_epoch)


def pt_select(
    state: SearchState,
    config: Config,
    accuracy: Accuracy,
    log: Callable[[str], None] = lambda _: None,
) -> PtSelection:
    """DARTS-PT on the trained ``state``; fine-tunes ``state.model`` in place."""
    order = edge_order(config.seed)
    steps = tune_steps(config, state.data.train.batches_per_epoch)
    result = PtSelection(Cell.from_indices([0] * NUM_EDGES), order, tune_steps=steps)
    optimizer = torch.optim.SGD(
        state.model.parameters(),
        lr=config.w_lr * PT_LR_FACTOR,
        momentum=config.w_momentum,
        nesterov=config.w_nesterov,
        weight_decay=config.w_weight_decay,
    )
    batches = _train_batches(state, config.epochs)
    decided: dict[int, int] = {}
    for i, edge in enumerate(order):
        weights = projected(state.method.edge_weights(), decided)
        op, accs = decide_edge(weights, edge, accuracy)
        decided[edge] = op
        result.decisions.append({"edge": edge, "op": OPS[op], "acc_without": accs})
        log(f"pt: edge {edge} -> {OPS[op]} (accuracy without each op: {accs})")
        if i < NUM_EDGES - 1:
            tuned = projected(state.method.edge_weights(), decided)
            _fine_tune(state, tuned, batches, optimizer, steps)
    result.cell = Cell.from_indices([decided[k] for k in range(NUM_EDGES)])
    return result


def _train_batches(state: SearchState, first_epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Train batches of the epochs after the search, endlessly."""
    epoch = first_epoch
    while True:
        yield from state.data.train.epoch_batches(epoch)
        epoch += 1


def _fine_tune(
    state: SearchState,
    weights: Tensor,
    batches: Iterator[tuple[Tensor, Tensor]],
    optimizer: torch.optim.SGD,
    steps: int,
) -> None:
    """``steps`` SGD steps on the shared weights under the projected ``weights``."""
    model = state.model
    model.train()
    for _ in range(steps):
        images, labels = state.prepare(next(batches))
        optimizer.zero_grad(set_to_none=True)
        with state.autocast():
            logits = model(images, weights)
        loss = F.cross_entropy(logits.float() if state.bf16 else logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), state.grad_clip)
        optimizer.step()
