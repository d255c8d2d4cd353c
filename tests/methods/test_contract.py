"""What every registered method owes the loop: a declared name and summary, a file of
math tests here, one step on the tiny supernet, and a smoke run through the CLI
(variants included).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from smoke_helpers import TELEMETRY, VARIANTS, check_runs, run_cli
from tiny import CPU, make, tiny_state

from harness import catalog, search
from harness.methods import registry
from harness.space import NUM_EDGES, NUM_OPS, Cell

HERE = Path(__file__).parent

pytestmark = pytest.mark.usefixtures("float64_default")


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_method_declares_its_summary_and_has_a_file_of_math_tests(name: str) -> None:
    """The catalog's one line is the class's own, and ``tests/methods/test_<module>.py``
    (named after the method's module, so sdarts_rs and sdarts_adv share one) holds tests."""
    cls = registry()[name]
    assert cls.name == name
    assert cls.summary.strip() and "\n" not in cls.summary
    assert catalog.METHODS[name] == (cls.__module__, cls.summary)
    tests = HERE / f"test_{cls.__module__.rsplit('.', 1)[1]}.py"
    assert tests.is_file(), f"{name}: no {tests.name} in tests/methods/"
    assert "\ndef test_" in tests.read_text(encoding="utf-8"), tests.name


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_method_trains_an_epoch_of_the_tiny_supernet_through_the_loop(name: str) -> None:
    """Three steps of the real loop (``search.train_epoch``) on SuperNet(C=4, N=1): a finite
    loss, moved weights, a cell, per-edge op weights in [0, 1], JSON telemetry, and a
    checkpoint that a fresh instance loads back to the same α and the same cell."""
    method = make(name)
    state = tiny_state(method)
    method.bind_data(state.data.eval_images, state.data.eval_labels, 4)
    before = [p.detach().clone() for p in method.model.parameters()]
    values = search.train_epoch(state, method.config.epochs)
    assert math.isfinite(values["train_loss"])
    after = list(method.model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    cell = method.derive()
    assert Cell.from_arch_str(cell.to_arch_str()) == cell
    probs = method.probabilities()
    assert probs.shape == (NUM_EDGES, NUM_OPS)
    assert bool(((probs >= 0) & (probs <= 1)).all())
    json.dumps(method.telemetry())
    fresh = type(method)(method.model, method.config, method.options, CPU)
    fresh.bind_data(state.data.eval_images, state.data.eval_labels, 4)
    fresh.load_state_dict(method.state_dict())
    for mine, theirs in zip(method.arch_parameters(), fresh.arch_parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert fresh.derive() == cell


def test_every_registered_method_completes_a_smoke_run(tmp_path: Path) -> None:
    names = list(registry())
    assert set(TELEMETRY) <= set(names)
    torch.set_default_dtype(torch.float32)
    run_cli(names, tmp_path, ["epochs=2", "train_size=128", "valid_size=128"])
    check_runs(names, tmp_path, 2)


def test_method_variants_complete_a_smoke_run(tmp_path: Path) -> None:
    names = sorted(TELEMETRY)
    torch.set_default_dtype(torch.float32)
    run_cli(names, tmp_path, ["epochs=1", "train_size=96", "valid_size=96", *VARIANTS])
    check_runs(names, tmp_path, 1)
