"""Helpers of the sampling and partial-channel baseline tests (gdas, snas, drnas,
pcdarts): a float64 method with α away from uniform, a context whose loss keeps float64
logits and passes the straight-through flag, the samplers' Gumbel noise re-drawn.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config
from harness.methods import method_class
from harness.methods.base import Method, StepContext
from harness.supernet import SuperNet

Batch = tuple[Tensor, Tensor]
CPU = torch.device("cpu")


class ExactContext(StepContext):
    """The loop's context with a loss that keeps float64 logits."""

    def loss(
        self,
        batch: Batch,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        sampled: Tensor | None = None,
    ) -> Tensor:
        images, labels = batch
        if sampled is not None:
            return F.cross_entropy(self.model(images, weights, sampled=sampled), labels)
        return F.cross_entropy(self.model(images, weights, active, straight_through), labels)


def make(name: str, epochs: int = 50, C: int = 4, **options: Any) -> Method:
    cls = method_class(name)
    opts = cls.Options(**options)
    model = SuperNet(C=C, N=1, **cls.supernet_options(opts))
    method = cls(model, Config(epochs=epochs, dtype="float64"), opts, CPU)
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)  # away from uniform, so every check has a signal
    return method


def context(
    method: Method, epoch: int = 0, step: int = 0, optimizer: torch.optim.SGD | None = None
) -> StepContext:
    method.begin_epoch(epoch)
    if optimizer is None:
        optimizer = torch.optim.SGD(method.model.parameters(), lr=0.025, momentum=0.9)
    return ExactContext(method.model, optimizer, epoch, step, 10, method.config.epochs)


def batch(seed: int, n: int = 8) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def gumbel(shape: tuple[int, ...], seed: int) -> Tensor:
    """The noise the samplers draw after ``torch.manual_seed(seed)``, re-drawn here."""
    torch.manual_seed(seed)
    return -torch.empty(shape).exponential_().log()


def alpha_grad(method: Method, loss: Tensor) -> Tensor:
    (grad,) = torch.autograd.grad(loss, method.arch_parameters())
    return grad


def close(a: Tensor, b: Tensor, rtol: float = 1e-9) -> bool:
    return bool((a - b).norm() <= rtol * b.norm())
