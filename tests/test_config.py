"""Every config field and method option has a declared range or choice (issue 14), the
defaults and presets satisfy them, and a bad value is refused at plan time."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness import config as cfg
from harness import data, methods, sweep
from harness.errors import UsageError


def test_every_config_field_has_a_rule() -> None:
    """A new field must declare what it allows; the sweep's own fields are not --set."""
    fields = {f.name for f in dataclasses.fields(cfg.Config)}
    assert set(cfg.RULES) == fields - {"method", "preset", "method_options"}
    assert set(cfg.config_keys()) == set(cfg.RULES) - {"seed"}


def test_each_field_is_declared_once_in_its_metadata() -> None:
    """RULES, BEFORE_FIELD and ONLY_FOR_SELECTION are read from the fields' metadata,
    never kept beside it; a pre-field value and a selection are values the rules allow."""
    fields = dataclasses.fields(cfg.Config)
    assert {f.name: f.metadata[cfg.RULE] for f in fields if cfg.RULE in f.metadata} == cfg.RULES
    before = {f.name: f.metadata[cfg.BEFORE] for f in fields if cfg.BEFORE in f.metadata}
    assert before == cfg.BEFORE_FIELD and "tf32" in before
    assert all(cfg.RULES[name].check(value) for name, value in before.items())
    only = {f.name for f in fields if cfg.ONLY_FOR_SELECTION_KEY in f.metadata}
    assert set(cfg.ONLY_FOR_SELECTION) == only == {"pt_tune_frac", "pt_tune", "pt_alpha", "pt_eval"}
    assert all(cfg.RULES["select"].check(owner) for owner in cfg.ONLY_FOR_SELECTION.values())


def test_every_text_or_integer_method_option_declares_its_rule() -> None:
    """Floats and booleans have a default rule (finite, true/false); a text option needs
    its choices and an integer option its range."""
    for name, cls in methods.registry().items():
        declared = getattr(cls.Options, "RULES", {})
        for field in dataclasses.fields(cls.Options):
            if field.type in ("str", "int", str, int):
                assert field.name in declared, f"{name}.{field.name}"
        assert set(declared) <= {f.name for f in dataclasses.fields(cls.Options)}, name


@pytest.mark.parametrize("preset", list(cfg.PRESETS))
def test_every_preset_and_method_default_passes_its_rules(preset: str) -> None:
    for name, cls in methods.registry().items():
        config = cfg.resolve(preset, name, {}, cls.Options, 0, methods.option_keys())
        cfg.check_config(config, cls.Options)  # raises on a bad default


def test_split_size_is_the_data_modules() -> None:
    names, size, _ = data.KNOWN_SPLITS["cifar10_valid_split"]
    assert names == ("train", "valid") and size == cfg.SEARCH_SPLIT_SIZE


def test_number_rules_refuse_nan_inf_and_booleans() -> None:
    finite = cfg.real(0)
    assert finite.check(0) and finite.check(2.5)
    for bad in (math.nan, math.inf, -1.0, True, "1"):
        assert not finite.check(bad), bad
    clip = cfg.RULES["grad_clip"]
    assert clip.check(math.inf) and not clip.check(-math.inf) and not clip.check(0.0)
    assert cfg.integer(1).check(1) and not cfg.integer(1).check(1.0)
    assert not cfg.integer(0, 3).check(4) and not cfg.integer(0).check(False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"a_lr": "inf"}, "a_lr=inf: a_lr must be a finite number >= 0"),
        ({"w_lr": "0.01", "w_lr_min": "0.1"}, "w_lr_min=0.1: w_lr_min must be at most w_lr"),
        ({"train_size": "64", "batch_size": "65"}, "batch_size must be at most 64"),
        ({"a_beta2": "1"}, "a_beta2=1.0: a_beta2 must be a finite number >= 0 and < 1"),
    ],
)
def test_values_that_do_not_fit_are_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cfg.resolve("smoke", "darts", overrides, None)


def test_a_bad_value_is_refused_before_any_job_is_planned(tmp_path: Path) -> None:
    """The corrected command is never refused by files the bad one left behind."""
    with pytest.raises(UsageError, match="C=0"):
        sweep.plan(["darts", "cdao"], [0, 1], "smoke", {"C": "0"}, tmp_path / "results")
    assert not (tmp_path / "results").exists()
    jobs = sweep.plan(["darts"], [0], "smoke", {"C": "2"}, tmp_path / "results")
    assert jobs[0].config.C == 2


def test_sweep_fields_cannot_be_set() -> None:
    for key, flag in cfg.SWEEP_FIELDS.items():
        with pytest.raises(UsageError, match=f"use {flag} instead"):
            cfg.resolve("smoke", "darts", {key: "1"}, None)


