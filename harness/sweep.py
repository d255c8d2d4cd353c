"""Expand methods × seeds into jobs, skip finished ones, run the rest in parallel.

Each job is one run directory; a finished job (``final.json`` present) is
skipped, an unfinished one resumes from its checkpoint. Jobs run in loky
worker processes (joblib); each worker loads the benchmark table itself, so
only paths and small configs cross process boundaries. A job that raises is
recorded in ``failed.json`` (not ``final.json``, so a rerun retries it) and the
others go on; a diverged run is a result like any other.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from joblib import Parallel, delayed

from harness import config as cfg
from harness import methods, results
from harness.benchmark import Benchmark
from harness.errors import UsageError
from harness.search import Search


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    config: cfg.Config
    directory: Path


def parse_seeds(text: str) -> list[int]:
    """``"5"`` → seeds 0..4; ``"0,3,7"`` → those seeds."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            seeds = list(range(count))
    except ValueError:
        raise UsageError(
            f"--seeds {text!r}: expected a count (e.g. 5 for seeds 0..4) or a list like 0,3,7"
        ) from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: seeds must be distinct non-negative integers")
    return seeds


def parse_methods(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError("--methods: give at least one method, e.g. --methods darts,cdao")
    for name in names:
        methods.method_class(name)
    return names


def plan(
    method_names: list[str],
    seeds: list[int],
    preset: str,
    overrides: dict[str, str],
    results_dir: Path,
) -> list[Job]:
    """Every (method, seed) job with its resolved config; validates all input first."""
    option_keys = methods.option_keys()
    jobs = []
    for name in method_names:
        options_type = methods.method_class(name).Options
        for seed in seeds:
            config = cfg.resolve(preset, name, overrides, options_type, seed, option_keys)
            directory = results.run_dir(results_dir, preset, config.dataset, name, seed)
            jobs.append(Job(name, seed, config, directory))
    return jobs


def log_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- how many jobs, how many threads, which GPU ----------------------------------
def uses_cuda(config: cfg.Config) -> bool:
    """Whether a job will run on a GPU (``auto`` means: if there is one)."""
    if config.device == "auto":
        return torch.cuda.is_available()
    return config.device.startswith("cuda")


def default_jobs(jobs: list[Job]) -> int:
    """One job per GPU on CUDA; on CPU one per core (each then gets one thread)."""
    pending = max(1, len(jobs))
    if jobs and uses_cuda(jobs[0].config):
        return max(1, min(pending, torch.cuda.device_count()))
    return max(1, min(pending, os.cpu_count() or 1))


def with_threads(job: Job, n_jobs: int) -> Job:
    """Cap torch's intra-op threads at cores // jobs, so parallel jobs never oversubscribe.

    ``threads`` is an execution field: changing it never invalidates a run directory.
    """
    cap = max(1, (os.cpu_count() or 1) // n_jobs)
    threads = min(job.config.threads, cap) if job.config.threads > 0 else cap
    return dataclasses.replace(job, config=dataclasses.replace(job.config, threads=threads))


GPU_LOCKS = Path(tempfile.gettempdir()) / "harness-gpu-slots"


@contextmanager
def gpu_slot(config: cfg.Config, gpus: int) -> Iterator[cfg.Config]:
    """With several GPUs, hold one GPU's lock for the job and pin the job to it.

    A lock per GPU (shared by every sweep on the machine) keeps two jobs off one
    GPU however the workers are scheduled; ``cuda:N`` configs are left alone.
    """
    if gpus < 2 or config.device not in ("auto", "cuda"):
        yield config
        return
    GPU_LOCKS.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(gpus):
            lock = FileLock(str(GPU_LOCKS / f"gpu-{index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield dataclasses.replace(config, device=f"cuda:{index}")
            finally:
                lock.release()
            return
        time.sleep(1.0)


# --- one job ------------------------------------------------------------------------
def run_job(job: Job, data_dir: Path, benchmark: Benchmark) -> dict[str, Any]:
    if results.is_finished(job.directory):
        return results.read_json(job.directory / results.FINAL)
    return Search(job.config, job.directory, data_dir, benchmark, log_line).run()


def failure_record(job: Job, error: BaseException) -> dict[str, Any]:
    """What ``failed.json`` holds: enough to see why, and the config to retry it."""
    return {
        "status": "failed",
        "reason": f"{type(error).__name__}: {_first_line(error)}",
        "traceback": "".join(traceback.format_exception(error)),
        "method": job.method,
        "seed": job.seed,
        "preset": job.config.preset,
        "dataset": job.config.dataset,
        "config": job.config.to_dict(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _first_line(error: BaseException) -> str:
    """The message's first line, for one-line summaries; the traceback keeps the rest."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def execute(job: Job, data_dir: Path, table_path: Path, gpus: int = 0) -> dict[str, Any]:
    """Run one job in this process; an exception becomes a ``failed.json`` record."""
    try:
        with gpu_slot(job.config, gpus) as config:
            benchmark = Benchmark.load(data_dir, table_path)
            final = run_job(dataclasses.replace(job, config=config), data_dir, benchmark)
    except Exception as error:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        record = failure_record(job, error)
        results.write_json(job.directory / results.FAILED, record)
        log_line(f"{job.method} seed {job.seed} failed: {record['reason']}")
        return record
    (job.directory / results.FAILED).unlink(missing_ok=True)
    return final


def _indexed(index: int, job: Job, *args: Any) -> tuple[int, dict[str, Any]]:
    return index, execute(job, *args)


# --- the sweep ------------------------------------------------------------------------
def run_jobs(
    jobs: list[Job],
    data_dir: Path,
    benchmark: Benchmark | Path,
    n_jobs: int | None = 1,
) -> list[dict[str, Any]]:
    """Run every job (``n_jobs`` at a time; None = :func:`default_jobs`), in plan order.

    ``benchmark`` may be the loaded table or its path; workers load it themselves.
    Prints ``[k/n] method seed: status`` as each job ends.
    """
    table_path = benchmark.path if isinstance(benchmark, Benchmark) else Path(benchmark)
    finals: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = []
    for index, job in enumerate(jobs):
        if results.is_finished(job.directory):
            finals[index] = results.read_json(job.directory / results.FINAL)
            _progress(finals, job, "already finished")
        else:
            pending.append(index)
    n_jobs = max(1, min(n_jobs or default_jobs([jobs[i] for i in pending]), len(pending) or 1))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tasks = [(i, with_threads(jobs[i], n_jobs), data_dir, table_path, gpus) for i in pending]
    for index, outcome in _dispatch(tasks, n_jobs):
        finals[index] = outcome
        reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
        _progress(finals, jobs[index], f"{outcome['status']}{reason}")
    return [final for final in finals if final is not None]


def _progress(finals: list[dict[str, Any] | None], job: Job, state: str) -> None:
    done = sum(final is not None for final in finals)
    log_line(f"[{done}/{len(finals)}] {job.method} seed {job.seed}: {state}")


def _dispatch(tasks: list[tuple[Any, ...]], n_jobs: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Outcomes as jobs end: in this process for one job at a time, else in loky workers."""
    if n_jobs == 1:
        for task in tasks:
            yield _indexed(*task)
        return
    reported: set[int] = set()
    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    try:
        for index, outcome in parallel(delayed(_indexed)(*task) for task in tasks):
            reported.add(index)
            yield index, outcome
    except Exception as error:  # noqa: BLE001 - a dead worker must not lose the others' results
        for task in tasks:
            if task[0] not in reported:
                yield task[0], _pool_failure(task[1], error)


def _pool_failure(job: Job, error: Exception) -> dict[str, Any]:
    """A job lost with its worker (killed, out of memory): recorded so a rerun retries it."""
    if results.is_finished(job.directory):  # it ended before the pool broke
        return results.read_json(job.directory / results.FINAL)
    record = failure_record(job, error)
    record["reason"] = f"worker pool failed: {record['reason']}"
    results.write_json(job.directory / results.FAILED, record)
    return record
