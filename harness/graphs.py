"""The ``cuda_graphs`` switch: the supernet's training forward and backward replayed
from CUDA graphs (:func:`torch.cuda.make_graphed_callables`).

A search step launches hundreds of small kernels per cell; on a GPU their launch cost
can exceed their run time at the ``paper`` shape. A CUDA graph records them once and
replays them with one launch. What a graph needs, and how this meets it:

* static shapes and addresses — one graph per (batch shape, dtype, edge-weight shape,
  whether the edge weights need a gradient, ``active`` mask): the weight step and the
  α step get one each; other calls (evaluation under ``no_grad``, eval mode, another
  batch shape) run eagerly;
* no host reads inside — the ``active`` mask, read on the host by the fused path, is
  part of the key, so a graph holds one mask's kernels;
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


class _Bound(nn.Module):
    """The supernet with one fixed ``active`` mask, as a module of (images, weights), so
    ``make_graphed_callables`` treats the supernet's parameters as graph inputs."""

    def __init__(self, model: nn.Module, active: Tensor | None) -> None:
        super().__init__()
        self.model, self.active = model, active

    def forward(self, images: Tensor, weights: Tensor) -> Tensor:
        return type(self.model).forward(self.model, images, weights, self.active)


class GraphedForward:
    """``model(images, weights, active)`` dispatching to a captured graph when it can."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.graphs: dict[tuple[Any, ...], Callable[..., Tensor]] = {}
        self.captures = 0

    def key(self, images: Tensor, weights: Tensor, active: Tensor | None) -> tuple[Any, ...]:
        mask = None if active is None else tuple(bool(v) for v in active.flatten().tolist())
        return (
            tuple(images.shape),
            images.dtype,
            tuple(weights.shape),
            weights.requires_grad,
            mask,
        )

    def __call__(self, images: Tensor, weights: Tensor, active: Tensor | None = None) -> Tensor:
        graphable = (
            images.is_cuda
            and self.model.training
            and torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cuda")
        )
        if not graphable:
            return type(self.model).forward(self.model, images, weights, active)
        key = self.key(images, weights, active)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= MAX_GRAPHS:
                return type(self.model).forward(self.model, images, weights, active)
            graphed = self.capture(images, weights, active)
            self.graphs[key] = graphed
        return graphed(images, weights)

    def capture(
        self, images: Tensor, weights: Tensor, active: Tensor | None
    ) -> Callable[..., Tensor]:
        """Warm up on a side stream and record forward and backward (torch's recipe);
        the parameters' gradients are left as they were."""
        grads = [p.grad for p in self.model.parameters()]
        sample_images = images.detach().clone()
        sample_weights = weights.detach().clone().requires_grad_(weights.requires_grad)
        graphed = torch.cuda.make_graphed_callables(
            _Bound(self.model, active), (sample_images, sample_weights)
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
