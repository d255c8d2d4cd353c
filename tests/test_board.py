"""TensorBoard logging (``--set tensorboard=true``): which numbers become which tags,
the events of a real run, resumed epochs shown once, and a missing package refused."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import api, board, results
from harness.errors import UsageError

RECORD: dict[str, Any] = {
    "epoch": 3,
    "train_loss": 2.2,
    "train_acc": 19.5,
    "supernet_valid_acc": 20.3,
    "onehot_valid_loss": 2.4,
    "gap_acc": 3.9,
    "alpha_entropy": 1.6,
    "w_lr": 0.01,
    "bn_mode": "batch",
    "arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "alpha": [[0.2, 0.2, 0.2, 0.3, 0.1]] * 6,
    "nb201": {"cifar10": {"valid": 88.0, "test": 91.0}, "imagenet16": {"test": 33.3}},
    "method": {"lambda_t": 0.5, "divergence": None, "flag": True, "bad": math.nan},
}


def test_scalars_names_every_number_of_a_record() -> None:
    tags = board.scalars(RECORD)
    assert tags["loss/train_loss"] == 2.2 and tags["loss/onehot_valid_loss"] == 2.4
    assert tags["accuracy/train_acc"] == 19.5 and tags["accuracy/supernet_valid_acc"] == 20.3
    assert tags["gap/gap_acc"] == 3.9 and tags["alpha/alpha_entropy"] == 1.6
    assert tags["run/w_lr"] == 0.01
    assert tags["nb201/c10_test"] == 91.0 and tags["nb201/in16_test"] == 33.3
    assert tags["alpha_edge_0-1/nor_conv_3x3"] == 0.3 and tags["alpha_edge_2-3/none"] == 0.2
    assert len([t for t in tags if t.startswith("alpha_edge_")]) == 30
    assert tags["method/lambda_t"] == 0.5
    for absent in ("method/divergence", "method/flag", "method/bad", "run/bn_mode", "run/epoch"):
        assert absent not in tags, absent  # None, booleans, NaN, text and the step itself


def read_events(directory: Path) -> Any:
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    ).EventAccumulator(str(directory))
    accumulator.Reload()
    return accumulator


def scalar_steps(events: Any, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) logged under ``tag``, repeats included."""
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_a_resumed_run_shows_each_epoch_once(tmp_path: Path) -> None:
    """Epoch 2 was logged, then the process died before its checkpoint: the resumed
    attempt logs epoch 2 again and only its value remains."""
    pytest.importorskip("tensorboard")
    with board.epoch_writer(True, tmp_path, 0) as write:
        write({**RECORD, "epoch": 1, "gap_acc": 1.0})
        write({**RECORD, "epoch": 2, "gap_acc": 2.0})
    with board.epoch_writer(True, tmp_path, 1) as write:  # resumed after epoch 1
        write({**RECORD, "epoch": 2, "gap_acc": 20.0})
    events = read_events(tmp_path / board.SUBDIR)
    assert scalar_steps(events, "gap/gap_acc") == [(1, 1.0), (2, 20.0)]


def test_a_search_writes_its_epochs_as_events(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    final = harness.search("darts", 0, "smoke", tmp_path, epochs=2, tensorboard=True)
    run = tmp_path / "smoke/cifar10/darts/seed-0"
    records = results.read_jsonl(run / results.EPOCHS)
    events = read_events(run / board.SUBDIR)
    for tag in ("gap/gap_acc", "loss/train_loss", "accuracy/onehot_valid_acc", "nb201/c10_test"):
        logged = scalar_steps(events, tag)
        assert [step for step, _ in logged] == [record["epoch"] for record in records]
        expected = [board.scalars(record)[tag] for record in records]
        assert [value for _, value in logged] == pytest.approx(expected, rel=1e-6)
    assert len([t for t in events.Tags()["scalars"] if t.startswith("alpha_edge_")]) == 30
    # an execution field: the finished run is the same run with tensorboard off
    assert harness.search("darts", 0, "smoke", tmp_path, epochs=2) == final
    assert final["config"]["tensorboard"] is True


def test_tensorboard_without_the_package_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec

    def without_tensorboard(name: str, *args: Any) -> Any:
        return None if name == "tensorboard" else find_spec(name, *args)

    monkeypatch.setattr(board.importlib.util, "find_spec", without_tensorboard)
    message = "tensorboard=true needs the tensorboard package: pip install -e '.[tensorboard]'"
    with pytest.raises(UsageError, match=re.escape(message)):
        api.prepare_sweep("darts", 1, "smoke", tmp_path / "r", overrides={"tensorboard": True})
    assert not (tmp_path / "r").exists()
    api.prepare_sweep("darts", 1, "smoke", tmp_path / "r")  # off: not needed
