"""The method contract: what the search loop may ask of a method, and nothing more.

A method owns its architecture parameters and their update rule, and turns them
into the edge weights the supernet consumes. The loop never asks which method
it runs: it calls :meth:`Method.arch_step` once per step (before or after the
weight step, as :attr:`Method.alpha_first` says), trains the shared weights on
:meth:`Method.weight_step_inputs` as :meth:`Method.perturb_weights` leaves them, and
asks :meth:`Method.derive` for the cell.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config
from harness.numerics import Numerics
from harness.space import NUM_EDGES, NUM_OPS, Cell
from harness.supernet import SuperNet

Batch = tuple[Tensor, Tensor]


@dataclass
class NoOptions:
    """A method without hyper-parameters of its own."""


@dataclass
class StepContext:
    """What a method may use during one search step."""

    model: SuperNet
    w_optimizer: torch.optim.SGD
    epoch: int
    step: int
    steps_per_epoch: int
    epochs: int
    numerics: Numerics = field(default_factory=Numerics)  # the run's: autocast, layout, upcast

    @property
    def progress(self) -> float:
        """Fractional epochs completed, in [0, epochs)."""
        return self.epoch + self.step / self.steps_per_epoch

    @property
    def w_lr(self) -> float:
        return float(self.w_optimizer.param_groups[0]["lr"])

    def loss(
        self,
        batch: Batch,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        sampled: Tensor | None = None,
    ) -> Tensor:
        """The training loss of ``batch`` under ``weights`` (the α step's loss); the
        mask arguments as :meth:`SuperNet.forward` takes them."""
        images, labels = batch

        def forward(x: Tensor) -> Tensor:
            if sampled is not None:
                return self.model(x, weights, sampled=sampled)
            return self.model(x, weights, active, straight_through)

        return self.numerics.loss(forward, images, labels)[0]


class Method(abc.ABC):
    """Base class: a softmax-relaxed α of shape [6, 5] trained with Adam (DARTS)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    alpha_first: ClassVar[bool] = False
    derives_from_alpha: ClassVar[bool] = True  # False: derive() scores cells instead

    def __init__(self, model: SuperNet, config: Config, options: Any, device: torch.device):
        self.model, self.config, self.options, self.device = model, config, options, device
        self.epoch = 0
        self.dtype = Numerics.from_config(config).dtype
        self.alpha = torch.nn.Parameter(self.initial_alpha().to(self.dtype))
        self.optimizer = torch.optim.Adam(
            [self.alpha],
            lr=config.a_lr,
            betas=(config.a_beta1, config.a_beta2),
            weight_decay=config.a_weight_decay,
        )

    @classmethod
    def supernet_options(cls, options: Any) -> dict[str, Any]:
        """Extra :class:`SuperNet` constructor arguments this method needs (e.g. node_bn)."""
        del options
        return {}

    @classmethod
    def train_fraction(cls, options: Any) -> float | None:
        """Share of the pooled search images the weights train on; None = the protocol's
        train/valid halves (a method whose source splits the data otherwise says so)."""
        del options
        return None

    # --- α and the weights it induces --------------------------------------
    def alpha_shape(self) -> tuple[int, ...]:
        return (NUM_EDGES, NUM_OPS)

    def initial_alpha(self) -> Tensor:
        """α ~ 1e-3·N(0, 1) (methods-spec §1.2), drawn from the seeded global RNG."""
        alpha = self.config.a_init_std * torch.randn(self.alpha_shape())
        return alpha.to(self.device)

    def arch_parameters(self) -> list[Tensor]:
        return [self.alpha]

    def edge_weights(self) -> Tensor:
        """The continuous weights (differentiable in α): softmax per edge."""
        return self.alpha.softmax(-1)

    def weight_step_weights(self) -> Tensor:
        """Edge weights used to train the shared weights; no gradient to α."""
        return self.edge_weights().detach()

    def active_mask(self) -> Tensor | None:
        """Host-side bool mask of ops whose weight is exactly zero-free; None = all live."""
        return None

    def weight_step_inputs(self) -> tuple[Tensor, Tensor | None]:
        """(edge weights, active mask) of one weight step, drawn together: a sampling
        method (GDAS) draws one cell per step and computes only its ops."""
        return self.weight_step_weights(), self.active_mask()

    def perturb_weights(self, ctx: StepContext, batch: Batch, weights: Tensor) -> Tensor:
        """The weights this weight step trains w on, given those :meth:`weight_step_inputs`
        drew and the step's train batch: unchanged by default; SDARTS perturbs them at
        random or against the batch's loss."""
        del ctx, batch
        return weights

    def derive(self) -> Cell:
        """Argmax per edge over all five ops, ``none`` included (NB201/AutoDL)."""
        probs = self.edge_weights().detach()
        if probs.dim() == 3:
            probs = probs.mean(0)
        return Cell.from_indices(probs.argmax(-1).tolist())

    def discrete_weights(self) -> Tensor:
        """One-hot weights [6, 5] of :meth:`derive`, for the discrete supernet."""
        indices = torch.tensor(self.derive().op_indices, device=self.device)
        return F.one_hot(indices, NUM_OPS).to(self.alpha.dtype)

    def probabilities(self) -> Tensor:
        """Per-edge op weights as reported in telemetry (averaged over stages if any)."""
        probs = self.edge_weights().detach()
        return probs.mean(0) if probs.dim() == 3 else probs

    # --- the update rule ----------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @abc.abstractmethod
    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        """Update α once."""

    def bind_data(self, images: Tensor, labels: Tensor, batch_size: int) -> None:
        """The fixed search-valid images a method may score cells on when it derives
        (e.g. best of K sampled cells); most methods derive from α alone."""
        del images, labels, batch_size

    def before_weight_update(self, ctx: StepContext) -> None:
        """Hook between the weight gradient (clipped) and the optimizer's step."""
        del ctx

    def after_weight_step(self, ctx: StepContext, grad_norm: Tensor) -> None:
        """Hook after each weight step; ``grad_norm`` is the pre-clip norm of ∇w."""
        del ctx, grad_norm

    def telemetry(self) -> dict[str, float]:
        """Method-specific numbers for this epoch's line of ``epochs.jsonl``."""
        return {}

    # --- checkpointing ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state

    # --- helpers shared by gradient-based methods -----------------------------
    def apply_gradient(self, grads: list[Tensor]) -> None:
        """Set α's gradient and take one optimizer step."""
        self.optimizer.zero_grad(set_to_none=True)
        for param, grad in zip(self.arch_parameters(), grads, strict=True):
            param.grad = grad.detach()
        self.optimizer.step()


def weight_params(model: SuperNet) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


@contextlib.contextmanager
def shifted_weights(
    model: SuperNet, direction: list[Tensor], scale: float | Tensor
) -> Iterator[None]:
    """Temporarily set w ← w + scale·direction; restore w and BN buffers exactly."""
    params = weight_params(model)
    saved = [p.detach().clone() for p in params]
    buffers = [b.detach().clone() for b in model.buffers()]
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p.add_(d * scale)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
            for b, s in zip(model.buffers(), buffers, strict=True):
                b.copy_(s)


def norm(tensors: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((t.detach() ** 2).sum() for t in tensors))
