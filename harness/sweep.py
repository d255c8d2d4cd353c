"""Expand methods × seeds into jobs, skip finished ones, run the rest in parallel.

Each job is one run directory; a finished job (``final.json`` present) is
skipped, an unfinished one resumes from its checkpoint. Jobs run in loky
worker processes (joblib); each worker loads the benchmark table itself, so
only paths and small configs cross process boundaries. A job that raises is
recorded in ``failed.json`` (not ``final.json``, so a rerun retries it) and the
others go on; a diverged run is a result like any other. A run directory made with
another config or NB201 table is refused before any job starts; each job holds its
run directory's lock, so concurrent invocations never run the same job twice.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from joblib import Parallel, delayed

from harness import backends, methods, results
from harness import config as cfg
from harness.benchmark import Benchmark
from harness.errors import UsageError, first_line
from harness.search import Search


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    config: cfg.Config
    directory: Path


MAX_SEED_COUNT = 1000
"""The largest ``--seeds`` count: more is a typo (give a list to run particular seeds)."""


def parse_seeds(text: str) -> list[int]:
    """``"5"`` → seeds 0..4; ``"0,3,7"`` → those seeds. Seeds are distinct, in
    0..``MAX_SEED``; a count is at most ``MAX_SEED_COUNT``."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if count < 1:
                raise ValueError
            if count > MAX_SEED_COUNT:
                raise UsageError(
                    f"--seeds {text}: a count is at most {MAX_SEED_COUNT}; "
                    "give a list (e.g. 0,3,7) to run particular seeds"
                )
            seeds = list(range(count))
    except ValueError:
        raise _bad_seeds(text) from None
    return check_seeds(seeds, text)


def seed_list(seeds: Sequence[int]) -> list[int]:
    """Seeds given as a list of integers (the API's form), checked as ``--seeds`` is."""
    shown = ",".join(str(seed) for seed in seeds)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise _bad_seeds(shown)
    return check_seeds([int(seed) for seed in seeds], shown)


def check_seeds(seeds: list[int], text: str) -> list[int]:
    """Refuse no seed, a repeated seed, or one outside 0..``MAX_SEED``."""
    if not seeds:
        raise _bad_seeds(text)
    if any(s < 0 or s > cfg.MAX_SEED for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: seeds must be distinct integers in 0..{cfg.MAX_SEED}")
    return seeds


def _bad_seeds(text: str) -> UsageError:
    return UsageError(
        f"--seeds {text!r}: expected a count (e.g. 5 for seeds 0..4) or a list like 0,3,7"
    )


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names (``--methods``), as :func:`method_list`."""
    return method_list(text.split(","))


def method_list(names: Iterable[str]) -> list[str]:
    """Method names in the order given, each once (``darts, darts`` is one darts); each
    must be registered."""
    names = list(names)
    if not all(isinstance(name, str) for name in names):
        raise UsageError(f"--methods {names!r}: expected method names, e.g. darts,cdao")
    names = list(dict.fromkeys(name.strip() for name in names if name.strip()))
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
    """Every (method, seed) job with its resolved config; validates all input first
    (every field against its rule, see :func:`harness.config.check_config`)."""
    option_keys = methods.option_keys()
    jobs = []
    for name in method_names:
        options_type = methods.method_class(name).Options
        for seed in seeds:
            config = cfg.resolve(preset, name, overrides, options_type, seed, option_keys)
            directory = results.run_dir(results_dir, preset, config.dataset, name, seed)
            jobs.append(Job(name, seed, config, directory))
    cfg.check_method_keys(overrides, method_names)
    return jobs


def check_run_dirs(jobs: list[Job], table_sha256: str) -> None:
    """Refuse, before any job runs and writing nothing, a run directory whose
    ``config.json`` records another config or NB201 table than requested (UsageError
    naming the file and the keys). An unreadable ``config.json`` is left to its job,
    which keeps it aside and relies on the identity the checkpoint and final.json carry."""
    for job in jobs:
        if not (job.directory / results.CONFIG).is_file():
            continue
        try:
            recorded = results.read_config(job.directory)
        except results.BadFile:
            continue
        wanted = results.identity(job.config.to_dict(), table_sha256)
        mismatch = results.config_mismatch(job.directory / results.CONFIG, recorded, wanted)
        if mismatch:
            raise UsageError(mismatch)


def _table_sha256(benchmark: Benchmark | Path, table_path: Path) -> str:
    if isinstance(benchmark, Benchmark):
        return benchmark.sha256
    return Benchmark.load(None, table_path).sha256


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


def with_threads(job: Job, n_jobs: int, cores: int | None = None) -> Job:
    """Cap torch's intra-op threads at cores // jobs, so parallel jobs never oversubscribe.

    ``cores`` defaults to this machine's; a backend whose jobs run elsewhere gives
    the cores each job has there. ``threads`` is an execution field: changing it
    never invalidates a run directory.
    """
    cap = max(1, (cores or os.cpu_count() or 1) // n_jobs)
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
    """The run's result: a trusted finished one as it is, else searched (resumed, or
    repaired where a file is bad; see :class:`~harness.search.Search`)."""
    return Search(job.config, job.directory, data_dir, benchmark, log_line).run()


def failure_record(job: Job, error: BaseException) -> dict[str, Any]:
    """What ``failed.json`` holds: enough to see why, and the config to retry it."""
    return {
        "status": "failed",
        "reason": f"{type(error).__name__}: {first_line(error)}",
        "traceback": "".join(traceback.format_exception(error)),
        "method": job.method,
        "seed": job.seed,
        "preset": job.config.preset,
        "dataset": job.config.dataset,
        "config": job.config.to_dict(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


LOCKED = "running in another process"
"""The reason of a ``locked`` outcome: another process holds the run's lock."""


