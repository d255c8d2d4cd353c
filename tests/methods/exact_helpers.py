"""Helpers of the float64 method tests (cdao, da2s, constrained, rdarts, amended, darts2):
a method on SuperNet(C=4, N=1) with its step context, a loss that keeps the logits'
dtype, and the loop's weight step.
"""

from __future__ import annotations

import io
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


def make_batch(n: int = 8, seed: int = 1) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def make(name: str, epochs: int = 50, **options: Any) -> tuple[Method, StepContext]:
    """A method on a SuperNet(C=4, N=1) in float64, with a context at epoch 0."""
    cls = method_class(name)
    opts = cls.Options(**options)
    model = SuperNet(C=4, N=1, **cls.supernet_options(opts))
    config = Config(epochs=epochs, dtype="float64")
    method = cls(model, config, opts, CPU)
    w_optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    return method, context(method, w_optimizer, epoch=0, epochs=epochs)


class ExactContext(StepContext):
    """The loop's context with a loss that keeps the logits' dtype.

    The loop's loss may cast logits to float32 (for bf16 autocast); in these
    float64 tests that would swamp the finite differences being checked.
    """

    def loss(self, batch: Batch, weights: Tensor, active: Tensor | None = None) -> Tensor:
        images, labels = batch
        return F.cross_entropy(self.model(images, weights, active), labels)


def context(
    method: Method, w_optimizer: torch.optim.SGD, epoch: int, epochs: int, step: int = 0
) -> StepContext:
    return ExactContext(method.model, w_optimizer, epoch, step, 10, epochs)


def at_epoch(method: Method, ctx: StepContext, epoch: int, step: int = 0) -> StepContext:
    method.begin_epoch(epoch)
    return context(method, ctx.w_optimizer, epoch, ctx.epochs, step)


def close(a: list[Tensor] | Tensor, b: list[Tensor] | Tensor, rtol: float = 1e-9) -> bool:
    """Relative error of the concatenated tensors below ``rtol``."""
    flat_a = torch.cat([t.reshape(-1) for t in (a if isinstance(a, list) else [a])])
    flat_b = torch.cat([t.reshape(-1) for t in (b if isinstance(b, list) else [b])])
    return bool((flat_a - flat_b).norm() <= rtol * flat_b.norm().clamp_min(1e-30))


def softmax_jacobian_t(probs: Tensor, grad: Tensor) -> Tensor:
    """J_softmaxᵀ g per edge, written out: p ⊙ (g − ⟨p, g⟩)."""
    return probs * (grad - (probs * grad).sum(-1, keepdim=True))


def weight_step(method: Method, ctx: StepContext, batch: Batch) -> Tensor:
    """One SGD step on w as the loop takes it; returns the pre-clip grad norm."""
    ctx.w_optimizer.zero_grad(set_to_none=True)
    loss = ctx.loss(batch, method.weight_step_weights(), method.active_mask())
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(method.model.parameters(), 5.0)
    ctx.w_optimizer.step()
    return grad_norm


def _saved(state: dict[str, Any]) -> io.BytesIO:
    """The state as torch.save writes it, ready for torch.load."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


# Amended-DARTS and DARTS-V2: the spec's radius 0.01/‖v‖ straddles ReLU kinks on this tiny
# net (relative error > 1 against the exact product; see docs/methods.md), so the FD
# arithmetic is checked at a radius where the loss is smooth: the error then falls to ~1e-9.
SMOOTH_RADIUS = 1e-5
