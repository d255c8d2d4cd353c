"""One verdict per run directory: the sweep, a job, the search loop and the report all
give RunDir's answer to "is this run finished and trusted, failed, locked?" (issue 31).

Each caller asks :class:`~harness.rundir.RunDir` rather than the files; these tests catch
one that starts answering for itself (a sweep that skips any ``final.json``, a job that
overlooks a lock, a loop that returns an untrusted result, a report that calls a failed
run unfinished) on four directories: finished, a tampered ``final.json``, a failed one
and a locked one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from test_reliability import OVERRIDES  # the same tiny smoke run

from harness import jobs, results, sweep
from harness.benchmark import Benchmark
from harness.jobs import Job
from harness.rundir import RunDir
from harness.runs import load_runs
from harness.search import Search

KINDS = ("finished", "tampered", "failed", "locked")


def plan(root: Path) -> Job:
    (job,) = sweep.plan(["darts"], [0], "smoke", dict(OVERRIDES), root)
    return job


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One finished run; each kind of directory is made from a copy of it."""
    root = tmp_path_factory.mktemp("pristine")
    (outcome,) = sweep.run_jobs([plan(root)], data_dir, Benchmark.load(data_dir))
    assert outcome["status"] == "finished"
    return root


def make(kind: str, pristine: Path, root: Path) -> Job:
    """A results directory ``root`` whose one run is of ``kind`` (the lock is taken by
    :func:`held`)."""
    shutil.copytree(pristine, root)
    job = plan(root)
    final = job.directory / results.FINAL
    if kind == "tampered":  # a digit changed after it was written: its checksum fails
        data = json.loads(final.read_text())
        data["nb201"]["cifar10"]["test"] += 1.0
        final.write_text(json.dumps(data))
    elif kind == "failed":
        final.unlink()
        results.write_json(job.directory / results.FAILED, {"status": "failed", "reason": "x"})
    elif kind == "locked":
        final.unlink()
    return job


@contextmanager
def held(kind: str, job: Job) -> Iterator[None]:
    """The run's lock held by another holder while the block runs, for ``locked``."""
    if kind != "locked":
        yield
        return
    with FileLock(str(job.directory / results.LOCK)):
        yield


@pytest.fixture
def directories(pristine: Path, tmp_path: Path, data_dir: Path) -> dict[str, Job]:
    return {kind: make(kind, pristine, tmp_path / kind) for kind in KINDS}


def rundir_verdict(job: Job, sha: str) -> str:
    """RunDir's answer: ``finished`` (trusted), ``locked``, ``failed`` or ``to run``."""
    run = job.rundir(sha)
    if run.trusted_final() is not None:
        return "finished"
    if run.locked():
        return "locked"
    return "failed" if run.failed else "to run"


def test_rundir_tells_the_four_directories_apart(
    directories: dict[str, Job], data_dir: Path
) -> None:
    sha = Benchmark.load(data_dir).sha256
    verdicts = {}
    for kind, job in directories.items():
        with held(kind, job):
            verdicts[kind] = rundir_verdict(job, sha)
    assert verdicts == {
        "finished": "finished",
        "tampered": "to run",
        "failed": "failed",
        "locked": "locked",
    }


def test_the_sweep_and_its_jobs_skip_and_lock_as_rundir_says(
    directories: dict[str, Job], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep skips exactly the trusted finished runs, its job reports exactly the
    locked ones, and runs the rest."""
    benchmark = Benchmark.load(data_dir)

    def searched(job: Job, *_: Any) -> dict[str, Any]:
        return {"status": "searched"}

    monkeypatch.setattr(jobs, "run_job", searched)
    for kind, job in directories.items():
        with held(kind, job):
            expected = rundir_verdict(job, benchmark.sha256)
            (outcome,) = sweep.run_jobs([job], data_dir, benchmark)
        wanted = {"finished": "finished", "locked": "locked"}.get(expected, "searched")
        assert outcome["status"] == wanted, kind


class WouldTrain(Exception):
    """The search loop went on to train: it did not trust a finished result."""


def test_the_search_loop_returns_a_result_exactly_when_rundir_trusts_it(
    directories: dict[str, Job], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmark = Benchmark.load(data_dir)

    def would_train(*_: Any) -> None:
        raise WouldTrain

    monkeypatch.setattr(Search, "_start", would_train)
    for kind, job in directories.items():
        trusted = job.rundir(benchmark.sha256).trusted_final()
        search = Search(job.config, job.directory, data_dir, benchmark, lambda _: None)
        if trusted is None:
            with pytest.raises(WouldTrain):
                search.run()
        else:
            assert search.run() == trusted, kind


def test_the_report_reads_finished_and_failed_as_rundir_does(
    directories: dict[str, Job], data_dir: Path
) -> None:
    """A report lists a trusted run as finished, a failed one as failed, a locked
    (unfinished) one as unfinished, and a tampered one as unreadable, never as a result."""
    sha = Benchmark.load(data_dir).sha256
    for kind, job in directories.items():
        with pytest.warns(UserWarning) if kind == "tampered" else _nothing():
            frame = load_runs(job.directory.parents[3])
        run = RunDir(job.directory)
        if kind == "tampered":
            assert frame.empty and run.finished and job.rundir(sha).trusted_final() is None
            continue
        (status,) = frame["status"]
        if run.finished:
            assert status == "finished" and job.rundir(sha).trusted_final() is not None
        else:
            assert status == ("failed" if run.failed else "unfinished"), kind


@contextmanager
def _nothing() -> Iterator[None]:
    yield