def execute(job: Job, data_dir: Path, table_path: Path, gpus: int = 0) -> dict[str, Any]:
    """Run one job in this process, holding its run directory's lock for the whole job.

    A run locked by another process (another ``run``, a remote backend job) is not
    run: the outcome is ``locked`` and a later rerun collects it. Stray temporaries of
    killed writes are removed under the lock; an exception becomes ``failed.json``.
    """
    try:
        job.directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(job.directory / results.LOCK))
        lock.acquire(timeout=0)
    except Timeout:
        log_line(f"{job.method} seed {job.seed}: {LOCKED}; not run here")
        return locked_record(job)
    except OSError as error:
        return _failed(job, results.WriteFailed(job.directory / results.LOCK, error))
    try:
        for stray in results.remove_stray_temporaries(job.directory):
            log_line(f"removed {stray} (left by a write that was killed)")
        with gpu_slot(job.config, gpus) as config:
            benchmark = Benchmark.load(data_dir, table_path)
            final = run_job(dataclasses.replace(job, config=config), data_dir, benchmark)
        (job.directory / results.FAILED).unlink(missing_ok=True)
        return final
    except Exception as error:  # noqa: BLE001 - any failure is recorded, the sweep goes on
        return _failed(job, error)
    finally:
        lock.release()


def locked_record(job: Job) -> dict[str, Any]:
    return {
        "status": "locked",
        "reason": LOCKED,
        "method": job.method,
        "seed": job.seed,
        "preset": job.config.preset,
        "dataset": job.config.dataset,
    }


def _failed(job: Job, error: BaseException, prefix: str = "") -> dict[str, Any]:
    """Record a failure in ``failed.json`` where the disk allows; say it either way."""
    record = failure_record(job, error)
    record["reason"] = prefix + record["reason"]
    try:
        results.write_json(job.directory / results.FAILED, record)
    except OSError as write_error:
        log_line(f"{job.method} seed {job.seed}: could not record the failure: {write_error}")
    log_line(f"{job.method} seed {job.seed} failed: {record['reason']}")
    return record


def _indexed(index: int, job: Job, *args: Any) -> tuple[int, dict[str, Any]]:
    return index, execute(job, *args)


PARENT_POLL_S = 0.2
"""How often a local worker checks that the sweep that started it is still alive."""
_watched_parent: int | None = None


def in_local_worker(parent: int, index: int, job: Job, *args: Any) -> tuple[int, dict[str, Any]]:
    """:func:`_indexed` in a loky worker of the sweep process ``parent``, which the
    worker does not outlive (see :func:`end_with_parent`)."""
    end_with_parent(parent)
    return _indexed(index, job, *args)


