"""The calibration study's fields (docs/presets.md): the image resolution, the
weights-only warm-up, the score's split-half τ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness import ranking, search
from harness.config import resolve
from harness.data import build_search_data, crop_padding, downsample
from harness.errors import UsageError

CPU = torch.device("cpu")


# --- resolution ------------------------------------------------------------------------
def test_downsample_is_the_rounded_box_mean() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    small = downsample(images, 2)
    expected = images.double().view(2, 3, 2, 2, 2, 2).mean((3, 5)).round().to(torch.uint8)
    assert small.shape == (2, 3, 2, 2) and torch.equal(small, expected)
    assert downsample(images, 4) is images
    with pytest.raises(ValueError, match="divide"):
        downsample(images, 3)
    assert (crop_padding(32), crop_padding(16), crop_padding(8)) == (4, 2, 1)


def test_search_data_at_16_pixels(data_dir: Path) -> None:
    data = build_search_data(data_dir, CPU, 16, 64, 64, 32, seed=0, resolution=16)
    images, _ = next(data.train.epoch_batches(0))
    assert images.shape == (16, 3, 16, 16) and data.eval_images.shape == (32, 3, 16, 16)
    assert data.info()["resolution"] == 16 and data.info()["crop_padding"] == 2
    full = build_search_data(data_dir, CPU, 16, 64, 64, 32, seed=0)
    assert torch.allclose(
        torch.nn.functional.avg_pool2d(full.eval_images, 2), data.eval_images, atol=0.05
    )


def test_resolution_and_warmup_are_checked_at_plan_time() -> None:
    with pytest.raises(UsageError, match="resolution"):
        resolve("proxy", "darts", {"resolution": "12"}, None)
    with pytest.raises(UsageError, match="below epochs"):
        resolve("proxy", "darts", {"warmup_epochs": "10"}, None)


# --- warm-up -----------------------------------------------------------------------------
@pytest.mark.usefixtures("float64_default")
def test_warmup_trains_the_weights_but_not_alpha() -> None:
    from tests.test_wiring import make, tiny_state

    method = make("darts", epochs=4)
    state = tiny_state(method)
    state.warmup_epochs = 1
    alpha0, weights0 = method.alpha.detach().clone(), state.model.stem[0].weight.detach().clone()
    search.train_epoch(state, 4)
    assert torch.equal(method.alpha, alpha0)  # epoch 0 is warm-up: α stays
    assert not torch.equal(state.model.stem[0].weight, weights0)  # the weights trained
    state.epoch = 1
    search.train_epoch(state, 4)
    assert not torch.equal(method.alpha, alpha0)  # after it, α moves


# --- the score's split-half reliability ------------------------------------------------
def test_split_half_correlates_even_against_odd_batches() -> None:
    rng = np.random.default_rng(0)
    even = rng.integers(0, 64, 20).astype(float)
    per_batch = np.zeros((20, 4, 2))
    per_batch[:, 0, 0] = per_batch[:, 2, 0] = even / 2
    per_batch[:, 1, 0] = per_batch[:, 3, 0] = even[::-1] / 2  # odd batches: reversed order
    labels = torch.zeros(256, dtype=torch.long)
    result = ranking.split_half(per_batch, labels, 64)
    assert result["images"] == [128, 128]
    from harness import metrics

    assert result["kendall_tau"] == pytest.approx(metrics.kendall_tau(even, even[::-1]))
    assert ranking.split_half(per_batch[:, :1], labels[:64], 64)["kendall_tau"] is None
