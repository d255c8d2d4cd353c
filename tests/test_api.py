"""The Python API (docs/api.md): each function as documented, bad input raising the
CLI's messages, and the commands that need no torch never importing it."""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import harness
from harness import api, catalog, results
from harness import config as cfg
from harness.cli import main
from harness.errors import RunFailed, UsageError

ROOT = Path(__file__).resolve().parent.parent
ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
    "|skip_connect~0|skip_connect~1|skip_connect~2|"
)


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` importing this checkout, as a user's script would."""
    command = [sys.executable, "-c", code, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


# --- no torch where none is needed ------------------------------------------------------------
NO_TORCH = """
import sys
import harness
assert "torch" not in sys.modules, "import harness imported torch"
accuracies = harness.lookup(1835)
assert round(accuracies["cifar10"]["valid"], 2) == 39.77, accuracies
assert "torch" not in sys.modules, "harness.lookup imported torch"
print("ok")
"""


def test_import_and_lookup_do_not_import_torch() -> None:
    done = python(NO_TORCH)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_readme_shows_what_lookup_returns() -> None:
    """Issue 32: the README's ``harness.lookup(1835)  # {'cifar10': {...}, ...}`` comment is
    the call's value, not a rounding of it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = [x for x in readme.splitlines() if x.startswith("harness.lookup(1835)")]
    shown = re.search(r"# \{'cifar10': (\{[^}]*\})", line)
    assert shown, line
    assert ast.literal_eval(shown.group(1)) == harness.lookup(1835)["cifar10"]


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime``'s report."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if "|" in line}


@pytest.mark.parametrize("command", [["lookup", "1835"], ["methods"]])
def test_lookup_and_methods_commands_do_not_import_torch(command: list[str]) -> None:
    cmd = [sys.executable, "-X", "importtime", "-m", "harness", *command]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = imported_modules(done.stderr)
    assert "harness.cli" in modules  # the report is read right
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}
    assert done.stdout.strip()


def test_catalog_lists_exactly_the_registry() -> None:
    """``methods`` reads the catalog parsed from the method files; it must say what the
    registry holds (a declaration the parser misreads fails here)."""
    from harness import methods

    registry = methods.registry()
    assert list(catalog.METHODS) == list(registry)
    for name, cls in registry.items():
        assert catalog.METHODS[name] == (cls.__module__, cls.summary), name


def test_catalog_reads_only_registered_classes_string_declarations(tmp_path: Path) -> None:
    """The parser takes ``name`` and ``summary`` of ``@register`` classes only; a base class
    or a helper class in the same file adds nothing."""
    (tmp_path / "scratch.py").write_text(
        "class Base(Method):\n    name = 'base_only'\n    summary = 'never listed'\n\n"
        "@register\nclass One(Base):\n    name = 'one'\n    summary = 'the first'\n"
        "    alpha_first = True\n\n"
        "@register\nclass Two(Base):\n    summary = 'the second'\n    name = 'two'\n",
        encoding="utf-8",
    )
    declared = catalog._declared(tmp_path / "scratch.py")
    assert declared == [("one", "the first"), ("two", "the second")]


def test_methods_command_prints_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == catalog.method_lines()
    assert [line.split()[0] for line in lines] == list(catalog.METHODS)


# --- lookup and the table -------------------------------------------------------------------
def test_lookup_takes_a_string_a_cell_or_an_index(data_dir: Path) -> None:
    by_string = harness.lookup(ALL_SKIP)
    assert set(by_string) == {"cifar10", "cifar100", "imagenet16"}
    assert all(set(splits) == {"valid", "test"} for splits in by_string.values())
    assert round(by_string["cifar10"]["valid"], 2) == 39.77
    assert round(by_string["cifar10"]["test"], 2) == 54.30
    cell = harness.Cell.from_arch_str(ALL_SKIP)
    for same in (cell, 1835, np.int64(1835), "1835", f" {ALL_SKIP} "):
        assert harness.lookup(same) == by_string, same
    assert harness.lookup(1835, data_dir=data_dir) == by_string


def test_load_benchmark_is_the_table(data_dir: Path) -> None:
    table = harness.load_benchmark()
    assert len(table) == 15625
    assert table is harness.load_benchmark(data_dir)  # one parse per file and process
    assert table.index_of(ALL_SKIP) == 1835
    assert table.lookup(table.cell_at(1835)) == harness.lookup(1835)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        (-1, "NB201 index -1 is out of range: expected 0..15624"),
        (15625, "NB201 index 15625 is out of range"),
        ("-1", "NB201 index -1 is out of range"),
        ("3.0", "NB201 index 3.0 is not an integer: expected 0..15624"),
        (3.0, "NB201 index must be an integer in 0..15624, got 3.0"),
        (True, "NB201 index must be an integer"),
        ("", "empty architecture string"),
        ("|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|", "unknown operation"),
        ("|nor_conv_3x3~0|+|none~0|", "expected 3"),
    ],
)
def test_lookup_refuses_bad_cells(arch: Any, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        harness.lookup(arch)


def test_lookup_names_a_missing_data_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=re.escape(str(tmp_path / "nb201" / "nb201_table.csv"))):
        harness.lookup(0, data_dir=tmp_path)
    with pytest.raises(UsageError, match="argument --data-dir: expected a value"):
        harness.load_benchmark(" ")


# --- bad input: the CLI's messages, nothing written -------------------------------------------
SAME_AS_CLI = [
    # (api.sweep arguments, the equivalent `run` arguments)
    ({"methods": ["dartz"]}, ["--methods", "dartz"]),
    ({"methods": "darts,nosuch"}, ["--methods", "darts,nosuch"]),
    ({"methods": []}, ["--methods", ","]),
    ({"seeds": [0, 0]}, ["--seeds", "0,0"]),
    ({"methods": ["darts", "darts"]}, ["--methods", "darts,darts"]),
    ({"seeds": "two"}, ["--seeds", "two"]),
    ({"seeds": 0}, ["--seeds", "0"]),
    ({"seeds": 10**20}, ["--seeds", str(10**20)]),
    ({"seeds": [0, 2**32]}, ["--seeds", f"0,{2**32}"]),
    ({"preset": "proxi"}, ["--preset", "proxi"]),
    ({"jobs": 0}, ["--jobs", "0"]),
    ({"data_dir": "/nonexistent/data"}, ["--data-dir", "/nonexistent/data"]),
    ({"epoch": 3}, ["--set", "epoch=3"]),
    ({"epochs": "three"}, ["--set", "epochs=three"]),
    ({"epochs": 1.5}, ["--set", "epochs=1.5"]),
    ({"epochs": 0}, ["--set", "epochs=0"]),
    ({"a_lr": math.nan}, ["--set", "a_lr=nan"]),
    ({"w_lr": -1}, ["--set", "w_lr=-1"]),
    ({"grad_clip": 0.0}, ["--set", "grad_clip=0"]),
    ({"device": "mps"}, ["--set", "device=mps"]),
    ({"dtype": "float64", "bf16": True}, ["--set", "dtype=float64", "--set", "bf16=1"]),
    ({"seed": 7}, ["--set", "seed=7"]),
    ({"method": "cdao"}, ["--set", "method=cdao"]),
    ({"cdao": {"mu": 0.1}}, ["--set", "cdao.mu=0.1"]),
    ({"cdao": {"nosuch": 1}}, ["--set", "cdao.nosuch=1"]),
    ({"methods": "cdao", "cdao": {"mu": math.nan}}, ["--methods", "cdao", "--set", "cdao.mu=nan"]),
    (
        {"methods": "amended", "amended": {"hessian": "exact"}},
        ["--methods", "amended", "--set", "amended.hessian=exact"],
    ),
    ({"cdao": 0.1}, ["--set", "cdao=0.1"]),
]


@pytest.mark.parametrize(("kwargs", "argv"), SAME_AS_CLI)
def test_sweep_raises_the_cli_message_and_writes_nothing(
    kwargs: dict[str, Any], argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "results"
    assert main(["run", "--preset", "smoke", "--results", str(where), *argv]) == 2
    cli_message = capsys.readouterr().err.strip()
    arguments = {"methods": "darts", "seeds": 1, "preset": "smoke", "results": where, **kwargs}
    with pytest.raises(UsageError) as raised:
        harness.sweep(**arguments)
    assert f"harness: error: {raised.value}" == cli_message
    assert not where.exists()


def test_a_refused_value_names_the_flag_from_the_api_and_the_cli(tmp_path: Path) -> None:
    """Issue 32: ``epochs=0`` and ``epochs="abc"`` give one format, the flag's, as documented;
    a value the user did not set (a preset's) is named without ``--set``."""
    for value, message in ((0, "--set epochs=0: epochs must be"), ("abc", "--set epochs=abc: ")):
        with pytest.raises(UsageError) as raised:
            harness.search("darts", preset="smoke", results=tmp_path / "r", epochs=value)
        assert str(raised.value).startswith(message), raised.value
    refused = cfg.FieldRefused("epochs", "epochs=0: epochs must be an integer >= 1")
    with pytest.raises(UsageError, match="^epochs=0: "), cfg.named_as_set({"C": "4"}):
        raise refused
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "dartz"}, "unknown method 'dartz' (did you mean 'darts'?)"),
        ({"method": "darts", "seed": -1}, "--seeds '-1': seeds must be distinct integers"),
        ({"method": "darts", "seed": 1.5}, "--seeds '1.5': expected a count"),
        ({"method": "darts", "epochs": 1.5}, "--set epochs=1.5: expected a value of type int"),
        ({"method": "darts", "cdao": {"mu": 0.1}}, "cdao is not among the methods run (darts)"),
        ({"method": "darts", "results": ""}, "argument --results: expected a value"),
        ({"method": "darts", "preset": " "}, "argument --preset: expected a value"),
    ],
)
def test_search_refuses_bad_input_before_writing(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    arguments = {"preset": "smoke", "results": tmp_path / "results", **kwargs}
    with pytest.raises(UsageError, match=re.escape(message)):
        harness.search(**arguments)
    assert not (tmp_path / "results").exists()


def test_overrides_reach_the_config_as_set_would(tmp_path: Path) -> None:
    """``cdao={"mu": 0.2}`` is ``--set cdao.mu=0.2``; booleans are true/false."""
    texts = api.override_texts({"epochs": 1, "w_nesterov": False, "cdao": {"mu": 0.2}})
    assert texts == {"epochs": "1", "w_nesterov": "false", "cdao.mu": "0.2"}
    prepared = api.prepare_sweep(
        "cdao", [3], "smoke", tmp_path / "r", overrides={"epochs": 1, "cdao": {"mu": 0.2}}
    )
    (job,) = prepared.jobs
    assert (job.method, job.seed, job.config.epochs) == ("cdao", 3, 1)
    assert job.config.method_options["mu"] == 0.2
    assert not (tmp_path / "r").exists()
    assert api.seed_list(3) == api.seed_list(np.int64(3)) == api.seed_list("3") == [0, 1, 2]
    assert api.seed_list([4, 1]) == api.seed_list(np.array([4, 1])) == api.seed_list("4,1")
    assert api.seed_list(range(2)) == [0, 1]
    with pytest.raises(UsageError, match=re.escape("cdao.mu given twice (0.2 and 0.3)")):
        api.override_texts({"cdao": {"mu": 0.2}, "cdao.mu": 0.3})


# --- a real search, the sweep, and reading results --------------------------------------------
@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One smoke run of darts through the API (2 epochs)."""
    where = tmp_path_factory.mktemp("api") / "results"
    final = harness.search("darts", seed=0, preset="smoke", results=where, epochs=2)
    return where, final


def test_search_returns_what_final_json_holds(searched: tuple[Path, dict[str, Any]]) -> None:
    where, final = searched
    on_disk = json.loads((where / "smoke/cifar10/darts/seed-0/final.json").read_text())
    assert final == on_disk
    assert final["status"] == "finished" and final["config"]["epochs"] == 2
    assert final["nb201"] == harness.lookup(final["arch"])


def test_search_and_sweep_skip_a_finished_run(searched: tuple[Path, dict[str, Any]]) -> None:
    where, final = searched
    again = harness.search("darts", 0, "smoke", where, epochs=2)
    assert again == final  # read back, not searched again (wall_s and checksum are equal)
    (outcome,) = harness.sweep(["darts"], [0], preset="smoke", results=where, epochs=2)
    assert outcome["checksum"] == final["checksum"]


def test_search_raises_run_failed_when_the_run_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr("harness.jobs.run_job", broken)
    with pytest.raises(RunFailed, match="darts seed 0: failed") as raised:
        harness.search("darts", 0, "smoke", tmp_path)
    assert "out of memory, say" in raised.value.outcome["reason"]
    assert (tmp_path / "smoke/cifar10/darts/seed-0" / results.FAILED).is_file()


def test_load_runs_has_the_report_columns(searched: tuple[Path, dict[str, Any]]) -> None:
    where, final = searched
    runs = harness.load_runs(where)
    assert isinstance(runs, pd.DataFrame) and len(runs) == 1
    run = runs.iloc[0]
    assert (run["method"], run["seed"], run["status"]) == ("darts", 0, "finished")
    assert run["c10_test"] == final["nb201"]["cifar10"]["test"]
    assert run["gap_acc"] == final["gap"]["gap_acc"]
    assert run["arch"] == final["arch"] and run["config"] == final["config"]
    for column in ("final_minus_best", "late_changes", "collapse_structure", "epochs", "wall_s"):
        assert column in runs.columns, column
    assert runs.attrs["unreadable"] == []


def test_load_epochs_is_one_row_per_epoch(searched: tuple[Path, dict[str, Any]]) -> None:
    where, _ = searched
    epochs = harness.load_epochs(where)
    records = results.read_jsonl(where / "smoke/cifar10/darts/seed-0" / results.EPOCHS)
    assert epochs["epoch"].tolist() == [1, 2]
    assert set(epochs["method"]) == {"darts"} and set(epochs["status"]) == {"finished"}
    assert epochs["gap_acc"].tolist() == [r["gap_acc"] for r in records]
    assert epochs["c10_test"].tolist() == [r["nb201"]["cifar10"]["test"] for r in records]
    assert epochs["alpha"].iloc[-1] == records[-1]["alpha"]


def test_reading_a_missing_results_directory_is_a_usage_error(tmp_path: Path) -> None:
    for load in (harness.load_runs, harness.load_epochs):
        with pytest.raises(UsageError, match="no such directory"):
            load(tmp_path / "nosuch")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert harness.load_runs(empty).empty and harness.load_epochs(empty).empty


def test_report_writes_the_report(searched: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    where, _ = searched
    written = harness.report(where, tmp_path / "reports")
    assert tmp_path / "reports/smoke/cifar10/report.md" in written
    assert all(path.is_file() for path in written)


READ_ONLY = """
import sys
import harness
runs, epochs = harness.load_runs(sys.argv[1]), harness.load_epochs(sys.argv[1])
harness.report(sys.argv[1], sys.argv[2])
assert len(runs) == 1 and len(epochs) == 2, (len(runs), len(epochs))
assert "torch" not in sys.modules, "reading results imported torch"
print("ok")
"""


def test_reading_results_does_not_import_torch(
    searched: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    done = python(READ_ONLY, str(searched[0]), str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# --- the names ------------------------------------------------------------------------------
ORDER = """
import inspect, sys
import harness.sweep, harness.search, harness.report   # the modules first
import harness
from harness import sweep
assert sweep is harness.sweep and callable(sweep) and sweep.parse_methods("darts") == ["darts"]
assert "methods" in inspect.signature(harness.sweep).parameters
assert "method" in inspect.signature(harness.search).parameters
assert harness.search.Search and harness.report.write_reports
print("ok")
"""


def test_the_modules_named_like_api_functions_are_both(tmp_path: Path) -> None:
    """``harness.sweep`` is the module and the function, whichever was imported first."""
    done = python(ORDER)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    for name in ("search", "sweep", "report"):
        module = getattr(harness, name)
        assert module.__name__ == f"harness.{name}"
        assert inspect.signature(module) == inspect.signature(getattr(api, name))
    assert set(harness.__all__) <= set(dir(harness))
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        _ = harness.nosuch
