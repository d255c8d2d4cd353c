"""The run's numerics, decided once: floating-point type, bf16 autocast, memory layout.

``config.dtype``, ``bf16`` and ``channels_last`` are read here and nowhere else; the
search state and every step context carry the resulting :class:`Numerics`. Every loss
and score of the harness (the weight step, the α step's loss, the gap evaluation, the
ranking's scores, DARTS-PT's fine-tuning and accuracies) runs its forward pass through
:meth:`Numerics.logits` and its loss through :meth:`Numerics.loss`, so "under autocast,
in layout, upcast for the loss" is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from harness.config import Config

TORCH_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""``config.dtype`` as torch's type (``config.DTYPES`` are the names)."""

Forward = Callable[[Tensor], Tensor]
"""The model applied to a batch of images: logits."""


@dataclass(frozen=True)
class Numerics:
    """How tensors are computed: the type of weights, α and images (``dtype``), bfloat16
    autocast around forward passes (``bf16``) and channels_last images (``channels_last``)."""

    dtype: torch.dtype = torch.float32
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Numerics:
        return cls(TORCH_DTYPES[config.dtype], config.bf16, config.channels_last)

    @property
    def precision(self) -> str:
        """What the forward passes compute in: ``bfloat16`` under autocast, else the dtype."""
        return "bfloat16" if self.bf16 else str(self.dtype).removeprefix("torch.")

    def autocast(self, device_type: str) -> torch.autocast:
        """bfloat16 autocast on ``device_type`` under ``bf16`` (a no-op when off)."""
        return torch.autocast(device_type, torch.bfloat16, enabled=self.bf16)

    def in_layout(self, images: Tensor) -> Tensor:
        """``images`` in the model's memory format (unchanged if already, or if NCHW)."""
        if not self.channels_last:
            return images
        return images.contiguous(memory_format=torch.channels_last)

    def prepare(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        images, labels = batch
        return self.in_layout(images), labels

    @staticmethod
    def upcast(logits: Tensor) -> Tensor:
        """bf16 logits to float32 for the loss; float32 and float64 logits as they are."""
        return logits.float() if logits.dtype == torch.bfloat16 else logits

    def logits(self, forward: Forward, images: Tensor) -> Tensor:
        """``forward`` on ``images`` in layout, under autocast. Whatever ``forward`` computes
        before calling the model (a sampled cell, perturbed weights) is under autocast too."""
        images = self.in_layout(images)
        with self.autocast(images.device.type):
            return forward(images)

    def loss(
        self, forward: Forward, images: Tensor, labels: Tensor, reduction: str = "mean"
    ) -> tuple[Tensor, Tensor]:
        """(cross-entropy of the upcast logits, the logits) of ``forward`` on a batch."""
        logits = self.logits(forward, images)
        return F.cross_entropy(self.upcast(logits), labels, reduction=reduction), logits


FLOAT32 = Numerics()
"""float32, no autocast, NCHW: the default of functions used outside a run (tests, rsps)."""
