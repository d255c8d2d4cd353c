"""The search loop: a complete run directory, and bit-exact resume after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness import config as cfg
from harness import results, search
from harness.benchmark import Benchmark
from harness.methods import option_keys
from harness.methods.darts import Darts
from harness.rundir import RunDir
from harness.search import Search
from harness.train import SearchState


def smoke_config(**overrides: str) -> cfg.Config:
    return cfg.resolve("smoke", "darts", dict(overrides), Darts.Options, 0, option_keys())


def run(directory: Path, data_dir: Path, config: cfg.Config) -> dict:
    return Search(config, directory, data_dir, Benchmark.load(data_dir), lambda _: None).run()


def test_run_directory_is_complete(tmp_path: Path, data_dir: Path) -> None:
    final = run(tmp_path, data_dir, smoke_config(epochs="2"))
    assert final["status"] == "finished"
    for key in ("cifar10", "cifar100", "imagenet16"):
        assert set(final["nb201"][key]) == {"valid", "test"}
    assert final["table"]["sha256"] == Benchmark.load(data_dir).info()["sha256"]
    assert final["config"]["preset"] == "smoke" and final["environment"]["torch"]
    assert final["environment"]["code_version"]
    epochs = results.read_jsonl(tmp_path / results.EPOCHS)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["arch"] == final["arch"]
    assert abs(sum(epochs[-1]["alpha"][0]) - 1.0) < 1e-4
    assert (tmp_path / results.CHECKPOINT).is_file() and (tmp_path / results.CONFIG).is_file()
    assert not results.stray_temporaries(tmp_path)


class Killed(Exception):
    pass


def test_killed_run_resumes_to_identical_result(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = smoke_config(epochs="3")
    whole = run(tmp_path / "whole", data_dir, config)
    whole_state = torch.load(tmp_path / "whole" / results.CHECKPOINT, weights_only=False)

    original = search.train_epoch
    calls = {"n": 0}

    def dies_in_second_epoch(state: SearchState, epochs: int) -> dict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        return original(state, epochs)

    monkeypatch.setattr(search, "train_epoch", dies_in_second_epoch)
    with pytest.raises(Killed):
        run(tmp_path / "killed", data_dir, config)
    assert not RunDir(tmp_path / "killed").finished
    monkeypatch.setattr(search, "train_epoch", original)
    resumed = run(tmp_path / "killed", data_dir, config)

    assert resumed["arch"] == whole["arch"]
    assert resumed["gap"] == whole["gap"]
    state = torch.load(tmp_path / "killed" / results.CHECKPOINT, weights_only=False)
    for name, tensor in whole_state["model"].items():
        assert torch.equal(tensor, state["model"][name]), name
    assert torch.equal(whole_state["method"]["alpha"], state["method"]["alpha"])
    drop = ("wall_s", "cpu_s")
    strip = [{k: v for k, v in e.items() if k not in drop} for e in whole_state["records"]]
    assert strip == [{k: v for k, v in e.items() if k not in drop} for e in state["records"]]


def test_changed_config_is_refused(tmp_path: Path, data_dir: Path) -> None:
    run(tmp_path, data_dir, smoke_config(epochs="1"))
    with pytest.raises(cfg.UsageError, match="different config.*epochs"):
        run(tmp_path, data_dir, smoke_config(epochs="2"))


def test_the_paper_protocols_data_split_and_bn_mode_reach_the_run(data_dir: Path) -> None:
    """sdarts_rs under ``paper`` (lineage 2): the halves split feeds the loaders and the
    supernet's BN keeps running statistics, as config.json records."""
    from harness.data import HALVES_SPLIT
    from harness.methods import method_class

    small = {"C": "4", "N": "1", "train_size": "64", "valid_size": "64", "gap_eval_size": "32"}
    config = cfg.resolve("paper", "sdarts_rs", small, method_class("sdarts_rs").Options)
    assert (config.split, config.track_running_stats) == ("halves", True)
    state = search.build_state(config, data_dir, torch.device("cpu"))
    assert state.data.info()["split"] == HALVES_SPLIT
    norms = [m for m in state.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.track_running_stats for m in norms)
