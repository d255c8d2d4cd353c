"""The seams of the training core: one numerics object that every forward pass goes
through and that alone parses ``config.dtype``, and the selection registry that the
loop iterates (harness/numerics.py, harness/train.py, harness/select.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import CPU, make, tiny_state
from torch import Tensor

import harness
from harness import ranking, search, select, selections, train
from harness.benchmark import Benchmark
from harness.config import RULES, Config
from harness.methods.base import StepContext
from harness.numerics import Numerics
from harness.space import Cell

PACKAGE = Path(harness.__file__).parent


def harness_sources() -> dict[str, str]:
    return {
        str(path.relative_to(PACKAGE)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


@pytest.mark.parametrize(
    ("pattern", "also_in"),
    [
        (r"config\.dtype\b", {"config.py"}),  # the dtype named; config only checks the name
        (r"torch\.autocast\(", set()),  # the bf16 switch, applied
        (r"memory_format=torch\.channels_last\)", {"supernet.py"}),  # the supernet's own
        (r"\.float\(\) if", set()),  # the upcast rule, written out
    ],
)
def test_only_the_numerics_module_interprets_the_switches(pattern: str, also_in: set[str]) -> None:
    """``dtype``, ``bf16``, ``channels_last`` and the upcast were each interpreted in up
    to five places; a sixth copy would drift. (``config.py`` refuses bf16 and tf32 with
    float64 by name; ``SuperNet.to_channels_last`` lays out parameters, not images.)"""
    found = [
        name
        for name, text in harness_sources().items()
        if re.search(pattern, text) and name not in {"numerics.py", *also_in}
    ]
    assert found == []


def test_numerics_is_read_from_the_config_once_per_field() -> None:
    numerics = Numerics.from_config(Config(dtype="float64", channels_last=True))
    assert numerics == Numerics(torch.float64, bf16=False, channels_last=True)
    assert Numerics.from_config(Config(bf16=True)).precision == "bfloat16"
    assert numerics.precision == "float64"


def test_the_one_forward_and_loss_autocasts_lays_out_and_upcasts() -> None:
    seen: list[Tensor] = []
    weight = torch.randn(10, 3 * 4 * 4)

    def forward(images: Tensor) -> Tensor:
        seen.append(images)
        return images.flatten(1) @ weight.T

    images, labels = torch.randn(2, 3, 4, 4), torch.tensor([1, 2])
    loss, logits = Numerics(bf16=True, channels_last=True).loss(forward, images, labels)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss, logits = Numerics().loss(forward, images, labels, reduction="sum")
    assert seen[1] is images and logits.dtype == torch.float32
    assert float(loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
    )


@pytest.mark.usefixtures("float64_default")
def test_every_forward_of_a_run_goes_through_the_state_numerics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The weight step, the α loss, the gap evaluation, the ranking's scores and PT's
    fine-tuning and accuracy all run under the numerics the state carries."""
    method = make("darts", epochs=4)
    state = tiny_state(method)
    state.numerics = Numerics(torch.float64)
    users: list[Numerics] = []
    logits = Numerics.logits

    def spy(self: Numerics, forward: Any, images: Tensor) -> Tensor:
        users.append(self)
        return logits(self, forward, images)

    monkeypatch.setattr(Numerics, "logits", spy)
    train_batch = next(state.data.train.epoch_batches(0))
    valid_batch = next(state.data.valid.epoch_batches(0))
    ctx = StepContext(state.model, state.w_optimizer, 0, 0, 3, 4, state.numerics)
    paths = {
        "weight step": lambda: train.weight_step(state, ctx, train_batch),
        "alpha loss": lambda: method.arch_step(ctx, train_batch, valid_batch),
        "evaluation": lambda: search.measure_gap(state, Config(gap_eval_batch=4)),
        "PT fine-tuning": lambda: select._Tuning(state, method.config, state.w_optimizer).run(
            {0: 1}, steps=1
        ),
        "PT accuracy": lambda: select.valid_accuracy(state, 4)(method.edge_weights().detach()),
    }
    for name, run in paths.items():
        users.clear()
        run()
        assert users and all(u == state.numerics for u in users), name
    users.clear()
    images, labels = state.data.eval_images, state.data.eval_labels
    ranking.score_cells_with_loss(
        state.model, [Cell.from_code(7)], images, labels, 4, state.numerics
    )
    assert users == [state.numerics]


def test_ranking_scores_one_hot_weights_in_the_runs_dtype() -> None:
    cell = Cell.from_code(1835)
    onehot = ranking._onehot(cell, CPU, Numerics(torch.float64))
    assert onehot.dtype == torch.float64 and onehot.argmax(1).tolist() == list(cell.op_indices)


def test_scoring_keeps_the_runs_dtype_and_drops_its_layout() -> None:
    run = Numerics(torch.float32, bf16=True, channels_last=True)
    assert ranking.scoring_numerics(run, "float32", CPU) == Numerics(torch.float32)
    assert ranking.scoring_numerics(run, "bfloat16", CPU).bf16
    assert ranking.scoring_numerics(Numerics(torch.float64), "bfloat16", CPU).precision == (
        "float64"
    )


# --- the selection registry ------------------------------------------------------------
def test_the_config_accepts_exactly_the_registered_selections() -> None:
    assert tuple(select.SELECTIONS) == selections.NAMES
    assert all(RULES["select"].check(name) for name in select.SELECTIONS)
    assert not RULES["select"].check("nope")


@pytest.mark.usefixtures("float64_default")
def test_the_loop_records_whatever_the_registry_holds(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A selection added to the registry runs without a line in the loop; one that needs a
    finished search is skipped, with a log line, on a diverged one."""
    chosen = Cell.from_code(9000)
    calls: list[str] = []

    def read(state: train.SearchState, config: Config, log: Any) -> tuple[Cell, dict[str, Any]]:
        calls.append(config.select)
        return chosen, {"note": 1}

    monkeypatch.setitem(select.SELECTIONS, "probe", select.Selection(read, needs_finished=True))
    benchmark = Benchmark.load(data_dir)
    lines: list[str] = []
    config = Config(select="probe", method="darts", seed=3)
    loop = search.Search(config, tmp_path, data_dir, benchmark, lines.append)
    state = tiny_state(make("darts"))

    found = loop._selections(state, "finished")
    assert list(found) == ["argmax", "probe"] and calls == ["probe"]
    assert found["probe"]["arch"] == chosen.to_arch_str() and found["probe"]["note"] == 1
    assert found["argmax"]["arch"] == state.method.derive().to_arch_str()

    assert list(loop._selections(state, "diverged")) == ["argmax"] and calls == ["probe"]
    assert lines == [
        "probe: darts seed 3: select=probe skipped: the search diverged; the cell is argmax's"
    ]