def test_method_options_for_methods_not_run_are_refused(tmp_path: Path) -> None:
    overrides = {"cdao.mu": "0.1"}
    with pytest.raises(UsageError, match="cdao is not among the methods run"):
        sweep.plan(["darts"], [0], "smoke", overrides, tmp_path)
    jobs = sweep.plan(["darts", "cdao"], [0], "smoke", overrides, tmp_path)
    assert [job.config.method_options.get("mu") for job in jobs] == [None, 0.1]


@dataclass
class _ProtocolOptions:
    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {"epochs": 100, "w_nesterov": False}
    k: int = 1


def test_paper_protocol_applies_under_paper_only_and_set_wins() -> None:
    """A method's published protocol (Options.PAPER_PROTOCOL) sets the paper preset's
    values; CPU presets ignore it and --set overrides it."""
    Options = _ProtocolOptions
    resolve = cfg.resolve
    paper = resolve("paper", "m", {}, Options)
    assert (paper.epochs, paper.w_nesterov) == (100, False)
    assert resolve("proxy", "m", {}, Options).epochs == 10
    assert resolve("paper", "m", {"epochs": "7"}, Options).epochs == 7
    assert resolve("paper", "m", {}, None).epochs == 50


def test_a_run_recorded_before_a_field_existed_holds_its_old_behaviour() -> None:
    """config.json written before `resolution`/`select` existed matches today's config
    with their old values, and not one that changes them."""
    from harness import rundir

    today = dataclasses.asdict(cfg.resolve("cpu", "darts", {}, None))
    before = {k: v for k, v in today.items() if k not in ("select", "pt_tune_frac")}
    assert rundir.differing(before, today) == []
    older = {**before, "resolution": 16}
    del older["resolution"]  # a run from before resolution existed was 32 × 32
    assert rundir.differing(older, today) == ["resolution"]
    assert rundir.differing(older, {**today, "resolution": 32}) == []


def test_a_pt_run_from_before_issue_30_reads_as_the_old_pt_and_the_nb201_split() -> None:
    """A config.json without split / pt_tune / pt_alpha / pt_eval was NB201's split and
    the harness's first DARTS-PT (equal intervals, frozen α, gap images): the new
    defaults differ from it, and setting the old values matches it."""
    from harness import rundir

    today = dataclasses.asdict(cfg.resolve("cpu", "darts", {"select": "pt"}, None))
    new_fields = ("split", "pt_tune", "pt_alpha", "pt_eval")
    before = {k: v for k, v in today.items() if k not in new_fields}
    assert rundir.differing(before, today) == ["pt_alpha", "pt_eval", "pt_tune"]
    old = {"pt_tune": "search", "pt_alpha": "frozen", "pt_eval": "gap", "split": "nb201"}
    assert rundir.differing(before, {**today, **old}) == []
    assert rundir.differing(before, {**today, **old, "split": "halves"}) == ["split"]


def test_a_gdas_run_from_before_hold_unsampled_reads_as_holding_the_rows() -> None:
    """A gdas config.json without ``hold_unsampled`` ran as ``true`` (BEFORE_OPTION)."""
    from harness import rundir
    from harness.methods import method_class

    today = dataclasses.asdict(cfg.resolve("cpu", "gdas", {}, method_class("gdas").Options))
    before = {**today, "method_options": dict(today["method_options"])}
    del before["method_options"]["hold_unsampled"]
    assert rundir.differing(before, today) == []
    off = {**today, "method_options": {**today["method_options"], "hold_unsampled": False}}
    assert rundir.differing(before, off) == ["method_options.hold_unsampled"]
    darts = dataclasses.asdict(cfg.resolve("cpu", "darts", {}, None))
    assert rundir.differing(darts, darts) == []  # other methods get no gdas option


@pytest.mark.parametrize(("method", "option"), [("gdas", "sampling"), ("constrained", "decide")])
def test_a_run_from_before_the_device_options_reads_as_deciding_on_the_host(
    method: str, option: str
) -> None:
    """A config.json without ``gdas.sampling`` or ``constrained.decide`` (issue 28) read
    its sample or its schedule on the host."""
    from harness import rundir
    from harness.methods import method_class

    today = dataclasses.asdict(cfg.resolve("cpu", method, {}, method_class(method).Options))
    assert today["method_options"][option] == "host"
    before = {**today, "method_options": dict(today["method_options"])}
    del before["method_options"][option]
    assert rundir.differing(before, today) == []
    device = {**today, "method_options": {**today["method_options"], option: "device"}}
    assert rundir.differing(before, device) == [f"method_options.{option}"]
