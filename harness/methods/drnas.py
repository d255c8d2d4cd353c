"""DrNAS: Dirichlet-distributed edge weights with pathwise gradients (methods-spec §9).

**[S]** Chen et al., "DrNAS: Dirichlet neural architecture search", ICLR 2021; code
xiangning-chen/DrNAS ``201-space`` (``train_search.py``, ``train_search_progressive.py``,
``search_model.py``, ``utils.process_step_matrix``, ``architect.py``, ``net2wider.py``):

* per edge w_e ~ Dirichlet(β_e), β_e = ELU(θ_e) + 1, drawn afresh in every forward
  (weight step and α step) with ``rsample``, so ∇_θ flows through the sample;
* per step first an α step on the valid batch (first order, Adam lr 3e-4, betas
  (0.5, 0.999)), then a weight step on the train batch;
* regulariser: ``l2`` is Adam's weight decay on θ (1e-3), ``kl`` adds
  reg_scale·Σ_e KL(Dir(β_e) ‖ Dir(1)) to the α loss (and Adam has no weight decay);
* 100 epochs, SGD weight decay 3e-4 without Nesterov; the cell is the argmax of the
  Dirichlet mean (= the argmax of θ);
* progressive (``progressive=true``): partial channels K = 4 with all 5 ops for the
  first half, then per edge the top 3 ops by θ are kept (the others' θ set to 0 and
  masked, the sample renormalised over the kept ops), K = 2 for the second half with
  the kernels widened by net2wider (random channels duplicated, momentum buffers
  alike), α frozen for the first 10 of each stage's 50 epochs.

**[I]** harness choices: the gap's continuous supernet uses the Dirichlet mean; under
``l2`` the weight decay is the config's ``a_weight_decay`` (its default is DrNAS's
1e-3), under ``kl`` it is 0; the progressive stage split is half the run each and the
α warm-up 20% of a stage, so other epoch counts scale the code's 50 + 50 / 10; the
widened biases follow the output channels (DrNAS's convs have none; ours feed a
batch-statistics BN, where a bias has no effect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Rule, integer, one_of, real
from harness.devices import to_device
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.sampling import dirichlet_sample
from harness.space import NUM_OPS
from harness.supernet import SearchCell, SuperNet


@dataclass
class Options:
    """DrNAS hyper-parameters: [S] the NB201 code's defaults unless marked [I]."""

    RULES: ClassVar[dict[str, Rule]] = {
        "reg_type": one_of("l2", "kl"),
        "reg_scale": real(0),
        "k_start": integer(1, note="must divide C"),
        "k_end": integer(1, note="must divide C and be at most k_start"),
        "keep_ops": integer(1, NUM_OPS),
        "warmup_frac": real(0, 1),
    }
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {  # [S] train_search(_progressive).py
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }

    reg_type: str = "l2"  # [S] "l2" (Adam weight decay) or "kl"
    reg_scale: float = 1e-3  # [S] the KL term's weight
    progressive: bool = False  # [S] train_search_progressive.py
    k_start: int = 4  # [S] progressive: partial channels of stage 1
    k_end: int = 2  # [S] ... and of stage 2
    keep_ops: int = 3  # [S] ops kept per edge for stage 2
    warmup_frac: float = 0.2  # [S] 10 of 50 epochs per stage without α steps, as a fraction


def concentration(theta: Tensor) -> Tensor:
    """β = ELU(θ) + 1 > 0."""
    return F.elu(theta) + 1


def kl_to_uniform(beta: Tensor) -> Tensor:
    """Σ_e KL(Dir(β_e) ‖ Dir(1)) (DrNAS's anchor is the flat Dirichlet)."""
    dirichlet = torch.distributions.Dirichlet  # unvalidated: the check reads the device
    flat = dirichlet(torch.ones_like(beta), validate_args=False)
    return torch.distributions.kl_divergence(dirichlet(beta, validate_args=False), flat).sum()


def prune_mask(theta: Tensor, keep: int) -> Tensor:
    """Bool [6, 5]: the ``keep`` largest θ per edge (DrNAS ``utils.prune``)."""
    index = theta.detach().topk(keep, dim=-1).indices
    return torch.zeros_like(theta, dtype=torch.bool).scatter(-1, index, True)


def widen_partial_channels(model: SuperNet, optimizer: torch.optim.Optimizer, k: int) -> None:
    """Set K and grow every candidate conv's block from C/K_old to C/K channels by
    net2wider (DrNAS ``net2wider.py``): random input channels, then random output
    channels, are duplicated; BN statistics, biases and momentum buffers follow."""
    for layer in model.layers:
        if not isinstance(layer, SearchCell):
            continue
        old, new = layer.op_channels, layer.channels // k
        for kind in ("conv3", "conv1"):
            weight, bias = getattr(layer, f"{kind}_weight"), getattr(layer, f"{kind}_bias")
            buffers = [getattr(layer, f"{kind}_{s}", None) for s in ("running_mean", "running_var")]
            for slot in range(weight.shape[0]):
                grow_in = torch.randint(0, old, (new - old,))
                grow_out = torch.randint(0, old, (new - old,))
                for tensor in (weight, _momentum(optimizer, weight)):
                    if tensor is not None:
                        _widen_kernel(tensor[slot], old, grow_in, grow_out)
                for tensor in (bias, _momentum(optimizer, bias), *buffers):
                    if tensor is not None:
                        _widen_vector(tensor[slot], old, grow_out)
        layer.set_partial(k)


