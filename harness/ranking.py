"""How well the trained supernet ranks cells: one-shot scores against NB201 truth.

After a search, M cells are drawn uniformly from the space (one per
isomorphism class, so equal networks are not counted twice), each is scored by
the shared weights with one-hot edge weights on the fixed evaluation images,
and the scores are correlated with the cells' NB201 CIFAR-10 accuracies
(methods-spec §10.3). A supernet whose one-shot ranking is poor cannot guide a
search, whatever its method does to α.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness import metrics
from harness.benchmark import Benchmark
from harness.config import Config
from harness.data import SearchData
from harness.numerics import FLOAT32, Numerics
from harness.provenance import cpu_fingerprint, device_description
from harness.space import NUM_CELLS, NUM_OPS, Cell
from harness.supernet import SuperNet

RANK_STREAM = 201
"""Salt mixed into the seed so the sample does not correlate with other seeded streams."""


def sample_cells(count: int, generator: np.random.Generator) -> list[Cell]:
    """Up to ``count`` cells, uniform over the space, at most one per canonical form.

    Walking a random permutation of all codes keeps the first cell met of each
    isomorphism class; asking for more than the classes that exist returns them all.
    """
    chosen: list[Cell] = []
    seen: set[Cell] = set()
    for code in generator.permutation(NUM_CELLS):
        cell = Cell.from_code(int(code))
        canonical = cell.canonical()
        if canonical in seen:
            continue
        seen.add(canonical)
        chosen.append(cell)
        if len(chosen) == count:
            break
    return chosen


def _onehot(cell: Cell, device: torch.device, numerics: Numerics) -> Tensor:
    """The cell's one-hot edge weights [6, 5] in the run's dtype."""
    indices = torch.tensor(cell.op_indices, device=device)
    return F.one_hot(indices, NUM_OPS).to(numerics.dtype)


NATIVE_BF16_ISA = ("avx512_bf16", "amx_bf16")
"""CPU flags with bfloat16 arithmetic in hardware (oneDNN's fast bf16 kernels)."""


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is fast here: a CUDA device that supports it, or a CPU with
    AVX512_BF16 or AMX (elsewhere bf16 is emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return any(flag in cpu_fingerprint()["isa"] for flag in NATIVE_BF16_ISA)


def scoring_numerics(numerics: Numerics, rank_precision: str, device: torch.device) -> Numerics:
    """The run's ``numerics`` as cells are scored: bfloat16 autocast as ``rank_precision``
    says (``auto``: where native), images in NCHW whatever the run's layout.

    float32 is the default: bf16 scoring keeps the ranking (benchmarks/README.md: τ(fp32,
    bf16) 0.97, far above the score's own split-half τ) and is faster on CPUs with native
    bf16, but its scores, unlike float32's, depend on which CPU computed them, and at the
    ``cpu`` preset the ranking is a few percent of a run. float64 runs (the CI gate)
    always score in their own dtype."""
    if numerics.dtype != torch.float32:
        bf16 = False
    elif rank_precision == "auto":
        bf16 = native_bf16(device)
    else:
        bf16 = rank_precision == "bfloat16"
    return dataclasses.replace(numerics, bf16=bf16, channels_last=False)


def scoring_precision(config: Config, device: torch.device) -> str:
    """``float32``, ``bfloat16`` or ``float64``: what ``config.rank_precision`` means on
    ``device`` (:func:`scoring_numerics`)."""
    run = Numerics.from_config(config)
    return scoring_numerics(run, config.rank_precision, device).precision


@torch.no_grad()
def _score_one(
    model: SuperNet,
    weights: Tensor,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    numerics: Numerics,
) -> Tensor:
    """``[batches, 2]``: correct predictions and summed loss per eval batch; the mask
    tells the fused path to skip every zero op."""
    active = weights.bool().cpu()
    rows = []
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        loss, logits = numerics.loss(lambda batch: model(batch, weights, active), x, y, "sum")
        rows.append(torch.stack([(logits.argmax(1) == y).sum().to(loss.dtype), loss]))
    return torch.stack(rows)


def score_cells_per_batch(
    model: SuperNet,
    cells: list[Cell],
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    numerics: Numerics = FLOAT32,
) -> np.ndarray:
    """``[cells, batches, 2]``: each cell's correct count and summed loss per eval batch.

    Evaluation mode as in :func:`harness.train.evaluate`: with
    ``track_running_stats=False`` every BN uses the batch's statistics, so a batch's
    numbers do not depend on the other batches.
    """
    was_training = model.training
    model.eval()
    device = images.device
    try:
        per_cell = [
            _score_one(model, _onehot(c, device, numerics), images, labels, batch_size, numerics)
            for c in cells
        ]
    finally:
        model.train(was_training)
    return torch.stack(per_cell).double().cpu().numpy() if per_cell else np.zeros((0, 0, 2))


def score_cells_with_loss(
    model: SuperNet,
    cells: list[Cell],
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    numerics: Numerics = FLOAT32,
) -> tuple[np.ndarray, np.ndarray]:
    """One-shot accuracy (%) and mean loss of each cell under the shared weights."""
    if not cells:
        return np.zeros(0), np.zeros(0)
    per_batch = score_cells_per_batch(model, cells, images, labels, batch_size, numerics)
    return accuracy_and_loss(per_batch, images.shape[0])


def accuracy_and_loss(per_batch: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's accuracy (%) and mean loss over all ``n`` images from its per-batch sums."""
    return 100.0 * per_batch[:, :, 0].sum(1) / n, per_batch[:, :, 1].sum(1) / n


def split_half(per_batch: np.ndarray, labels: Tensor, batch_size: int) -> dict[str, Any]:
    """How reproducible the score is: the cells' accuracies on the even-numbered eval
    batches against those on the odd-numbered ones (disjoint images, same weights).

    A score whose own split-half τ is low cannot rank cells whose true accuracies
    differ by less than its noise; the report puts it beside the ranking τ.
    Free: it reuses the per-batch counts of the ranking's one scoring pass.
    """
    batches = per_batch.shape[1] if per_batch.ndim == 3 else 0
    if batches < 2:
        return {"kendall_tau": None, "images": [0, 0], "reason": "needs >= 2 eval batches"}
    sizes = np.array([len(labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)])
    even, odd = slice(0, None, 2), slice(1, None, 2)
    acc_even = per_batch[:, even, 0].sum(1) / sizes[even].sum()
    acc_odd = per_batch[:, odd, 0].sum(1) / sizes[odd].sum()
    return {
        "kendall_tau": metrics.kendall_tau(acc_even, acc_odd),
        "images": [int(sizes[even].sum()), int(sizes[odd].sum())],
    }


def score_cells(
    model: SuperNet, cells: list[Cell], images: Tensor, labels: Tensor, batch_size: int
) -> np.ndarray:
    """One-shot accuracy (%) of each cell: the supernet with one-hot edge weights."""
    return score_cells_with_loss(model, cells, images, labels, batch_size)[0]


def rank_generator(seed: int) -> np.random.Generator:
    """The sampling stream of a run: same seed, same cells, whatever the method."""
    return np.random.default_rng([seed, RANK_STREAM])


def ranking_correlation(
    model: SuperNet,
    benchmark: Benchmark,
    data: SearchData,
    config: Config,
    generator: np.random.Generator | None = None,
    numerics: Numerics | None = None,
) -> dict[str, Any]:
    """Sample ``config.rank_samples`` cells, score them, correlate with NB201 CIFAR-10,
    under the run's ``numerics`` (the config's when not given) as :func:`scoring_numerics`
    adapts them.

    The top-level statistics use the ``valid`` truth (what a search may select
    on); ``test`` holds the same statistics against the test truth. ``cells``
    keeps every point so a report can plot the scatter.
    """
    started, started_cpu = time.perf_counter(), time.process_time()
    generator = generator if generator is not None else rank_generator(config.seed)
    cells = sample_cells(config.rank_samples, generator)
    size = config.rank_eval_size or data.eval_labels.shape[0]
    images, labels = data.eval_images[:size], data.eval_labels[:size]
    run = numerics if numerics is not None else Numerics.from_config(config)
    scoring = scoring_numerics(run, config.rank_precision, images.device)
    per_batch = score_cells_per_batch(model, cells, images, labels, config.gap_eval_batch, scoring)
    scores, losses = accuracy_and_loss(per_batch, labels.shape[0])
    codes = np.array([cell.code for cell in cells], dtype=np.int64)
    valid = benchmark.accuracy(codes, "cifar10", "valid")
    test = benchmark.accuracy(codes, "cifar10", "test")
    return {
        **metrics.ranking_metrics(scores, valid),
        "kendall_tau_neg_loss": metrics.kendall_tau(-losses, valid),
        "split_half": split_half(per_batch, labels, config.gap_eval_batch),
        "test": metrics.ranking_metrics(scores, test),
        "samples": len(cells),
        "score": "one-hot supernet accuracy on the eval images",
        "truth": "NB201 cifar10 valid (test under 'test')",
        "eval_size": int(labels.shape[0]),
        "precision": scoring.precision,
        # bf16 scores depend on the hardware's bf16 kernels (AMX, AVX512_BF16, GPU)
        "precision_hardware": _hardware(images.device) if scoring.bf16 else None,
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - started_cpu, 3),
        "cells": {
            "codes": codes.tolist(),
            "scores": scores.tolist(),
            "losses": [round(float(x), 6) for x in losses],
            "valid": valid.tolist(),
            "test": test.tolist(),
        },
    }


def _hardware(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"device": device_description(device)}
    fingerprint = cpu_fingerprint()
    return {"cpu": fingerprint["cpu"], "isa": fingerprint["isa"]}
