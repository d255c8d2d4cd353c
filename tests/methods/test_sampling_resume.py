"""A sampling run killed mid-search resumes to the same result: the draws and DrNAS's
stage survive the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from harness.methods import method_class

pytestmark = pytest.mark.usefixtures("float64_default")


# --- resume: the draws and DrNAS's stage survive a kill -------------------------------------
class Killed(Exception):
    pass


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("gdas", {}), ("drnas", {"drnas.progressive": "true", "drnas.reg_type": "kl"})],
    ids=["gdas", "drnas-progressive"],
)
def test_a_killed_sampling_run_resumes_to_the_same_result(
    name: str,
    overrides: dict[str, str],
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed in epoch 4 of 4 (DrNAS: after its stage change at epoch 3), the resumed run
    ends where the uninterrupted one does: the draws come from the checkpointed
    generator, and the stage, mask and K from the method's checkpointed state."""
    from harness import config as cfg
    from harness import methods, results, search
    from harness.benchmark import Benchmark
    from harness.train import SearchState

    torch.set_default_dtype(torch.float32)
    sizes = {"epochs": "4", "train_size": "64", "valid_size": "64", "rank_samples": "0"}
    config = cfg.resolve(
        "smoke",
        name,
        {**sizes, **overrides},
        method_class(name).Options,
        0,
        methods.option_keys(),
    )
    table = Benchmark.load(data_dir)

    def run(directory: Path) -> dict[str, Any]:
        return search.Search(config, directory, data_dir, table, lambda _: None).run()

    whole = run(tmp_path / "whole")
    original, calls = search.train_epoch, {"n": 0}

    def dies_in_the_last_epoch(state: SearchState, epochs: int) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed
        return original(state, epochs)

    monkeypatch.setattr(search, "train_epoch", dies_in_the_last_epoch)
    with pytest.raises(Killed):
        run(tmp_path / "killed")
    monkeypatch.setattr(search, "train_epoch", original)
    resumed = run(tmp_path / "killed")
    assert resumed["arch"] == whole["arch"] and resumed["gap"] == whole["gap"]
    states = [
        torch.load(tmp_path / d / results.CHECKPOINT, weights_only=False)
        for d in ("whole", "killed")
    ]
    assert torch.equal(states[0]["method"]["alpha"], states[1]["method"]["alpha"])
    for key, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][key]), key
    if name == "drnas":
        assert states[1]["method"]["extra"]["stage"] == 1