def end_with_parent(parent: int) -> None:
    """Kill this process as soon as ``parent`` is no longer its parent (it died: killed,
    crashed, terminated). A loky worker otherwise lives on, runs the jobs already queued
    to it and holds their run locks, so the rerun would find them "running in another
    process". Its in-flight epoch is lost, as with any kill. Idempotent per process."""
    global _watched_parent
    if os.getpid() == parent or _watched_parent == parent:
        return
    _watched_parent = parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


# --- the sweep ------------------------------------------------------------------------
def run_jobs(
    jobs: list[Job],
    data_dir: Path,
    benchmark: Benchmark | Path,
    n_jobs: int | None = 1,
    backend: backends.Backend | None = None,
) -> list[dict[str, Any]]:
    """Run every job (``n_jobs`` at a time; None = :func:`default_jobs`), in plan order.

    ``benchmark`` may be the loaded table or its path; workers load it themselves.
    ``backend`` says where jobs run (default: loky processes here, see
    :mod:`harness.backends`). Prints ``[k/n] method seed: status`` as each job ends.
    """
    backend = backend or backends.Backend()
    backends.check(backend)
    table_path = benchmark.path if isinstance(benchmark, Benchmark) else Path(benchmark)
    table_sha256 = _table_sha256(benchmark, table_path)
    check_run_dirs(jobs, table_sha256)
    finals: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = []
    for index, job in enumerate(jobs):
        wanted = results.identity(job.config.to_dict(), table_sha256)
        final = results.trusted_final(job.directory, wanted)  # else the job repairs it
        if final is not None:
            finals[index] = final
            _progress(finals, job, "already finished")
        else:
            pending.append(index)
    n_jobs = max(1, min(n_jobs or default_jobs([jobs[i] for i in pending]), len(pending) or 1))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tasks = [(i, jobs[i], data_dir, table_path, gpus) for i in pending]
    for index, outcome in _dispatch(tasks, n_jobs, backend):
        finals[index] = outcome
        reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
        _progress(finals, jobs[index], f"{outcome['status']}{reason}")
    return [final for final in finals if final is not None]


def _progress(finals: list[dict[str, Any] | None], job: Job, state: str) -> None:
    done = sum(final is not None for final in finals)
    log_line(f"[{done}/{len(finals)}] {job.method} seed {job.seed}: {state}")


def _dispatch(
    tasks: list[tuple[Any, ...]], n_jobs: int, backend: backends.Backend
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Outcomes as jobs end: in this process for one local job at a time; in loky or Dask
    workers through joblib; or from Ray / Slurm, whose backends report the jobs themselves."""
    if backend.name in backends.DISPATCHERS:
        yield from backends.DISPATCHERS[backend.name](tasks, backend, n_jobs)
        return
    if backend.name == "local" and n_jobs == 1:
        for index, job, *rest in tasks:
            yield _indexed(index, with_threads(job, 1), *rest)
        return
    with backends.JOBLIB_BACKENDS[backend.name](backend, n_jobs) as pool:
        tasks = [pool.prepare(task) for task in tasks]
        yield from _parallel(pool, tasks)


def _parallel(
    pool: backends.Pool, tasks: list[tuple[Any, ...]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run tasks on the entered joblib backend; a broken pool fails only the unfinished."""
    reported: set[int] = set()
    parallel = Parallel(n_jobs=pool.n_jobs, return_as="generator_unordered", batch_size=1)
    try:
        for index, outcome in parallel(delayed(pool.function)(*task) for task in tasks):
            reported.add(index)
            yield index, outcome
    except Exception as error:  # noqa: BLE001 - a dead worker must not lose the others' results
        for task in tasks:
            if task[0] not in reported:
                yield task[0], _pool_failure(task[1], error)


def _pool_failure(job: Job, error: Exception) -> dict[str, Any]:
    """A job lost with its worker (killed, out of memory, preempted): recorded so a rerun
    retries it. The reason is one line; ``failed.json`` keeps the whole traceback."""
    if results.is_finished(job.directory):  # it ended before the pool broke
        return results.read_json(job.directory / results.FINAL)
    lock = FileLock(str(job.directory / results.LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another process runs it: not ours to mark
        return locked_record(job)
    except OSError:  # no run directory to record it in
        return {**failure_record(job, error), "reason": f"worker lost: {first_line(error)}"}
    try:
        return _failed(job, error, prefix="worker lost: ")
    finally:
        lock.release()