def _momentum(optimizer: torch.optim.Optimizer, param: Tensor) -> Tensor | None:
    return optimizer.state.get(param, {}).get("momentum_buffer")


def _widen_kernel(kernel: Tensor, old: int, grow_in: Tensor, grow_out: Tensor) -> None:
    """kernel [C, C, k, k]: block [:old, :old] → [:new, :new] in place."""
    with torch.no_grad():
        block = kernel[:old, :old]
        wide_in = torch.cat([block, block[:, grow_in]], dim=1)
        wide = torch.cat([wide_in, wide_in[grow_out]], dim=0)
        kernel[: wide.shape[0], : wide.shape[1]] = wide


def _widen_vector(vector: Tensor, old: int, grow_out: Tensor) -> None:
    with torch.no_grad():
        vector[old : old + len(grow_out)] = vector[:old][grow_out]


@register
class Drnas(Method):
    name = "drnas"
    summary = "DrNAS: Dirichlet edge weights by rsample, L2/KL; progressive option (PC, pruning)"
    Options = Options
    alpha_first = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.options.reg_type == "kl":
            for group in self.optimizer.param_groups:
                group["weight_decay"] = 0.0
        self.mask: Tensor | None = None  # ops kept after pruning (host bool [6, 5])
        self.mask_on_device: Tensor | None = None  # the same, where α is (no copy per step)
        self.stage = 0

    @classmethod
    def supernet_options(cls, options: Any) -> dict[str, Any]:
        return {"partial_channels": options.k_start} if options.progressive else {}

    # --- the distribution -------------------------------------------------------
    def concentration(self) -> Tensor:
        return concentration(self.alpha)

    def edge_weights(self) -> Tensor:
        """The Dirichlet mean β/Σβ over the kept ops (0 on pruned ones)."""
        beta = self._kept(self.concentration())
        return beta / beta.sum(-1, keepdim=True)

    def sample(self) -> Tensor:
        """w_e ~ Dir(β_e) over the kept ops, by rsample (pathwise gradient)."""
        beta = self.concentration()
        if self.mask is None:
            return dirichlet_sample(beta)
        kept_ops = self._kept_ops()  # gather, not beta[mask]: a bool index reads the device
        kept = dirichlet_sample(beta.gather(-1, kept_ops))
        return torch.zeros_like(beta).scatter(-1, kept_ops, kept)

    def _kept_ops(self) -> Tensor:
        """[6, keep_ops]: the indices of each edge's kept ops, ascending, where α is."""
        assert self.mask is not None
        ops = torch.arange(self.mask.shape[-1]).expand_as(self.mask)[self.mask]
        return to_device(ops.view(self.mask.shape[0], -1), self.device)

    def _kept(self, values: Tensor) -> Tensor:
        return values if self.mask is None else values * self.mask_on_device

    def active_mask(self) -> Tensor | None:
        return self.mask

    def weight_step_weights(self) -> Tensor:
        return self.sample().detach()

    def regularizer(self) -> Tensor:
        """The α loss's extra term: reg_scale·Σ KL(Dir(β) ‖ Dir(1)) under ``kl``, else 0
        (``l2`` is Adam's weight decay)."""
        if self.options.reg_type != "kl":
            return self.alpha.new_zeros(())
        return self.options.reg_scale * kl_to_uniform(self.concentration())

    # --- progressive stages -------------------------------------------------------
    def stage_of(self, epoch: int) -> int:
        return int(self.options.progressive and epoch >= self.config.epochs // 2)

    def frozen(self) -> bool:
        """Progressive: no α step in a stage's first ``warmup_frac`` of epochs."""
        if not self.options.progressive:
            return False
        half = self.config.epochs // 2
        start, length = (0, half) if self.stage == 0 else (half, self.config.epochs - half)
        return self.epoch - start < round(self.options.warmup_frac * length)

    def _enter_stage(self, ctx: StepContext) -> None:
        """Stage 2: prune to the top ``keep_ops`` by θ, zero the rest, widen to K_end."""
        self.mask_on_device = prune_mask(self.alpha, self.options.keep_ops)
        self.mask = self.mask_on_device.cpu()  # once per run
        with torch.no_grad():
            self.alpha.masked_fill_(~self.mask_on_device, 0.0)
        widen_partial_channels(ctx.model, ctx.w_optimizer, self.options.k_end)
        self.stage = 1

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        if self.stage_of(self.epoch) > self.stage:  # the first step of stage 2 (α first)
            self._enter_stage(ctx)
        if self.frozen():
            return
        loss = ctx.loss(valid, self.sample(), self.mask) + self.regularizer()
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    # --- telemetry and checkpoints --------------------------------------------------
    def telemetry(self) -> dict[str, float]:
        with torch.no_grad():
            beta = self._kept(self.concentration())
        return {
            "concentration_sum": float(beta.sum(-1).mean()),
            "partial_channels": float(self.model.partial_channels),
            "stage": float(self.stage),
        }

    def extra_state(self) -> dict[str, Any]:
        return {"stage": self.stage, "mask": self.mask}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.stage = int(state.get("stage", 0))
        mask = state.get("mask")  # mapped to the run's device by the checkpoint's load
        self.mask = None if mask is None else mask.cpu()
        self.mask_on_device = None if mask is None else mask.to(self.device)
        if self.stage == 1:
            self.model.set_partial_channels(self.options.k_end)
