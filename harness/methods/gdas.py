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

Host syncs: two per search step, one per draw (weight step, α step), and they are part
of the algorithm. GDAS's saving is that only the sampled op of each edge is computed, so
the host must know the sample (AutoDL reads it per edge with ``.item()``), and the sample
depends on α, which the previous α step has just changed on the device. A device-side
sample would need every op computed and masked: the dense cost GDAS avoids, and other
numbers (other summation order). Each draw reads the sampled indices and AutoDL's
"p̃ is finite" check in one copy (``straight_through_gumbel``); ``tests/test_host_syncs.py``
holds the count at two.

**[I]** The discretization gap's "continuous" supernet uses softmax(α), the
distribution GDAS samples from at τ = 1 (GDAS itself never runs a mixed forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, real
from harness.devices import to_device
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.sampling import linear_temperature, straight_through_gumbel
from harness.supernet import CONV1, CONV3, SLOT_EDGES, SearchCell

Held = tuple[Tensor, Tensor, Tensor, Tensor | None]
"""A parameter, its rows of unsampled ops (bool, on the device), its values and
momentum before the step."""


@dataclass
class Options:
    """GDAS hyper-parameters: [S] AutoDL's NB201 script (GDAS.sh, GDAS.config)."""

    RULES: ClassVar[dict[str, Rule]] = {
        "tau_max": real(0, above=True),
        "tau_min": real(0, above=True),
    }
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {"epochs": 250}  # [S] GDAS.config

    tau_max: float = 10.0  # [S] --tau_max 10
    tau_min: float = 0.1  # [S] --tau_min 0.1
    hold_unsampled: bool = True  # PyTorch ≥ 2 AutoDL; false: the 1.x run (see the docstring)


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

    def sample(self) -> tuple[Tensor, Tensor]:
        """(straight-through weights [6, 5], host bool mask of the sampled ops)."""
        return straight_through_gumbel(self.alpha, self.tau)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_active: Tensor | None = None  # the cell of the current weight step
        self._held: list[Held] = []

    def weight_step_inputs(self) -> tuple[Tensor, Tensor | None]:
        """A fresh cell; only its ops run (the other weights are exactly zero)."""
        weights, active = self.sample()
        self._step_active = active
        return weights.detach(), active

    def before_weight_update(self, ctx: StepContext) -> None:
        """Keep the conv kernels, biases and momentum of the cells, to put back the
        rows of the ops this step did not sample (selected on the device: no sync)."""
        self._held = []
        if self._step_active is None or not self.options.hold_unsampled:
            return
        for kind, op in (("conv3", CONV3), ("conv1", CONV1)):
            unsampled = ~self._step_active[list(SLOT_EDGES), op]  # host, storage row order
            if not bool(unsampled.any()):
                continue
            rows = to_device(unsampled, self.device)
            for layer in self.model.layers:
                if not isinstance(layer, SearchCell):
                    continue
                for name in ("weight", "bias"):
                    param = getattr(layer, f"{kind}_{name}")
                    buffer = ctx.w_optimizer.state.get(param, {}).get("momentum_buffer")
                    saved = None if buffer is None else buffer.clone()
                    self._held.append((param, rows, param.detach().clone(), saved))

    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        """Put those rows back: SGD skips AutoDL's unsampled modules (no gradient)."""
        with torch.no_grad():
            for param, rows, values, momentum in self._held:
                held = rows.view(-1, *[1] * (param.dim() - 1))
                param.copy_(torch.where(held, values, param))
                buffer = ctx.w_optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None:  # no buffer before: as if the module had none yet
                    before = torch.zeros_like(buffer) if momentum is None else momentum
                    buffer.copy_(torch.where(held, before, buffer))
        self._held = []

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        weights, active = self.sample()
        loss = ctx.loss(valid, weights, active, straight_through=True)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, float]:
        return {"tau": self.tau}
