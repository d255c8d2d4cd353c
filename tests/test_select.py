"""The ``select`` axis: DARTS-PT's perturbation-based selection (harness/select.py), how
a run records each selection, and how the report compares them on the same supernets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny import CPU, TRAIN_LABELS, VALID_LABELS, tiny_state
from torch import Tensor

from harness import cli, runs, select
from harness.config import Config
from harness.data import CIFAR10_MEAN, CIFAR10_STD, normalize
from harness.methods import method_class
from harness.methods.base import Method
from harness.space import NUM_EDGES, NUM_OPS, OPS
from harness.supernet import SuperNet

CONV3 = OPS.index("nor_conv_3x3")


def make(name: str = "darts", **config: Any) -> Method:
    cls = method_class(name)
    settings = {"epochs": 10, "dtype": "float64", **config}
    return cls(SuperNet(C=4, N=1), Config(**settings), cls.Options(), CPU)


@pytest.mark.usefixtures("float64_default")
def test_the_op_whose_masking_hurts_most_is_chosen() -> None:
    """A supernet whose last edge computes almost only its 3×3 conv, with labels its own
    predictions: masking that conv must cost the most accuracy, the others next to none."""
    model = SuperNet(C=4, N=1).eval()
    images = torch.randn(64, 3, 8, 8)
    weights = torch.full((NUM_EDGES, NUM_OPS), 0.2)
    weights[5] = 0.01
    weights[5, CONV3] = 0.96
    with torch.no_grad():
        labels = model(images, weights).argmax(1)

    def accuracy(w: Tensor) -> float:
        with torch.no_grad():
            return 100.0 * float((model(images, w).argmax(1) == labels).double().mean())

    op, accs = select.decide_edge(weights, 5, accuracy)
    assert op == CONV3
    others = [a for o, a in enumerate(accs) if o != CONV3]
    assert accs[CONV3] < min(others) - 10 and min(others) >= 90


def test_masking_zeroes_one_op_and_projection_is_one_hot_in_every_stage() -> None:
    weights = torch.rand(3, NUM_EDGES, NUM_OPS)
    masked = select.masked(weights, 2, 4)
    assert (masked[:, 2, 4] == 0).all() and masked.sum() == pytest.approx(
        float(weights.sum() - weights[:, 2, 4].sum())
    )
    fixed = select.projected(weights, {1: CONV3})
    assert torch.equal(fixed[:, 1], F.one_hot(torch.tensor([CONV3] * 3), NUM_OPS).float())
    assert torch.equal(fixed[:, 0], weights[:, 0])


def test_edge_order_is_seeded() -> None:
    orders = {seed: select.edge_order(seed) for seed in range(4)}
    assert all(sorted(order) == list(range(NUM_EDGES)) for order in orders.values())
    assert select.edge_order(0) == orders[0] and len({tuple(o) for o in orders.values()}) > 1


@pytest.mark.usefixtures("float64_default")
def test_pt_decides_edges_in_seeded_order_and_fine_tunes_on_train_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the harness's earlier PT: α frozen, equal intervals (the code's: test below)
    method = make(pt_tune_frac=0.1, seed=7, pt_alpha="frozen", pt_tune="search")
    state = tiny_state(method)
    pattern = torch.rand(NUM_EDGES, NUM_OPS)
    pattern[:, 0] = 0  # masking `none` changes nothing here, as in a real supernet

    def accuracy(w: Tensor) -> float:  # removing op o of edge e costs pattern[e, o]·w[e, o]
        return float((w * pattern).sum())

    labels: list[int] = []
    forward_weights: list[Tensor] = []
    cross_entropy, forward = F.cross_entropy, method.model.forward

    def spy_loss(logits: Tensor, targets: Tensor, **options: Any) -> Tensor:
        labels.extend(targets.tolist())
        return cross_entropy(logits, targets, **options)

    def spy_forward(x: Tensor, w: Tensor, active: Tensor | None = None) -> Tensor:
        forward_weights.append(w)
        return forward(x, w, active)

    monkeypatch.setattr(F, "cross_entropy", spy_loss)
    monkeypatch.setattr(method.model, "forward", spy_forward)
    result = select.pt_select(state, method.config, accuracy)
    assert result.order == select.edge_order(7) and result.tune_steps == 3
    assert [d["edge"] for d in result.decisions] == result.order
    assert result.cell.op_indices == tuple(pattern.argmax(-1).tolist())  # α = uniform here
    # fine-tuning: 3 steps after each of the first five decisions, on train batches only
    assert len(forward_weights) == 15 and set(labels) <= set(TRAIN_LABELS) and len(labels) == 60
    for i, weights in enumerate(forward_weights):
        decided = result.order[: i // 3 + 1]
        one_hot = [k for k in range(NUM_EDGES) if float(weights[k].max()) == 1.0]
        assert sorted(one_hot) == sorted(decided)


def test_select_pt_runs_after_any_method_and_the_report_compares_selections(
    tmp_path: Path,
) -> None:
    torch.set_default_dtype(torch.float32)
    names = ["darts", "sdarts_rs"]
    argv = ["run", "--methods", ",".join(names), "--seeds", "1", "--preset", "smoke"]
    argv += ["--results", str(tmp_path / "results")]
    for item in ("epochs=1", "train_size=64", "valid_size=64", "rank_samples=0", "select=pt"):
        argv += ["--set", item]
    assert cli.main(argv) == 0
    for name in names:
        directory = tmp_path / "results" / "smoke" / "cifar10" / name / "seed-0"
        final = json.loads((directory / "final.json").read_text())
        last = json.loads((directory / "epochs.jsonl").read_text().splitlines()[-1])
        found = final["selections"]
        assert final["selection"] == "pt" and set(found) == {"argmax", "pt"}
        assert final["arch"] == found["pt"]["arch"] and final["nb201"] == found["pt"]["nb201"]
        assert found["argmax"]["arch"] == last["arch"]  # argmax: the last epoch's cell
        assert found["pt"]["order"] == select.edge_order(0)
        assert len(found["pt"]["decisions"]) == NUM_EDGES
        assert final["config"]["select"] == "pt"
    frame = runs.by_selection(runs.load_runs(tmp_path / "results"))
    assert len(frame) == 4
    assert sorted(c["select"] for c in frame["config"]) == ["argmax", "argmax", "pt", "pt"]
    out = tmp_path / "reports"
    assert cli.main(["report", "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    page = (out / "smoke" / "cifar10" / "report.md").read_text()
    assert "darts [select=argmax]" in page and "sdarts_rs [select=pt]" in page
    assert "2 run(s)" in page


@pytest.mark.usefixtures("float64_default")
def test_pt_fine_tunes_as_the_code_does_alpha_steps_on_valid_batches_and_5_5_5_5_4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default (``pt_alpha=step``, ``pt_tune=code``): before each fine-tuning weight
    step the method's own α step runs on a valid batch with the decided edges one-hot,
    the intervals are 5, 5, 5, 5, 4 fifths of ``pt_tune_frac``, and the SGD is the code's."""
    method = make(pt_tune_frac=0.1, seed=7)  # 0.1 · 10 epochs · 3 batches = 3 steps
    state = tiny_state(method)
    alpha_before = method.alpha.detach().clone()
    calls: list[tuple[list[int], dict[int, int], Tensor]] = []
    arch_step = method.arch_step

    def spy_arch_step(ctx: Any, train: Any, valid: Any) -> None:
        live = select.projected_live(method.edge_weights(), ctx.decided)
        calls.append((valid[1].tolist(), dict(ctx.decided), live))
        arch_step(ctx, train, valid)

    monkeypatch.setattr(method, "arch_step", spy_arch_step)
    lines: list[str] = []
    result = select.pt_select(state, method.config, lambda w: float(w.sum()), lines.append)
    assert result.tune_schedule == [3, 3, 3, 3, 2] and result.tune_steps == 3
    assert result.record()["pt_alpha"] == "step" and result.record()["pt_tune"] == "code"
    assert len(calls) == 14  # frozen α: none
    for i, (labels, decided, weights) in enumerate(calls):
        assert set(labels) <= set(VALID_LABELS)
        n = sum(1 for total in (3, 6, 9, 12) if i >= total) + 1
        assert list(decided) == result.order[:n]
        for edge, op in decided.items():
            assert torch.equal(weights[edge], F.one_hot(torch.tensor(op), NUM_OPS).double())
    assert not torch.equal(method.alpha.detach(), alpha_before)  # α moved between decisions
    assert all(line.startswith("pt: darts seed 7: edge ") for line in lines) and len(lines) == 6


