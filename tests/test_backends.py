"""Sweep backends end to end on this machine, over loopback: every backend gives the local
results, a killed worker loses nothing once the command is rerun, and a missing engine is a
one-line usage error naming its extra."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import backends, results
from harness.cli import main
from harness.rundir import RunDir

EPOCHS = 2
SWEEP = ["run", "--methods", "darts,cdao", "--seeds", "2", "--preset", "smoke", "--jobs", "2"]
SWEEP += ["--set", f"epochs={EPOCHS}", "--set", "rank_samples=8"]
RUNS = 4
COMPARED = ("status", "method", "seed", "epochs_done", "arch", "nb201_index", "nb201", "gap")
EXECUTION = ("threads", "device")  # how a run was executed, not what it computed
TIMES = ("wall_s", "cpu_s")  # clock readings, not results


def harness(results_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """The user's command, as from a shell, run beside the results directory."""
    cmd = [sys.executable, "-m", "harness", *SWEEP, "--results", str(results_dir), *extra]
    pipe = subprocess.PIPE
    return subprocess.Popen(cmd, cwd=results_dir.parent, stdout=pipe, stderr=pipe, text=True)


def sweep(results_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    results_dir.parent.mkdir(parents=True, exist_ok=True)
    process = harness(results_dir, *extra)
    out, err = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def outcome(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Every run's result without wall-clock, environment, host or execution fields."""
    runs = {}
    for directory in results.run_dirs(results_dir):
        final = results.read_json(directory / results.FINAL)
        kept = {key: final[key] for key in COMPARED}
        kept["config"] = {k: v for k, v in final["config"].items() if k not in EXECUTION}
        kept["ranking"] = {k: v for k, v in final["ranking"].items() if k not in TIMES}
        epochs = results.read_jsonl(directory / results.EPOCHS)
        kept["epochs"] = [{k: v for k, v in e.items() if k not in TIMES} for e in epochs]
        runs[str(directory.relative_to(results_dir))] = kept
    return json.loads(json.dumps(runs), parse_constant=str)  # NaN → "NaN", so equal compares


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The sweep through the default local process pool."""
    results_dir = tmp_path_factory.mktemp("local") / "results"
    done = sweep(results_dir, "--backend", "local")
    assert done.returncode == 0, done.stderr
    runs = outcome(results_dir)
    assert len(runs) == RUNS and all(r["status"] == "finished" for r in runs.values())
    assert all(len(r["epochs"]) == EPOCHS and r["ranking"] for r in runs.values())
    return runs


def engine_or_skip(module: str) -> None:
    """Skip only when the engine cannot be imported, with the import error as the reason."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        pytest.skip(str(error))


def assert_same_as_reference(
    done: subprocess.CompletedProcess[str], results_dir: Path, ref: Any
) -> None:
    assert done.returncode == 0, done.stderr
    assert f"[{RUNS}/{RUNS}]" in done.stderr  # progress reached the console
    assert outcome(results_dir) == ref


def test_dask_local_cluster_matches_local(tmp_path: Path, reference: Any) -> None:
    engine_or_skip("distributed")
    done = sweep(tmp_path / "results", "--backend", "dask")
    assert_same_as_reference(done, tmp_path / "results", reference)


def test_submitit_local_executor_matches_local(tmp_path: Path, reference: Any) -> None:
    engine_or_skip("submitit")
    logs = tmp_path / "logs"
    extra = ["--slurm-executor", "local", "--slurm-logs", str(logs)]
    done = sweep(tmp_path / "results", "--backend", "slurm", *extra)
    assert_same_as_reference(done, tmp_path / "results", reference)
    assert f"submitted {RUNS} job(s)" in done.stderr
    assert len(list(logs.glob("*_result.pkl"))) == RUNS  # one submitit job per (method, seed)


def test_ray_local_matches_local(tmp_path: Path, reference: Any) -> None:
    engine_or_skip("ray")
    done = sweep(tmp_path / "results", "--backend", "ray")
    assert_same_as_reference(done, tmp_path / "results", reference)


# --- a worker killed mid-run --------------------------------------------------------------
def lock_holder(directory: Path) -> int | None:
    """The pid holding a run's lock (``flock``), from /proc/locks: the worker running it."""
    try:
        inode = (directory / results.LOCK).stat().st_ino
        table = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in table:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and int(fields[5].split(":")[2]) == inode:
            return int(fields[4])
    return None


def kill_worker_mid_run(process: subprocess.Popen[str], results_dir: Path) -> Path:
    """SIGKILL the worker of a run that has checkpointed an epoch and not finished."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        for directory in results.run_dirs(results_dir):
            if (directory / results.CHECKPOINT).exists() and not RunDir(directory).finished:
                pid = lock_holder(directory)
                if pid is not None and pid != process.pid:
                    os.kill(pid, signal.SIGKILL)
                    return directory
        time.sleep(0.02)
    pytest.fail("no worker was ever caught mid-run")


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_killed_worker_resumes_on_rerun(tmp_path: Path, reference: Any, backend: str) -> None:
    if backend == "dask":
        engine_or_skip("distributed")
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    process = harness(results_dir, "--backend", backend)
    killed = kill_worker_mid_run(process, results_dir)
    first_err = process.communicate(timeout=900)[1]
    runs = results.run_dirs(results_dir)
    finished = {d: (d / results.FINAL).read_bytes() for d in runs if RunDir(d).finished}
    if backend == "local":  # loky's pool breaks: the unfinished runs are recorded as failed
        assert process.returncode == 1 and "worker lost" in first_err
        assert killed not in finished
    # dask reschedules the dead worker's task itself, which resumes from the checkpoint

    rerun = sweep(results_dir, "--backend", backend)
    assert_same_as_reference(rerun, results_dir, reference)
    assert "resumed" in first_err + rerun.stderr  # from the last epoch checkpoint
    for directory, content in finished.items():  # a finished run is never rerun
        assert (directory / results.FINAL).read_bytes() == content
    assert rerun.stderr.count("already finished") == len(finished)
    for directory in results.run_dirs(results_dir):
        epochs = [e["epoch"] for e in results.read_jsonl(directory / results.EPOCHS)]
        assert epochs == list(range(1, EPOCHS + 1)), directory  # none lost, none duplicated


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dask", "ray", "slurm"])
def test_missing_engine_names_its_extra(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    real_import = importlib.import_module

    def without_engine(module: str, *args: Any) -> Any:
        if module in backends.ENGINES[name]:
            raise ImportError(f"No module named {module!r}")
        return real_import(module, *args)

    monkeypatch.setattr(backends.importlib, "import_module", without_engine)
    argv = [*SWEEP, "--results", str(tmp_path / "results"), "--backend", name]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--backend {name} needs the {name} extra: pip install -e '.[{name}]'" in err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "spark"], "expected one of local, dask, ray, slurm"),
        (["--address", "tcp://127.0.0.1:8786"], "--address applies to --backend dask or ray"),
        (["--backend", "dask", "--slurm-partition", "gpu"], "apply to --backend slurm only"),
        (["--backend", "slurm", "--slurm-executor", "debug"], "expected slurm or local"),
    ],
)
def test_backend_options_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main([*SWEEP, "--results", str(tmp_path / "results"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("name", "address", "message"),
    [
        ("dask", "tcp://127.0.0.1:1", "cannot reach the Dask scheduler at tcp://127.0.0.1:1 ("),
        ("ray", "127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1 ("),
        ("ray", "ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1 ("),
    ],
)
def test_an_unreachable_cluster_is_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, address: str, message: str
) -> None:
    """Issue 32: a Dask address where nothing listens printed the plan, waited 30 s and
    ended in a CommClosedError traceback (exit 1). Nothing listens on 127.0.0.1:1."""
    argv = [*SWEEP, "--results", str(tmp_path / "results"), "--backend", name]
    assert main([*argv, "--address", address]) == 2
    out, err = capsys.readouterr()
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "run(s)" not in out  # refused before the plan
    assert not (tmp_path / "results").exists()


def test_slurm_without_sbatch_is_one_line_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without Slurm the command printed the plan, then failed in submitit."""
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    assert main([*SWEEP, "--results", str(tmp_path / "results"), "--backend", "slurm"]) == 2
    out, err = capsys.readouterr()
    assert "--backend slurm: cannot reach Slurm (no sbatch on the PATH)" in err, err
    assert len(err.strip().splitlines()) == 1 and "run(s)" not in out
    assert not (tmp_path / "results").exists()
    monkeypatch.setattr(backends.shutil, "which", lambda name: f"/usr/bin/{name}")
    backends.check(backends.Backend(name="slurm"))  # a login node passes


def test_cluster_addresses_are_parsed_for_the_probe() -> None:
    assert backends.host_port("tcp://10.0.0.5:8786", 8786) == ("10.0.0.5", 8786)
    assert backends.host_port("head:6379", 6379) == ("head", 6379)
    assert backends.host_port("ray://head", 6379) == ("head", backends.RAY_CLIENT_PORT)
    assert backends.host_port("auto", 6379) is None
    with pytest.raises(backends.UsageError, match="expected HOST:PORT"):
        backends.host_port("tcp://head:port", 8786)
