"""rsps (uniform single-path training, best of K): one drawn path per weight step, only
its gradient, the best candidate as the cell, the path stream across a resume.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import ranking
from harness.config import Config
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
