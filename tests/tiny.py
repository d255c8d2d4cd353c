"""Shared pieces of the method tests: a float64 SuperNet(C=4, N=1) method, the loop's
step context around it, and a tiny search state whose train and valid halves carry
disjoint labels (train 0–4, valid 5–9), so a test can tell which half a step read."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import Config
from harness.data import SearchData, TensorLoader
from harness.methods import method_class
from harness.methods.base import Method, StepContext
from harness.supernet import SuperNet
from harness.train import SearchState, weight_optimizer

Batch = tuple[Tensor, Tensor]
CPU = torch.device("cpu")
TRAIN_LABELS, VALID_LABELS = range(0, 5), range(5, 10)


class ExactContext(StepContext):
    """The loop's context with a loss that keeps float64 logits (no bf16 upcast)."""

    def loss(self, batch: Batch, weights: Tensor, active: Tensor | None = None) -> Tensor:
        images, labels = batch
        return F.cross_entropy(self.model(images, weights, active), labels)


def make(name: str, epochs: int = 50, **options: Any) -> Method:
    """Method ``name`` with ``options`` on a float64 SuperNet(C=4, N=1)."""
    cls = method_class(name)
    opts = cls.Options(**options)
    model = SuperNet(C=4, N=1, **cls.supernet_options(opts))
    return cls(model, Config(epochs=epochs, dtype="float64"), opts, CPU)


def context(method: Method, epoch: int = 0, step: int = 0) -> StepContext:
    """The step context of ``method`` at ``epoch`` (SGD as the loop builds it)."""
    method.begin_epoch(epoch)
    optimizer = torch.optim.SGD(method.model.parameters(), lr=0.025, momentum=0.9)
    return ExactContext(method.model, optimizer, epoch, step, 10, method.config.epochs)


def loader(labels: range, seed: int, n: int = 12) -> TensorLoader:
    """``n`` random uint8 images with labels cycling through ``labels``, batches of 4."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    values = torch.tensor(list(labels))[torch.arange(n) % len(labels)]
    return TensorLoader(images, values, 4, True, seed, dtype=torch.float64)


def tiny_state(method: Method) -> SearchState:
    """A search state with 3 train and 3 valid batches of disjoint labels."""
    data = SearchData(
        train=loader(TRAIN_LABELS, 0),
        valid=loader(VALID_LABELS, 1),
        eval_images=torch.zeros(4, 3, 8, 8),
        eval_labels=torch.zeros(4, dtype=torch.long),
        split_name="tiny",
        fingerprint="",
    )
    optimizer, scheduler = weight_optimizer(method.model, method.config)
    return SearchState(method.model, method, optimizer, scheduler, data)