def test_pt_optimizer_is_the_codes_or_the_searchs() -> None:
    model = SuperNet(C=4, N=1)
    code = select.tune_optimizer(model, Config()).param_groups[0]
    assert code["lr"] == pytest.approx(0.0025)
    assert (code["nesterov"], code["weight_decay"]) == (False, 3e-4)
    search = select.tune_optimizer(model, Config(pt_tune="search")).param_groups[0]
    assert (search["nesterov"], search["weight_decay"]) == (True, 5e-4)


@pytest.mark.usefixtures("float64_default")
def test_alpha_step_under_projection_has_no_gradient_on_decided_edges() -> None:
    method = make()
    state = tiny_state(method)
    decided = {1: CONV3, 4: 0}
    ctx = select.ProjectedContext(state.model, state.w_optimizer, 9, 0, 3, 10, decided=decided)
    batch = next(state.data.valid.epoch_batches(0))
    grad = torch.autograd.grad(ctx.loss(batch, method.edge_weights()), method.alpha)[0]
    assert (grad[[1, 4]] == 0).all() and (grad[[0, 2, 3, 5]] != 0).any(dim=-1).all()


def test_on_a_tie_a_real_op_beats_none_and_none_wins_only_when_strictly_lowest() -> None:
    weights = torch.full((NUM_EDGES, NUM_OPS), 0.2)
    flat = select.decide_edge(weights, 3, lambda w: 50.0)
    assert flat == (OPS.index("skip_connect"), [50.0] * NUM_OPS)  # the code: `none` (op 0)

    def scored(accs: list[float]) -> Callable[[Tensor], float]:  # by the op masked on edge 3
        return lambda w: accs[int((w[3] == 0).nonzero())]

    conv1 = OPS.index("nor_conv_1x1")
    assert select.decide_edge(weights, 3, scored([50, 52, 50, 51, 53]))[0] == conv1
    assert select.decide_edge(weights, 3, scored([50, 51, 51, 51, 51]))[0] == OPS.index("none")


@pytest.mark.usefixtures("float64_default")
def test_pt_scores_on_every_search_valid_image_in_train_mode() -> None:
    method = make()
    state = tiny_state(method)
    weights = method.edge_weights().detach()
    accuracy = select.valid_accuracy(state, batch_size=5)
    state.model.eval()
    images = normalize(state.data.valid.images, CIFAR10_MEAN, CIFAR10_STD, torch.float64)
    state.model.train()
    with torch.no_grad():
        logits = torch.cat([state.model(images[s : s + 5], weights) for s in (0, 5, 10)])
    expected = 100.0 * float((logits.argmax(1) == state.data.valid.labels).sum()) / 12
    assert accuracy(weights) == pytest.approx(expected) and state.model.training
