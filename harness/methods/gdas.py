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

In AutoDL the modules of the ops not sampled in a weight step get no gradient, so SGD
leaves them alone: no weight decay, no momentum. Our kernels are stacked per cell, so
they would get a zero gradient and still move; GDAS therefore puts their rows (weights,
biases, momentum buffers) back after each weight step (``tests/test_oracle.py`` checks
steps against xautodl with momentum, Nesterov and weight decay on). That is AutoDL
under PyTorch ≥ 2, whose ``zero_grad`` sets gradients to None. The published numbers
were produced under PyTorch 1.x, whose ``zero_grad`` zeroed them in place: an op
sampled once keeps a zero gradient when unsampled, so SGD still applies weight decay
and momentum to it. ``hold_unsampled=false`` gives that behaviour (our rows move as
1.x moved them, except before an op's first sample, where 1.x had no gradient yet).

Host syncs: GDAS's saving is that only the sampled op of each edge is computed, so the
host must know the sample (AutoDL reads it per edge with ``.item()``), and the sample
depends on α, which the previous α step has just changed on the device. By default
(``sampling=host``) each draw reads the sampled indices and AutoDL's "p̃ is finite" check
in one copy (``straight_through_gumbel``): two syncs per search step, one per draw.
``sampling=device`` keeps the sample on the device and computes every op, the unsampled
ones at an exact zero weight (``SuperNet.forward(sampled=…)``): no sync, one CUDA graph
for every sample, the dense (DARTS) cost per step instead of the sample's — for a GPU,
where a sync idles the device and the extra ops are cheap. Same noise, same numbers up
to rounding (tests: float64 steps of both modes agree; ``tests/test_host_syncs.py``
holds the counts at two and zero). Not recorded as a protocol change: it changes where
the work is done, not what is computed.

**[I]** The discretization gap's "continuous" supernet uses softmax(α), the
distribution GDAS samples from at τ = 1 (GDAS itself never runs a mixed forward).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from harness.config import Rule, one_of, real
from harness.devices import to_device
from harness.errors import UsageError
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.sampling import (
    linear_temperature,
    straight_through_gumbel,
    straight_through_gumbel_on_device,
)
from harness.space import EDGES
from harness.supernet import CONV1, CONV3, NONE, SLOT_EDGES, SearchCell

Held = tuple[Tensor, Tensor, Tensor, Tensor | None]
"""A parameter, what of it to put back (bool per row, or one for all of it, on the
device), its values and momentum before the step."""


@dataclass
class Options:
    """GDAS hyper-parameters: [S] AutoDL's NB201 script (GDAS.sh, GDAS.config)."""

    RULES: ClassVar[dict[str, Rule]] = {
        "tau_max": real(0, above=True),
        "tau_min": real(0, above=True),
        "sampling": one_of("host", "device"),
    }
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {"epochs": 250}  # [S] GDAS.config

    tau_max: float = 10.0  # [S] --tau_max 10
    tau_min: float = 0.1  # [S] --tau_min 0.1
    hold_unsampled: bool = True  # PyTorch ≥ 2 AutoDL; false: the 1.x run (see the docstring)
    sampling: str = "host"  # host: only the sampled ops run; device: all, no sync (GPU)


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

    @property
    def on_device(self) -> bool:
        return self.options.sampling == "device"

    def sample(self) -> tuple[Tensor, Tensor]:
        """(straight-through weights [6, 5], bool mask of the sampled ops: on the host,
        or on α's device with ``sampling=device``)."""
        if self.on_device:
            return straight_through_gumbel_on_device(self.alpha, self.tau)
        return straight_through_gumbel(self.alpha, self.tau)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.on_device and self.config.track_running_stats:
            raise UsageError(
                "gdas.sampling=device computes every op, so running BN statistics would "
                "move for ops the sample did not pick: use sampling=host with "
                "track_running_stats=true, or track_running_stats=false"
            )
        self._step_active: Tensor | None = None  # the cell of the current weight step
        self._held: list[Held] = []

    def weight_step_inputs(self) -> tuple[Tensor, Tensor | None]:
        """A fresh cell; only its ops run (the other weights are exactly zero), or with
        ``sampling=device`` every op, the unsampled ones at weight zero."""
        weights, active = self.sample()
        self._step_active = active
        return weights.detach(), None if self.on_device else active

    def before_weight_update(self, ctx: StepContext) -> None:
        """Keep what this step's SGD update must not move, to put it back after: the rows
        of the ops this step did not sample and, with ``sampling=device``, whatever the
        sparse forward leaves without a gradient (:func:`reached`). Selected on the
        device: no sync."""
        self._held = []
        if self._step_active is None:
            return
        for param, rows in self._holds():
            buffer = ctx.w_optimizer.state.get(param, {}).get("momentum_buffer")
            saved = None if buffer is None else buffer.clone()
            self._held.append((param, rows, param.detach().clone(), saved))

    def _holds(self) -> list[tuple[Tensor, Tensor]]:
        """(parameter, bool per row or for all of it, on the device) to put back.

        The sampled path's sparse forward computes only the sampled ops, so a parameter
        none of whose computed ops reaches the loss gets no gradient and SGD skips it
        (no weight decay, no momentum). The dense forward of ``sampling=device`` gives
        it a zero gradient instead; holding it gives the sampled path's numbers.
        """
        cells = [m for m in self.model.layers if isinstance(m, SearchCell)]
        paths = reached(self._step_active) if self.on_device else None
        holds: list[tuple[Tensor, Tensor]] = []
        for kind, op in (("conv3", CONV3), ("conv1", CONV1)):
            rows = self._unsampled_rows(op) if self.options.hold_unsampled else None
            for cell in cells:
                mask = rows
                if paths is not None:  # the cell's output must reach the loss as well
                    used = paths.ops[op] & (paths.through | (cell is cells[-1]))
                    mask = ~used if mask is None else mask | ~used
                if mask is not None:
                    holds += [(getattr(cell, f"{kind}_{n}"), mask) for n in ("weight", "bias")]
        if paths is not None:  # the stem and reductions: reached through every cell
            layers = list(self.model.layers)
            for module in [self.model.stem, *layers[: layers.index(cells[-1])]]:
                if not isinstance(module, SearchCell):
                    holds += [(param, ~paths.through) for param in module.parameters()]
        return holds

    def _unsampled_rows(self, op: int) -> Tensor | None:
        """Bool per stacked row (storage order, on the device): op ``op`` was not sampled
        on that row's edge this step. None when every edge sampled it (known only from a
        host mask: a device mask is not read, every row is held, sampled ones unchanged)."""
        active = self._step_active
        assert active is not None
        if self.on_device:
            cell = next(m for m in self.model.layers if isinstance(m, SearchCell))
            return ~active.index_select(0, cell.edge_rows)[:, op]
        unsampled = ~active[list(SLOT_EDGES), op]
        return to_device(unsampled, self.device) if bool(unsampled.any()) else None

    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        """Put those rows back: SGD skips AutoDL's unsampled modules (no gradient)."""
        with torch.no_grad():
            for param, rows, values, momentum in self._held:
                held = rows.reshape(-1, *[1] * (param.dim() - 1))
                param.copy_(torch.where(held, values, param))
                buffer = ctx.w_optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None:  # no buffer before: as if the module had none yet
                    before = torch.zeros_like(buffer) if momentum is None else momentum
                    buffer.copy_(torch.where(held, before, buffer))
        self._held = []

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        weights, active = self.sample()
        if self.on_device:
            loss = ctx.loss(valid, weights, sampled=active)
        else:
            loss = ctx.loss(valid, weights, active, straight_through=True)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, float]:
        return {"tau": self.tau}


