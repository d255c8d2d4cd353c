"""One job — a (method, seed) and its run directory — and how it runs in any process.

What the local pool (:mod:`harness.sweep`) and the remote backends
(:mod:`harness.backends`) both need: the :class:`Job`, its threads and GPU, running it
under its run directory's lock (:func:`execute`), recording a failure in
``failed.json``, and a worker that does not outlive the sweep that started it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from harness import config as cfg
from harness import devices, results
from harness.benchmark import Benchmark
from harness.errors import WARNING_PREFIX, first_line, show_plainly
from harness.rundir import RunDir
from harness.search import Search


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    config: cfg.Config
    directory: Path
    per_gpu: int = 1  # jobs that may share one GPU (the sweep's jobs ÷ GPUs, rounded up)

    def rundir(self, table_sha256: str | None = None) -> RunDir:
        """Its run directory; given the NB201 table's sha256, one that also knows which
        run belongs in it (to refuse another config, to trust a finished result)."""
        config = self.config if table_sha256 is not None else None
        return RunDir(self.directory, config, table_sha256, log_line)


def log_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- threads and GPU of one job -------------------------------------------------
def uses_cuda(config: cfg.Config) -> bool:
    """Whether a job will run on a GPU (``auto`` means: if there is one)."""
    if config.device == "auto":
        return torch.cuda.is_available()
    return config.device.startswith("cuda")


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


def slot_lock(gpu: int, slot: int) -> Path:
    """The lock of one job slot on CUDA device ``gpu``, named after the physical card
    (:func:`harness.devices.physical_id`): sweeps that number GPUs differently
    (``CUDA_VISIBLE_DEVICES``) share a card's slots and never block another card's."""
    return GPU_LOCKS / f"{devices.physical_id(gpu)}-slot-{slot}.lock"


@contextmanager
def gpu_slot(config: cfg.Config, gpus: int, per_gpu: int = 1) -> Iterator[cfg.Config]:
    """With several GPUs, hold one of a GPU's ``per_gpu`` slot locks for the job and
    pin the job to that GPU.

    The locks (shared by every sweep on the machine) keep more than ``per_gpu`` jobs
    off one GPU however the workers are scheduled; free slots are taken first-slot
    first, so jobs spread over the GPUs before they share one. ``cuda:N`` configs are
    left alone.
    """
    if gpus < 2 or config.device not in ("auto", "cuda"):
        yield config
        return
    GPU_LOCKS.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(per_gpu):
            for index in range(gpus):
                lock = FileLock(str(slot_lock(index, slot)))
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
    run = job.rundir()
    try:
        lock = run.try_lock()
    except results.WriteFailed as error:
        return _failed(job, error)
    if lock is None:
        log_line(f"{job.method} seed {job.seed}: {LOCKED}; not run here")
        return locked_record(job)
    try:
        for stray in run.remove_stray_temporaries():
            log_line(f"removed {stray} (left by a write that was killed)")
        with gpu_slot(job.config, gpus, job.per_gpu) as config:
            benchmark = Benchmark.load(data_dir, table_path)
            final = run_job(dataclasses.replace(job, config=config), data_dir, benchmark)
        run.clear_failure()
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
        job.rundir().record_failure(record)
    except OSError as write_error:
        log_line(f"{job.method} seed {job.seed}: could not record the failure: {write_error}")
    log_line(f"{job.method} seed {job.seed} failed: {record['reason']}")
    return record


def indexed(index: int, job: Job, *args: Any) -> tuple[int, dict[str, Any]]:
    return index, execute(job, *args)


PARENT_POLL_S = 0.2
"""How often a local worker checks that the sweep that started it is still alive."""
_watched_parent: int | None = None


def in_local_worker(parent: int, index: int, job: Job, *args: Any) -> tuple[int, dict[str, Any]]:
    """:func:`indexed` in a loky worker of the sweep process ``parent``, which the
    worker does not outlive (see :func:`end_with_parent`)."""
    end_with_parent(parent)
    warnings.showwarning = show_plainly  # as in the sweep's own process
    return indexed(index, job, *args)


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
        log_line(
            f"{WARNING_PREFIX}worker {os.getpid()} stops: the sweep that started it (pid "
            f"{parent}) has ended; rerun the same command to resume its runs"
        )
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


def pool_failure(job: Job, error: Exception) -> dict[str, Any]:
    """A job lost with its worker (killed, out of memory, preempted): recorded so a rerun
    retries it. The reason is one line; ``failed.json`` keeps the whole traceback."""
    run = job.rundir()
    if run.finished:  # it ended before the pool broke
        return run.recorded_final()
    try:
        lock = run.try_lock()
    except OSError:  # no run directory to record it in
        return {**failure_record(job, error), "reason": f"worker lost: {first_line(error)}"}
    if lock is None:  # another process runs it: not ours to mark
        return locked_record(job)
    try:
        return _failed(job, error, prefix="worker lost: ")
    finally:
        lock.release()
