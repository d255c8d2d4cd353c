"""The opt-in switches bf16, channels_last and compile: they run, and the smoke search
finds what the default finds, within stated tolerances.

Why tolerances, not equality: a switch changes the order or precision of float
operations, and a search amplifies such differences — at the smoke scale α moves
by Adam steps of ~3e-2 whose signs follow gradients near zero, so even swapping the
fused for the reference supernet (both exact) moves final α by ~1e-2. The stated
bounds: every op probability within ``ALPHA_TOL``; the same op on every edge whose
default top-2 margin exceeds ``2 * ALPHA_TOL`` (closer edges may legitimately flip);
the discretization gap within ``GAP_ACC_TOL`` points (the smoke eval set has 128
images, 0.78 points each) and ``GAP_LOSS_TOL``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness import config as cfg
from harness import results, search
from harness.benchmark import Benchmark
from harness.errors import UsageError
from harness.methods import option_keys
from harness.methods.base import StepContext
from harness.methods.darts import Darts
from harness.numerics import Numerics
from harness.search import Search, build_state
from harness.space import Cell
from harness.train import SearchState, weight_step

ALPHA_TOL = 0.05
GAP_ACC_TOL = 5.0
GAP_LOSS_TOL = 0.05


def smoke(**overrides: str) -> cfg.Config:
    return cfg.resolve("smoke", "darts", dict(overrides), Darts.Options, 0, option_keys())


def run(directory: Path, data_dir: Path, config: cfg.Config) -> dict[str, Any]:
    final = Search(config, directory, data_dir, Benchmark.load(data_dir), lambda _: None).run()
    lines = (directory / results.EPOCHS).read_text().splitlines()
    return {"final": final, "alpha": np.array(json.loads(lines[-1])["alpha"])}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    return run(tmp_path_factory.mktemp("default"), data_dir, smoke())


def assert_same_search(switched: dict[str, Any], default: dict[str, Any]) -> None:
    assert switched["final"]["status"] == "finished"
    assert np.abs(switched["alpha"] - default["alpha"]).max() <= ALPHA_TOL
    ranked = np.sort(default["alpha"], axis=1)
    decided = ranked[:, -1] - ranked[:, -2] > 2 * ALPHA_TOL
    mine = np.array(Cell.from_arch_str(switched["final"]["arch"]).op_indices)
    theirs = np.array(Cell.from_arch_str(default["final"]["arch"]).op_indices)
    assert (mine[decided] == theirs[decided]).all()
    gap, base = switched["final"]["gap"], default["final"]["gap"]
    assert abs(gap["gap_acc"] - base["gap_acc"]) <= GAP_ACC_TOL
    assert abs(gap["gap_loss"] - base["gap_loss"]) <= GAP_LOSS_TOL


@pytest.mark.parametrize("switch", ["channels_last", "bf16", "bf16+channels_last"])
def test_switch_keeps_the_smoke_search(
    switch: str, tmp_path: Path, data_dir: Path, default_run: dict[str, Any]
) -> None:
    overrides = {name: "true" for name in switch.split("+")}
    assert_same_search(run(tmp_path, data_dir, smoke(**overrides)), default_run)


@pytest.mark.slow
def test_compile_keeps_the_smoke_search(
    tmp_path: Path, data_dir: Path, default_run: dict[str, Any]
) -> None:
    """TorchInductor on CPU: minutes of compilation on a 2-core machine, hence slow."""
    assert_same_search(run(tmp_path, data_dir, smoke(compile="true")), default_run)


def one_step_loss(data_dir: Path, **overrides: str) -> tuple[SearchState, float]:
    config = smoke(**overrides)
    torch.manual_seed(0)
    state = search.build_state(config, data_dir, torch.device("cpu"))
    batch = state.prepare(next(state.data.train.epoch_batches(0)))
    ctx = StepContext(state.model, state.w_optimizer, 0, 0, 8, 3, state.numerics)
    totals = weight_step(state, ctx, batch)
    return state, float(totals[0]) / batch[1].shape[0]


def test_channels_last_one_step_matches(data_dir: Path) -> None:
    """Same weights, same batch: the channels_last step's loss equals the default's."""
    state, loss = one_step_loss(data_dir, channels_last="true")
    assert state.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    _, expected = one_step_loss(data_dir)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_bf16_autocasts_the_forward_and_keeps_the_loss_close(data_dir: Path) -> None:
    state, loss = one_step_loss(data_dir, bf16="true")
    images, labels = state.prepare(next(state.data.valid.epoch_batches(0)))
    with state.autocast():
        logits = state.model(images, state.method.weight_step_weights())
    assert logits.dtype == torch.bfloat16
    ctx = StepContext(state.model, state.w_optimizer, 0, 0, 8, 3, Numerics(bf16=True))
    assert ctx.loss((images, labels), state.method.edge_weights()).dtype == torch.float32
    _, expected = one_step_loss(data_dir)
    assert loss == pytest.approx(expected, rel=0.02)


def test_compile_reports_a_broken_backend_clearly(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(UsageError, match=r"compile=true .* \(no C\+\+ compiler found\)"):
        build_state(smoke(compile="true"), data_dir, torch.device("cpu"))


# --- cuda_graphs: CUDA only, refused at plan time elsewhere ----------------------------------
def test_cuda_graphs_is_refused_with_cpu_bf16_or_compile() -> None:
    with pytest.raises(UsageError, match=r"cuda_graphs=true: .*needs a CUDA device; device=cpu"):
        smoke(cuda_graphs="true", device="cpu")
    for other in ("bf16", "compile"):
        with pytest.raises(UsageError, match=f"false with {other}=true"):
            smoke(cuda_graphs="true", device="cuda", **{other: "true"})
    smoke(cuda_graphs="true", device="cuda")  # a CUDA device: allowed (checked where it runs)


def test_cuda_graphs_with_device_auto_is_refused_at_plan_time_without_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["run", "--preset", "smoke", "--results", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_:
        raise SystemExit(main([*argv, "--set", "cuda_graphs=true", "--set", "device=auto"]))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "cuda_graphs=true" in err and "device=auto finds none here" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cuda_graphs_dispatch_runs_eagerly_off_cuda() -> None:
    """The installed dispatcher is the model's forward; off CUDA it captures nothing and
    computes what the plain forward computes."""
    from harness import graphs
    from harness.supernet import SuperNet

    torch.manual_seed(0)
    model = SuperNet(4, 1).train()
    x, w = torch.randn(4, 3, 32, 32), torch.full((6, 5), 0.2)
    expected = model(x, w)
    graphed = graphs.install(model)
    assert model.forward is graphed
    assert torch.equal(model(x, w), expected)
    assert graphed.captures == 0 and graphed.graphs == {}
    assert set(model.state_dict()) == set(SuperNet(4, 1).state_dict())