class Paths(NamedTuple):
    """What the sparse forward of a one-hot cell connects to the cell's output."""

    ops: Tensor  # [5] bool: the op is sampled on an edge whose target reaches node 3
    through: Tensor  # bool: node 3 depends on node 0 (the cell passes its input on)


def reached(sampled: Tensor) -> Paths:
    """:class:`Paths` of the one-hot cell ``sampled`` ([6, 5] bool), on its device.

    Along an edge whose op is ``none`` nothing flows. A node reaches the output when an
    edge to a node that reaches it leaves it with an op (node 3 does); node 0's input
    passes on when a chain of such edges joins it to node 3.
    """
    carries = (~sampled[:, NONE]).unbind(0)
    yes = torch.ones((), dtype=torch.bool, device=sampled.device)
    reaches: dict[int, Tensor] = {3: yes}
    for node in (2, 1):
        reaches[node] = _any(carries[k] & reaches[t] for k, (t, s) in enumerate(EDGES) if s == node)
    fed: dict[int, Tensor] = {0: yes}
    for node in (1, 2, 3):
        fed[node] = _any(carries[k] & fed[s] for k, (t, s) in enumerate(EDGES) if t == node)
    edge_reaches = torch.stack([carries[k] & reaches[t] for k, (t, _) in enumerate(EDGES)])
    return Paths((sampled & edge_reaches[:, None]).any(0), fed[3])


def _any(terms: Iterator[Tensor]) -> Tensor:
    return functools.reduce(operator.or_, terms)
