"""Deliberate breakages the CI gate must catch, as picklable setups for its workers.

``harness.check.measure(..., setup=...)`` runs a setup in each worker process before
the search, so a mutation applies inside the process that measures. Used by
``tests/test_check.py`` and ``benchmarks/ci_variation.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from harness import methods
from harness.methods.base import Method
from harness.space import OPS
from harness.supernet import SuperNet

NONE, SKIP = OPS.index("none"), OPS.index("skip_connect")


def _freeze_alpha(name: str) -> None:
    """The method's α update does nothing: α stays at its near-uniform start."""
    methods.method_class(name).arch_step = lambda self, ctx, train, valid: None  # type: ignore[method-assign]


def alpha_frozen(name: str) -> Callable[[], None]:
    return functools.partial(_freeze_alpha, name)


def da2s_entropy_rewarded() -> None:
    """DA2S's entropy term with its sign flipped: the α loss rewards uncertain edges."""
    from harness.methods import da2s

    def arch_loss(self: Any, ctx: Any, batch: Any) -> torch.Tensor:
        probs = self.edge_weights()
        return ctx.loss(batch, probs) - self.lam * da2s.edge_entropy(probs)

    da2s.Da2s.arch_loss = arch_loss  # type: ignore[method-assign]


def none_passes_input() -> None:
    """The supernet's ``none`` op is no longer zero: it passes its input like a skip."""
    original = SuperNet.forward

    def forward(self: SuperNet, x: torch.Tensor, weights: torch.Tensor, active: Any = None):
        moved = weights.clone()
        moved[..., SKIP] = moved[..., SKIP] + moved[..., NONE]
        moved[..., NONE] = 0
        if active is not None:
            active = active.clone()
            active[..., SKIP] |= active[..., NONE]
        return original(self, x, moved, active)

    SuperNet.forward = forward  # type: ignore[method-assign]


def _shift_alpha(eps: float) -> None:
    """A rounding-size perturbation: each initial α entry moved by up to ``eps``
    (a fixed, non-constant pattern, since softmax ignores a constant shift)."""
    original = Method.__init__

    def init(self: Method, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        with torch.no_grad():
            pattern = torch.linspace(-1.0, 1.0, self.alpha.numel(), dtype=self.alpha.dtype)
            self.alpha.add_(eps * pattern.view_as(self.alpha).to(self.alpha.device))

    Method.__init__ = init  # type: ignore[method-assign]


def alpha_shifted(eps: float) -> Callable[[], None]:
    return functools.partial(_shift_alpha, eps)
