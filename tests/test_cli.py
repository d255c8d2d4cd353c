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


BAD_INPUT = [
    # (argv, what the one-line message must contain)
    (["lookup", "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"], "unknown operation"),
    (["lookup", "|nor_conv_3x3~0|+|none~0|"], "expected 3"),
    (["lookup", "15625"], "0..15624"),
    (["run", "--methods", "dartz"], "did you mean 'darts'"),
    (["run", "--methods", "nosuch"], "known methods: amended, cdao"),
    (["run", "--methods", ","], "at least one method"),
    (["run", "--seeds", "two"], "--seeds"),
    (["run", "--seeds", "0,0"], "distinct"),
    (["run", "--seeds", "-1,2"], "--seeds: expected one argument"),
    (["run", "--seeds=-1,2"], "non-negative"),
    (["run", "--jobs", "two"], "invalid int value"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--seeds", "0"], "a count"),
    (["run", "--set", "epoch=3"], "did you mean 'epochs'"),
    (["run", "--set", "nosuch=3"], "valid keys: "),
    (["run", "--set", "epochs"], "expected KEY=VALUE"),
    (["run", "--set", "epochs=three"], "expected a value of type int"),
    (["run", "--set", "darts.nosuch=1"], "unknown --set key"),
    (["run", "--preset", "proxi"], "did you mean 'proxy'"),
    (["run", "--jobs", "0"], "--jobs 0"),
    (["run", "--data-dir", "/nonexistent/data"], "/nonexistent/data/nb201/nb201_table.csv"),
    (["run", "--data-dir", "{columns}"], "missing column(s)"),
    (["run", "--data-dir", "{rows}"], "expected 15,625"),
    (["run", "--data-dir", "{no_cifar}"], "data_batch_1"),
    (["lookup", "0", "--data-dir", "{rows}"], "expected 15,625"),
]


@pytest.fixture(scope="module")
def bad_data(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Data directories that are wrong in one way each (the real files linked, never copied)."""
    root = tmp_path_factory.mktemp("bad-data")
    table = (data_dir / "nb201" / "nb201_table.csv").read_text().splitlines()
    dirs = {}
    for name, lines in {
        "columns": [",".join(table[0].split(",")[:2])]
        + [",".join(r.split(",")[:2]) for r in table[1:]],
        "rows": table[:101],
    }.items():
        (root / name / "nb201").mkdir(parents=True)
        (root / name / "nb201" / "nb201_table.csv").write_text("\n".join(lines) + "\n")
        dirs[name] = str(root / name)
    (root / "no_cifar").mkdir()
    (root / "no_cifar" / "nb201").symlink_to(data_dir / "nb201")
    dirs["no_cifar"] = str(root / "no_cifar")
    return dirs


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(
    argv: list[str],
    message: str,
    bad_data: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [bad_data[a[1:-1]] if a.startswith("{") else a for a in argv]
    results = tmp_path / "results"
    extra = ["--results", str(results)] if argv[0] == "run" else []
    if argv[0] == "run" and "--preset" not in argv:
        extra += ["--preset", "smoke"]
    assert _exit_code(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("harness: error: ")
    assert not results.exists()


def _exit_code(argv: list[str]) -> int:
    """``main``'s return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


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
