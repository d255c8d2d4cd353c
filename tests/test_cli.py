"""The command line as a user runs it: outputs, exit codes, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import backends, sweep
from harness.cli import main
from harness.errors import UsageError

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


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """``python -m harness methods | head -1``: when the reader has gone, the closed pipe
    ends the command quietly (exit 1), not with a BrokenPipeError traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first write
    try:
        harness = subprocess.run(
            [sys.executable, "-m", "harness", "methods"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        os.close(write_end)
    assert harness.returncode == 1
    assert "Traceback" not in harness.stderr, harness.stderr


BAD_INPUT = [
    # (argv, what the one-line message must contain)
    (["lookup", "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"], "unknown operation"),
    (["lookup", "|nor_conv_3x3~0|+|none~0|"], "expected 3"),
    (["lookup", "15625"], "0..15624"),
    (["run", "--methods", "dartz"], "did you mean 'darts'"),
    (["run", "--methods", "nosuch"], "known methods: amended, beta_darts, cdao"),
    (["run", "--methods", ","], "at least one method"),
    (["run", "--seeds", "two"], "--seeds"),
    # issue 32: one rule for duplicates (refused), and seed 0 alone is named
    (["run", "--seeds", "0,0"], "--seeds '0,0': seed 0 is given twice; give each seed once"),
    (["run", "--methods", "darts, darts"], "--methods darts,darts: darts is given twice"),
    (["run", "--seeds", "0"], "to run seed 0 alone, give the one-seed list --seeds 0,"),
    (["run", "--seeds", "-1,2"], "--seeds: expected one argument"),
    (["run", "--seeds=-1,2"], "seeds must be distinct integers in 0.."),
    (["run", "--jobs", "two"], "invalid int value"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--seeds", ","], "--seeds ',': expected a count"),
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
    # issue 14: fields the sweep owns are not --set
    (["run", "--set", "seed=7"], "seed is set by the sweep for each run; use --seeds"),
    (["run", "--set", "method=cdao"], "use --methods"),
    (["run", "--set", "preset=ci"], "use --preset"),
    # issue 14: every field's range or choice, checked at plan time
    (["run", "--set", "a_lr=nan"], "--set a_lr=nan: a_lr must be a finite number >= 0"),
    (["run", "--set", "w_lr=-1"], "w_lr=-1.0: w_lr must be a finite number > 0"),
    (["run", "--set", "C=0"], "--set C=0: C must be an integer >= 1"),
    (["run", "--set", "N=0"], "N=0: N must be an integer >= 1"),
    (["run", "--set", "train_size=100000000"], "train_size must be an integer in 0..25000"),
    (["run", "--set", "valid_size=-1"], "valid_size=-1: valid_size must be an integer in 0..25000"),
    (["run", "--set", "batch_size=100000"], "batch_size=100000: batch_size must be at most 256"),
    (["run", "--set", "device=mps"], "device='mps': device must be auto, cpu, cuda or cuda:N"),
    (["run", "--set", "device=banana"], "device='banana': device must be auto, cpu, cuda"),
    (["run", "--set", "threads=-1"], "threads=-1: threads must be an integer >= 0"),
    (["run", "--set", "rank_samples=-5"], "rank_samples=-5: rank_samples must be an integer >= 0"),
    (["run", "--set", "gap_eval_size=0"], "gap_eval_size=0: gap_eval_size must be an integer in 1"),
    (["run", "--set", "rank_eval_size=999"], "rank_eval_size must be at most gap_eval_size"),
    (["run", "--set", "w_momentum=1"], "w_momentum=1.0: w_momentum must be a finite number >= 0"),
    (["run", "--set", "w_momentum=0"], "--set w_momentum=0: w_momentum must be > 0"),
    (
        ["run", "--set", "grad_clip=0"],
        "grad_clip=0.0: grad_clip must be a number (inf allowed) > 0",
    ),
    (["run", "--set", "dtype=float16"], "dtype='float16': dtype must be one of float32, float64"),
    (["run", "--set", "dtype=float64", "--set", "bf16=1"], "--set bf16=true: bf16 must be false"),
    (["run", "--set", "impl=fast"], "impl must be one of fused, reference"),
    (["run", "--set", "cdao.mu=0.1"], "cdao is not among the methods run (darts)"),
    (["run", "--methods", "cdao", "--set", "cdao.mu=nan"], "--set cdao.mu=nan: cdao.mu must be"),
    (["run", "--methods", "cdao", "--set", "cdao.lambda_max=2"], "cdao.lambda_max must be a"),
    (["run", "--methods", "da2s", "--set", "da2s.alpha_every=0"], "da2s.alpha_every must be an"),
    (["run", "--methods", "amended", "--set", "amended.hessian=exact"], "one of fd, autograd"),
    (["run", "--methods", "constrained", "--set", "constrained.regularizer=l1"], "prox, admm"),
    (["run", "--set", "epochs=2", "--set", "epochs=3"], "epochs given twice (2 and 3)"),
    # issue 14: one-line errors instead of tracebacks
    (["run", "--seeds", "99999999999999999999999"], "a count is at most 1000"),
    (["run", "--seeds", "0,4294967296"], "seeds must be distinct integers in 0..4294967295"),
    (["run", "--results", ""], "argument --results: expected a value, got an empty string"),
    (["run", "--preset", ""], "argument --preset: expected a value, got an empty string"),
    (["run", "--data-dir", " "], "argument --data-dir: expected a value"),
    (["report", "--out", "{file}"], "is not a directory"),
    (["report", "--results", ""], "argument --results: expected a value"),
    (["benchmark", "convert", "{file}", "--out", "{dir}"], "is a directory; give the CSV file"),
    (["benchmark", "convert", "{file}", "--out", "{file}"], "exists; give --force to replace it"),
    (["lookup", "-1"], "NB201 index -1 is out of range: expected 0..15624"),
    (["lookup", "3.0"], "NB201 index 3.0 is not an integer: expected 0..15624"),
    (["check", "--tolerance", "gap_acc"], "argument --tolerance: 'gap_acc': expected METRIC=VALUE"),
    (["check", "--tolerance", "gap_acc=-1"], "with VALUE a number >= 0"),
    # issue 32: refused before minutes of runs, not after
    (["check", "--update", "--baseline", "{dir}"], "is a directory; give the JSON file"),
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
    (root / "a-file").write_text("not a directory\n")
    dirs.update(file=str(root / "a-file"), dir=str(root))
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
    extra = ["--results", str(results)] if argv[0] == "run" and "--results" not in argv else []
    if argv[0] == "run" and "--preset" not in argv:
        extra += ["--preset", "smoke"]
    assert _exit_code(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("harness: error: ")
    assert not results.exists()
    assert "--set" not in err or "--set" in argv  # e.g. --tolerance errors name --tolerance


@pytest.mark.parametrize(
    ("device", "gpus", "message"),
    [
        ("cuda", 0, "--set device='cuda': CUDA is not available on this machine"),
        ("cuda:0", 0, "CUDA is not available"),
        ("cuda:3", 2, "device='cuda:3': this machine has 2 CUDA device(s), cuda:0..cuda:1"),
    ],
)
def test_missing_cuda_device_is_refused_at_plan_time(
    device: str,
    gpus: int,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whatever GPUs this machine has: the check sees the ones patched in."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    argv = ["run", "--preset", "smoke", "--results", str(tmp_path / "r"), "--set"]
    assert _exit_code([*argv, f"device={device}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_cuda_device_is_not_checked_here_for_a_cluster_backend() -> None:
    """Slurm jobs run on GPU nodes that the submitting machine need not have."""
    assert backends.runs_here(backends.Backend())
    assert backends.runs_here(backends.Backend(name="dask"))
    assert not backends.runs_here(backends.Backend(name="dask", address="tcp://h:8786"))
    assert not backends.runs_here(backends.Backend(name="slurm"))
    assert backends.runs_here(backends.Backend(name="slurm", slurm_executor="local"))


def test_a_trailing_comma_runs_one_seed_and_duplicates_are_refused_alike(tmp_path: Path) -> None:
    """Issue 32: ``--seeds 0,`` is seed 0 alone; a method and a seed given twice get the
    same rule (refused) through the CLI's parsers and the API's lists alike."""
    assert sweep.parse_seeds("0,") == [0] and sweep.parse_seeds("3") == [0, 1, 2]
    jobs = sweep.plan(sweep.parse_methods("darts2, darts"), [0], "smoke", {}, tmp_path)
    assert [(job.method, job.seed) for job in jobs] == [("darts2", 0), ("darts", 0)]
    for refused in (
        lambda: sweep.parse_methods("darts2,darts,darts2"),
        lambda: sweep.method_list(["darts", "darts"]),
        lambda: sweep.parse_seeds("1,2,1"),
        lambda: sweep.seed_list([4, 4]),
    ):
        with pytest.raises(UsageError, match="is given twice"):
            refused()


def test_help_shows_defaults_and_the_method_option_form(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _exit_code(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = ("(default: darts)", "(default: 1)", "(default: out/results", "(default: local)")
    for default in (*defaults, "0, is seed 0 alone"):
        assert default in text, default
    assert "METHOD.FIELD=VALUE" in text
    for command in ("lookup", "check", "report"):
        assert _exit_code([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "holds nb201/ and cifar10/ (default: $HARNESS_DATA" in text, command


def test_convert_replaces_a_table_only_with_force_and_warns_when_incomplete(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = data_dir / "nats-tss-fixture" / "NATS-tss-v1_0-3ffb9-simple"
    out = tmp_path / "table.csv"
    out.write_text("the old table\n")
    assert _exit_code(["benchmark", "convert", str(src), "--out", str(out)]) == 2
    assert out.read_text() == "the old table\n"
    capsys.readouterr()
    assert _exit_code(["benchmark", "convert", str(src), "--out", str(out), "--force"]) == 0
    assert out.read_text().count("\n") == 4  # header + the fixture's 3 cells
    err = capsys.readouterr().err
    assert "harness: warning:" in err and "holds 3 of the 15,625 cells" in err


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


def test_report_warnings_are_one_plain_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 32: a corrupt ``final.json`` gave a raw ``UserWarning`` with its source line."""
    from test_committed_reports import synthetic_run

    for seed in (0, 1):
        synthetic_run(tmp_path / "results", "darts", seed, 80.0 + seed)
    (tmp_path / "results" / "smoke" / "cifar10" / "darts" / "seed-1" / "final.json").write_text(
        "{garbled"
    )
    argv = ["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--data-dir", str(tmp_path / "no-table")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err  # the unreadable run, and no table for the optimum row
    assert all(line.startswith("harness: warning: ") for line in err), err
    assert "skipping unreadable run" in err[0] and "seed-1" in err[0]
    assert err[1].startswith("harness: warning: no space-optimum row: ")
