"""The ``cuda_graphs`` switch: the supernet's training forward and backward replayed
from CUDA graphs (:func:`torch.cuda.make_graphed_callables`).

A search step launches hundreds of small kernels per cell; on a GPU their launch cost
can exceed their run time at the ``paper`` shape. A CUDA graph records them once and
replays them with one launch. What a graph needs, and how this meets it:

* static shapes and addresses — one graph per (batch shape, dtype, device, edge-weight
  shape, whether the edge weights need a gradient, ``active`` mask, straight-through
  or not, device sample or not): the weight step and the α step get one each; other
  calls (evaluation under ``no_grad``, eval mode, another batch shape) run eagerly;
* no host reads inside — the ``active`` mask, read on the host by the fused path, is
  part of the key, so a graph holds one mask's kernels. A method that draws a new
  mask every step (GDAS by default, RS-PS) therefore fills :data:`MAX_GRAPHS` with its
  first masks and runs eagerly after that: correct, but not faster. A ``sampled`` mask
  (GDAS ``sampling=device``) is a graph input instead, so one graph serves every sample;
* the right GPU — capture runs under ``torch.cuda.device`` of the images, and the loop
  sets the run's device as current (:func:`harness.search.configure_torch`), so a job
  on ``cuda:1`` records on GPU 1's stream;
* parameters updated in place — the optimizers do that.

A replay overwrites the graph's output and saved activations, so a caller must run a
forward's backward before the next forward with the same key; every registered
method does (forward, loss, backward, in turn). At most :data:`MAX_GRAPHS` graphs are
kept; beyond that calls run eagerly. ``bf16`` and ``compile`` do not combine with it
(refused at plan time, :func:`harness.config.check_config`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

MAX_GRAPHS = 8
"""Graphs kept per model; a method that prunes ops gets a new mask, hence a new graph."""


def cuda_autocast_enabled() -> bool:
    """Whether CUDA autocast is on: ``torch.is_autocast_enabled("cuda")`` from torch 2.4,
    the argument-less form (which meant CUDA) before."""
    try:
        return torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled()


class _Bound(nn.Module):
    """The supernet with one fixed ``active`` mask and ``straight_through`` flag, as a
    module of (images, weights[, sampled]), so ``make_graphed_callables`` treats the
    supernet's parameters as graph inputs (and a device sample as a plain input)."""

    def __init__(self, model: nn.Module, active: Tensor | None, straight_through: bool) -> None:
        super().__init__()
        self.model, self.active, self.straight_through = model, active, straight_through

    def forward(self, images: Tensor, weights: Tensor, sampled: Tensor | None = None) -> Tensor:
        model = self.model
        return type(model).forward(
            model, images, weights, self.active, self.straight_through, sampled
        )


class GraphedForward:
    """``model(images, weights, active, straight_through, sampled)`` — the supernet's own
    call signature, as every method's step calls it — dispatching to a captured graph when
    it can."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.graphs: dict[tuple[Any, ...], Callable[..., Tensor]] = {}
        self.captures = 0

    def key(
        self,
        images: Tensor,
        weights: Tensor,
        active: Tensor | None,
        straight_through: bool,
        sampled: Tensor | None = None,
    ) -> tuple[Any, ...]:
        """What a graph is specific to; ``active`` is a host tensor (no device read),
        ``sampled`` an input (only its shape counts)."""
        mask = None if active is None else tuple(bool(v) for v in active.flatten().tolist())
        return (
            tuple(images.shape),
            images.dtype,
            images.device,
            tuple(weights.shape),
            weights.requires_grad,
            mask,
            straight_through,
            None if sampled is None else tuple(sampled.shape),
        )

    def graphable(self, images: Tensor) -> bool:
        """A CUDA training forward with gradients and no autocast; others run eagerly."""
        return (
            images.is_cuda
            and self.model.training
            and torch.is_grad_enabled()
            and not cuda_autocast_enabled()
        )

    def __call__(
        self,
        images: Tensor,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        sampled: Tensor | None = None,
    ) -> Tensor:
        if not self.graphable(images):
            return self.eager(images, weights, active, straight_through, sampled)
        key = self.key(images, weights, active, straight_through, sampled)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= MAX_GRAPHS:
                return self.eager(images, weights, active, straight_through, sampled)
            graphed = self.capture(images, weights, active, straight_through, sampled)
            self.graphs[key] = graphed
        return graphed(images, weights) if sampled is None else graphed(images, weights, sampled)

    def eager(
        self,
        images: Tensor,
        weights: Tensor,
        active: Tensor | None,
        straight_through: bool,
        sampled: Tensor | None = None,
    ) -> Tensor:
        return type(self.model).forward(
            self.model, images, weights, active, straight_through, sampled
        )

    def capture(
        self,
        images: Tensor,
        weights: Tensor,
        active: Tensor | None,
        straight_through: bool,
        sampled: Tensor | None = None,
    ) -> Callable[..., Tensor]:
        """Warm up on a side stream and record forward and backward (torch's recipe) on
        the images' GPU; the parameters' gradients are left as they were. A mask may
        leave parameters unused (a GDAS cell without a 3×3 conv): their gradient is
        then None, not an error (``allow_unused_input``)."""
        grads = [p.grad for p in self.model.parameters()]
        sample_images = images.detach().clone()
        sample_weights = weights.detach().clone().requires_grad_(weights.requires_grad)
        inputs = (sample_images, sample_weights)
        if sampled is not None:
            inputs += (sampled.detach().clone(),)
        with torch.cuda.device(images.device):
            graphed = torch.cuda.make_graphed_callables(
                _Bound(self.model, active, straight_through), inputs, allow_unused_input=True
            )
        for param, grad in zip(self.model.parameters(), grads, strict=True):
            param.grad = grad
        self.captures += 1
        return graphed


def install(model: nn.Module) -> GraphedForward:
    """Route ``model(...)`` through CUDA graphs (state-dict keys unchanged)."""
    graphed = GraphedForward(model)
    model.forward = graphed  # type: ignore[method-assign]
    return graphed
