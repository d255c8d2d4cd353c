"""Divergence is a result, not a crash: the run stops as ``diverged`` with its epoch and
reason, the sweep goes on, and the report shows the run instead of dropping it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness import methods, sweep
from harness.benchmark import Benchmark
from harness.methods.base import Batch, StepContext
from harness.methods.darts import Darts
from harness.report import write_reports

CHEAP = {"epochs": "3", "rank_samples": "4"}


class NanAlpha(Darts):
    """DARTS whose α turns NaN in the first step of epoch 2 (0-based epoch 1)."""

    name = "test-nan-alpha"
    summary = "test only: α becomes NaN in epoch 2"

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        super().arch_step(ctx, train, valid)
        if ctx.epoch == 1 and ctx.step == 0:
            with torch.no_grad():
                self.alpha.fill_(float("nan"))


@pytest.fixture
def nan_method() -> Iterator[str]:
    methods.register(NanAlpha)
    try:
        yield NanAlpha.name
    finally:
        methods._REGISTRY.pop(NanAlpha.name, None)


def _sweep(names: list[str], overrides: dict[str, str], root: Path, data_dir: Path) -> list[dict]:
    jobs = sweep.plan(names, [0], "smoke", overrides, root)
    return sweep.run_jobs(jobs, data_dir, Benchmark.load(data_dir), n_jobs=1)


def test_nan_alpha_stops_the_run_and_the_sweep_goes_on(
    nan_method: str, data_dir: Path, tmp_path: Path
) -> None:
    finals = {f["method"]: f for f in _sweep(["darts", nan_method], CHEAP, tmp_path, data_dir)}
    assert finals["darts"]["status"] == "finished"
    diverged = finals[nan_method]
    assert diverged["status"] == "diverged"
    assert diverged["epochs_done"] == 2
    assert diverged["reason"] == "non-finite architecture parameters"
    run = tmp_path / "smoke" / "cifar10" / nan_method / "seed-0"
    assert json.loads((run / "final.json").read_text())["status"] == "diverged"
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]

    out = tmp_path / "reports"
    write_reports(tmp_path, out, data_dir)
    table = pd.read_csv(out / "smoke" / "cifar10" / "nb201.csv").set_index("method")
    assert table.loc[nan_method, "diverged"] == 1
    assert table.loc[nan_method, "seeds"] == 0
    assert table.loc["darts", "diverged"] == 0
    page = (out / "smoke" / "cifar10" / "report.md").read_text()
    assert f"{nan_method} seed 0: diverged (non-finite architecture parameters)" in page


def test_exploding_weights_diverge_on_the_loss(data_dir: Path, tmp_path: Path) -> None:
    (final,) = _sweep(["darts"], {**CHEAP, "w_lr": "1e30"}, tmp_path, data_dir)
    assert final["status"] == "diverged"
    # NaN weights turn the next α step NaN too; either is named as the reason.
    assert final["reason"].startswith("non-finite ")
    assert 1 <= final["epochs_done"] <= 3
    assert "ranking" not in final
    run = tmp_path / "smoke" / "cifar10" / "darts" / "seed-0"
    last = json.loads((run / "epochs.jsonl").read_text().splitlines()[-1])
    assert last["epoch"] == final["epochs_done"]
    assert not math.isfinite(last["train_loss"])
