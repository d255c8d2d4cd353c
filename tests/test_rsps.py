"""rsps (uniform single-path training, best of K) and the calibration study's new
fields: the image resolution, the weights-only warm-up, the score's split-half τ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness import ranking, search
from harness.config import Config, resolve
from harness.data import build_search_data, crop_padding, downsample
from harness.errors import UsageError
from harness.methods import method_class
from harness.methods.base import Method, StepContext
from harness.space import NUM_EDGES, NUM_OPS, OPS, Cell
from harness.supernet import SLOT, SuperNet

CPU = torch.device("cpu")


def make_rsps(**options: int) -> Method:
    cls = method_class("rsps")
    model = SuperNet(C=4, N=1)
    return cls(model, Config(seed=3), cls.Options(**options), CPU)


def ctx(method: Method) -> StepContext:
    optimizer = torch.optim.SGD(method.model.parameters(), lr=0.1)
    return StepContext(method.model, optimizer, 0, 0, 10, 10)


def test_each_weight_step_trains_one_uniformly_drawn_path() -> None:
    method = make_rsps()
    paths = []
    for _ in range(200):
        path, mask = method.weight_step_inputs()
        assert mask is not None and torch.equal(mask, path.bool())
        assert torch.equal(path.sum(-1), torch.ones(NUM_EDGES))  # one op per edge
        paths.append(path.argmax(-1))
    counts = torch.bincount(torch.stack(paths).flatten(), minlength=NUM_OPS)
    assert counts.min() > 0.15 * 1200 and counts.max() < 0.25 * 1200  # ~uniform over ops
    assert len({tuple(p.tolist()) for p in paths}) > 190  # a fresh draw each step


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_only_the_drawn_path_gets_gradient(impl: str) -> None:
    method = make_rsps()
    method.model = SuperNet(C=4, N=1, impl=impl)
    path, mask = method.weight_step_inputs()
    method.model(torch.randn(4, 3, 8, 8), path, mask).sum().backward()
    cell = method.model.layers[0]
    for edge in range(NUM_EDGES):
        drawn = OPS[int(path[edge].argmax())]
        for kind, op in (("conv3", "nor_conv_3x3"), ("conv1", "nor_conv_1x1")):
            grad = getattr(cell, f"{kind}_weight").grad
            trained = grad is not None and bool(grad[SLOT[edge]].abs().sum() > 0)
            assert trained == (drawn == op), (edge, drawn, kind)
    assert method.active_mask() is None  # outside a step (the gap's pass): all ops live
    assert method.alpha.grad is None and torch.equal(method.alpha, torch.zeros_like(method.alpha))


def test_derive_is_the_best_candidate_and_cached_until_the_weights_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    method = make_rsps(candidates=7)
    method.bind_data(torch.zeros(8, 3, 8, 8), torch.zeros(8, dtype=torch.long), 4)
    calls: list[list[Cell]] = []

    def fake_scores(model, cells, images, labels, batch_size):  # noqa: ANN001, ANN202
        calls.append(cells)
        return np.array([10.0, 30.0, 20.0, 30.0, 5.0, 0.0, 1.0])

    monkeypatch.setattr(ranking, "score_cells", fake_scores)
    first = method.derive()
    assert first == calls[0][1]  # the best, first of the tied two
    assert method.derive() == first and len(calls) == 1  # cached: no rescoring
    method.after_weight_step(ctx(method), torch.zeros(()))
    method.derive()
    assert len(calls) == 2 and calls[1] == calls[0]  # same K candidates, rescored


def test_resume_continues_the_same_path_stream() -> None:
    method = make_rsps()
    method.weight_step_inputs()
    state = method.state_dict()
    expected = [method.weight_step_inputs()[0] for _ in range(3)]
    resumed = make_rsps()
    resumed.load_state_dict(state)
    for path in expected:
        assert torch.equal(resumed.weight_step_inputs()[0], path)


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
