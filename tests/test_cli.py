"""The command line as a user runs it: outputs, exit codes, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
    "|skip_connect~0|skip_connect~1|skip_connect~2|"
)


def test_lookup_all_skip_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", ALL_SKIP]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10" in out and "39.77" in out and "54.30" in out and "1835" in out


def test_lookup_json_by_index(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "1835", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["arch"] == ALL_SKIP
    assert round(payload["nb201"]["cifar10"]["valid"], 2) == 39.77


def test_methods_lists_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"darts", "darts2"} <= set(names)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["lookup", "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"],
            "unknown operation",
        ),
        (["run", "--methods", "dartz"], "did you mean 'darts'"),
        (["run", "--seeds", "two"], "--seeds"),
        (["run", "--set", "epoch=3"], "did you mean 'epochs'"),
        (["run", "--set", "epochs=three"], "expected a value of type int"),
        (["run", "--data-dir", "/nonexistent/data"], "/nonexistent/data/nb201/nb201_table.csv"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    extra = ["--results", str(results), "--preset", "smoke"] if argv[0] == "run" else []
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not results.exists()


def test_smoke_run_end_to_end(tmp_path: Path) -> None:
    """The user's command: a subprocess, as from a shell."""
    cmd = [sys.executable, "-m", "harness", "run", "--methods", "darts", "--seeds", "1"]
    cmd += ["--preset", "smoke", "--results", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "C10 test" in done.stdout and "|" in done.stdout
    final = json.loads((tmp_path / "smoke/cifar10/darts/seed-0/final.json").read_text())
    assert final["status"] == "finished"
    assert f"{final['nb201']['cifar10']['test']:.2f}" in done.stdout
