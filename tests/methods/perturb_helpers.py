"""Helpers of the DARTS-family baseline tests (sdarts, darts_minus, beta_darts, fairdarts)."""

from __future__ import annotations

import torch
from tiny import Batch
from torch import Tensor

from harness.space import OPS

SKIP, CONV3 = OPS.index("skip_connect"), OPS.index("nor_conv_3x3")


def batch(seed: int, n: int = 8) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def on_simplex(weights: Tensor) -> bool:
    sums = weights.sum(-1)
    return bool((weights >= 0).all() and torch.allclose(sums, torch.ones_like(sums)))
