"""Where a sweep's jobs run: this machine's process pool, a Dask or Ray cluster, or Slurm.

Only the transport differs. Every job still runs through ``jobs.indexed`` →
``jobs.execute`` on a results directory all workers share, so it is skipped
when finished, resumed from its checkpoint when not, guarded by the run's lock,
and recorded in ``failed.json`` when it raises. The engines are optional extras,
imported only when chosen, so a plain install never needs them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import torch

from harness import jobs
from harness.errors import UsageError, first_line

BACKENDS = ("local", "dask", "ray", "slurm")
ENGINES = {"dask": ("dask", "distributed"), "ray": ("ray",), "slurm": ("submitit",)}
"""Backend → the modules its extra (of the same name) installs."""

Outcome = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Backend:
    """The ``--backend`` choice and its options; ``None`` means "not given"."""

    name: str = "local"
    address: str | None = None
    slurm_executor: str = "slurm"
    partition: str | None = None
    time_min: int | None = None
    mem_gb: int | None = None
    cpus: int | None = None
    gpus: int | None = None
    logs: str | None = None


@dataclass(frozen=True)
class Pool:
    """A joblib backend, entered: what a worker calls, how many jobs at once, cores per job.

    ``cores`` None means the jobs share this machine (cores // n_jobs each).
    """

    function: Callable[..., Outcome]
    n_jobs: int
    cores: int | None = None

    def prepare(self, task: tuple[Any, ...]) -> tuple[Any, ...]:
        """A task as a worker needs it: threads capped to the job's share of cores, and
        absolute paths (a worker elsewhere has another working directory)."""
        index, job, data_dir, table_path, gpus = task
        job = jobs.with_threads(job, 1 if self.cores else self.n_jobs, self.cores)
        job = dataclasses.replace(job, directory=Path(job.directory).resolve())
        return index, job, Path(data_dir).resolve(), Path(table_path).resolve(), gpus


SLURM_DEFAULTS = {"time_min": 24 * 60, "cpus": 4, "logs": "slurm-logs"}
SLURM_ONLY = ("partition", "time_min", "mem_gb", "cpus", "gpus", "logs")


def check(backend: Backend) -> None:
    """Reject options for another backend and a missing engine, before anything is written."""
    if backend.name not in BACKENDS:
        raise UsageError(f"--backend {backend.name!r}: expected one of {', '.join(BACKENDS)}")
    if backend.slurm_executor not in ("slurm", "local"):
        raise UsageError(f"--slurm-executor {backend.slurm_executor!r}: expected slurm or local")
    if backend.address and backend.name not in ("dask", "ray"):
        raise UsageError(f"--address applies to --backend dask or ray, not {backend.name}")
    given = [key for key in SLURM_ONLY if getattr(backend, key) is not None]
    if backend.name != "slurm" and (given or backend.slurm_executor != "slurm"):
        raise UsageError("--slurm-* and --gpus-per-job apply to --backend slurm only")
    if backend.name != "local":
        require(backend.name)
    check_reachable(backend)


CONNECT_TIMEOUT_S = 5.0
"""How long the up-front probe of a cluster's address waits for a connection."""
CLUSTERS = {"dask": ("the Dask scheduler", 8786), "ray": ("the Ray cluster", 6379)}
"""Backend → what ``--address`` names, and its default port."""
RAY_CLIENT_PORT = 10001
"""The port of a ``ray://`` address without one (Ray Client's default)."""
NOT_PROBED = ("auto", "local")
"""Ray addresses that name no host (Ray finds or starts the cluster itself)."""


def check_reachable(backend: Backend, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a cluster that is not there, before any run starts, in one line: an
    ``--address`` where nothing accepts a connection (a TCP probe; the engine's client
    would wait 30 s, then raise a traceback), or ``--backend slurm`` where Slurm's
    ``sbatch`` is not on the PATH."""
    slurm = backend.name == "slurm" and backend.slurm_executor == "slurm"
    if slurm and shutil.which("sbatch") is None:
        raise UsageError(
            "--backend slurm: cannot reach Slurm (no sbatch on the PATH); run from a "
            "Slurm login node, or test without a cluster with --slurm-executor local"
        )
    if backend.name not in CLUSTERS or not backend.address:
        return
    where = host_port(backend.address, CLUSTERS[backend.name][1])
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as error:
        raise unreachable(backend, error) from None


def unreachable(backend: Backend, error: BaseException) -> UsageError:
    """The one-line error for a cluster at ``--address`` that does not answer."""
    what, _ = CLUSTERS[backend.name]
    reason = getattr(error, "strerror", None) or first_line(error) or type(error).__name__
    return UsageError(
        f"cannot reach {what} at {backend.address} ({reason}); start it, or check --address"
    )


def host_port(address: str, default_port: int) -> tuple[str, int] | None:
    """``tcp://host:port``, ``ray://host:port`` or ``host:port`` → (host, port); None for
    an address that names no TCP host (``auto``, ``inproc://``)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme == "inproc" or rest in NOT_PROBED:
        return None
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or "]" in port:  # no port (an IPv6 literal's last colon is inside [...])
        host, port = rest.rstrip("/"), str(RAY_CLIENT_PORT if scheme == "ray" else default_port)
    if not port.isdigit() or not host.strip("[]"):
        raise UsageError(f"--address {address}: expected HOST:PORT, e.g. tcp://10.0.0.5:8786")
    return host.strip("[]"), int(port)


def runs_here(backend: Backend) -> bool:
    """Whether the jobs run on this machine (so its devices are theirs)."""
    if backend.name == "slurm":
        return backend.slurm_executor == "local"
    return backend.name == "local" or not backend.address


def require(name: str) -> None:
    """Import a backend's engine or say, in one line, which extra installs it."""
    for module in ENGINES[name]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise UsageError(
                f"--backend {name} needs the {name} extra: pip install -e '.[{name}]'"
            ) from None


def on_worker(index: int, job: jobs.Job, data_dir: Path, table_path: Path, gpus: int) -> Outcome:
    """Run one job where it landed, with that host's GPU count, not the submitter's.

    Ray and Slurm show a job only its own GPU; a Dask host may have several.
    """
    del gpus
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return jobs.indexed(index, job, data_dir, table_path, gpus)


# --- joblib backends: entered by sweep._dispatch, which runs the tasks --------------------
@contextmanager
def local(backend: Backend, n_jobs: int) -> Iterator[Pool]:
    """loky worker processes on this machine, one thread share each (the default).

    Each worker ends itself when this process is gone (:func:`jobs.in_local_worker`):
    loky's workers would otherwise outlive a killed sweep and hold its run locks."""
    del backend
    with quiet_resource_tracker(), joblib.parallel_config(backend="loky"):
        yield Pool(functools.partial(jobs.in_local_worker, os.getpid()), n_jobs)


TRACKER_WARNINGS = "ignore:resource_tracker"
"""A ``PYTHONWARNINGS`` filter for loky's resource tracker, a process of its own."""


@contextmanager
def quiet_resource_tracker() -> Iterator[None]:
    """Start loky's resource tracker without its warnings. After a killed sweep it
    removes the semaphores and shared folders the sweep left, and warns about each kind
    in several lines with a source line; the workers' own line says what happened
    (:func:`jobs.end_with_parent`). The tracker reads the filter from the environment it
    starts with, so it is set only while the pool starts and runs."""
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (previous, TRACKER_WARNINGS)))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = previous


@contextmanager
def dask(backend: Backend, n_jobs: int) -> Iterator[Pool]:
    """joblib's Dask backend on the scheduler at ``--address``, else on a LocalCluster.

    The LocalCluster has ``n_jobs`` single-threaded worker processes, so a killed
    worker takes one job with it and torch's threads are capped as locally. A job
    asks for one ``GPU`` resource wherever the workers declare some.
    """
    require("dask")
    from distributed import Client

    cluster = None if backend.address else _local_cluster(n_jobs)
    try:
        client = Client(backend.address or cluster, timeout=CONNECT_TIMEOUT_S)
    except OSError as error:  # it answered the probe, but not as a Dask scheduler
        if cluster is not None:
            cluster.close()
        raise unreachable(backend, error) from None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        gpu = any("GPU" in w.get("resources", {}) for w in workers.values())
        with joblib.parallel_config(
            backend="dask", client=client, **({"resources": {"GPU": 1}} if gpu else {})
        ):
            yield Pool(on_worker, n_jobs, _dask_cores(client) if backend.address else None)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _local_cluster(n_workers: int) -> Any:
    """A loopback LocalCluster whose workers keep glibc's default malloc tuning.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` in its workers, which turns off
    glibc's adaptive mmap threshold: every large torch buffer is then mapped and
    unmapped again, and a search runs about 3x slower (measured on the smoke preset).
    """
    import dask.config
    from distributed import LocalCluster

    unset = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(unset):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            resources={"GPU": 1} if torch.cuda.is_available() else None,
        )


def _dask_cores(client: Any) -> int:
    """Cores per job on a remote cluster: a host's cores over its workers' threads, at worst."""
    cores = client.run(os.cpu_count)  # worker address → its host's core count
    hosts: dict[str, list[int]] = {}  # host → [cores, worker threads on it]
    for address, worker in client.scheduler_info(n_workers=-1)["workers"].items():
        entry = hosts.setdefault(worker["host"], [cores.get(address) or 1, 0])
        entry[1] += worker["nthreads"]
    return max(1, min((c // max(1, t) for c, t in hosts.values()), default=1))


def ray(
    tasks: list[tuple[Any, ...]], backend: Backend, n_jobs: int, poll_s: float = 1.0
) -> Iterator[Outcome]:
    """joblib's Ray backend on the cluster at ``--address``, else on a local Ray instance.

    Each pool actor reserves its share of CPUs (and one GPU where the cluster has
    GPUs), and the pool is never larger than the cluster can place at once: Ray's
    pool waits for every actor to start.
    """
    require("ray")
    import ray as engine
    from ray.util.joblib import register_ray

    started = not engine.is_initialized()
    if started:
        local = {} if backend.address else {"num_cpus": os.cpu_count()}
        try:
            engine.init(address=backend.address, include_dashboard=False, **local)
        except ConnectionError as error:  # e.g. address="auto" with no cluster running
            raise unreachable(backend, error) from None
    try:
        register_ray()
        n_jobs, remote_args = _ray_share(engine, n_jobs)
        pool = Pool(on_worker, n_jobs, remote_args["num_cpus"])
        config = {"backend": "ray", "ray_remote_args": remote_args}
        yield from _watched(pool, [pool.prepare(task) for task in tasks], config, poll_s)
    finally:
        if started:
            engine.shutdown()


def _ray_share(engine: Any, n_jobs: int) -> tuple[int, dict[str, Any]]:
    """How many actors fit, and what each reserves: an equal CPU share, one GPU if any."""
    total = engine.cluster_resources()
    gpus = int(total.get("GPU", 0))
    cpus = int(total.get("CPU", 1))
    n_jobs = max(1, min(n_jobs, cpus, gpus or n_jobs))
    smallest = min(int(n["Resources"].get("CPU", 1)) for n in engine.nodes() if n["Alive"])
    remote_args = {"num_cpus": max(1, min(cpus // n_jobs, smallest)), "num_gpus": int(gpus > 0)}
    return n_jobs, remote_args


def _watched(
    pool: Pool, tasks: list[tuple[Any, ...]], config: dict[str, Any], poll_s: float
) -> Iterator[Outcome]:
    """Outcomes of a joblib call that returns only when all are done (Ray's backend has no
    generator): it runs in a thread while this one reports each run as a new
    ``final.json`` appears in the shared results directory; failures come at the end."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            with joblib.parallel_config(**config):  # joblib's config is per thread
                parallel = joblib.Parallel(n_jobs=pool.n_jobs, batch_size=1)
                box["outcomes"] = parallel(joblib.delayed(pool.function)(*t) for t in tasks)
        except Exception as error:  # noqa: BLE001 - a dead worker must not lose the others
            box["error"] = error

    thread = threading.Thread(target=call, name="harness-ray", daemon=True)
    thread.start()
    pending = {task[0]: (task[1], task[1].rundir().final_version()) for task in tasks}
    while thread.is_alive():
        thread.join(poll_s)
        for index, (job, before) in list(pending.items()):
            if job.rundir().final_version() not in (None, before):  # written by this sweep
                del pending[index]
                yield index, job.rundir().recorded_final()
    for index, outcome in box.get("outcomes", []):
        if pending.pop(index, None) is not None:
            yield index, outcome
    for index, (job, _) in pending.items():  # lost when the pool broke
        yield index, jobs.pool_failure(job, box["error"])


JOBLIB_BACKENDS = {"local": local, "dask": dask}
"""Backends entered around ``sweep._parallel``'s joblib call, which reports as jobs end."""


# --- Slurm: one submitit job per run, polled ------------------------------------------------
def slurm(
    tasks: list[tuple[Any, ...]], backend: Backend, n_jobs: int, poll_s: float = 2.0
) -> Iterator[Outcome]:
    """Submit one job per (method, seed) with submitit and report each as it ends.

    The queue, not this process, decides how many run at once; each job gets
    ``--slurm-cpus`` cores (its torch thread count) and ``--gpus-per-job`` GPUs
    (default: one when the runs use CUDA). A job that dies (timeout, preemption,
    node failure) is recorded in ``failed.json``; rerunning the command resumes it.
    """
    del n_jobs  # the queue's business
    options = {key: getattr(backend, key) or value for key, value in SLURM_DEFAULTS.items()}
    gpus = backend.gpus
    if gpus is None:
        gpus = int(any(jobs.uses_cuda(task[1].config) for task in tasks))
        jobs.log_line(f"{gpus} GPU(s) per job (set --gpus-per-job when this machine differs)")
    executor = _executor(backend.slurm_executor, options["logs"])
    executor.update_parameters(
        name="harness",
        timeout_min=options["time_min"],
        cpus_per_task=options["cpus"],
        gpus_per_node=gpus,
        mem_gb=backend.mem_gb,
        slurm_partition=backend.partition,
    )
    tasks = [Pool(on_worker, 1, options["cpus"]).prepare(task) for task in tasks]
    submitted = _submit(executor, tasks)
    ids = ", ".join(job.job_id for job in submitted)
    jobs.log_line(f"submitted {len(submitted)} job(s) ({ids}); logs in {options['logs']}/")
    yield from _poll(list(zip(submitted, tasks, strict=True)), poll_s)


def _executor(cluster: str, logs: str) -> Any:
    """submitit's executor; no Slurm on this machine is a usage error, not a traceback."""
    require("slurm")
    import submitit

    try:
        return submitit.AutoExecutor(folder=logs, cluster=cluster)
    except RuntimeError as error:  # submitit: "Could not detect srun ..."
        raise UsageError(f"--backend slurm: {error} (to test: --slurm-executor local)") from None


def _submit(executor: Any, tasks: list[tuple[Any, ...]]) -> list[Any]:
    """All jobs in one submission (a job array on Slurm); a refused one is a usage error."""
    try:
        with executor.batch():
            return [executor.submit(on_worker, *task) for task in tasks]
    except subprocess.CalledProcessError as error:  # sbatch printed why, above
        raise UsageError(f"sbatch refused the jobs (exit {error.returncode}); see above") from None


def _poll(waiting: list[tuple[Any, tuple[Any, ...]]], poll_s: float) -> Iterator[Outcome]:
    """Each job's outcome as it ends; a job that died becomes a ``failed.json`` record."""
    try:
        while waiting:
            ended = [job.done() for job, _ in waiting]
            done = [pair for pair, end in zip(waiting, ended, strict=True) if end]
            waiting = [pair for pair, end in zip(waiting, ended, strict=True) if not end]
            for job, task in done:
                try:
                    yield job.result()
                except Exception as error:  # noqa: BLE001 - a lost job is recorded, the rest go on
                    yield task[0], jobs.pool_failure(task[1], error)
            if waiting:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        ids = " ".join(job.job_id for job, _ in waiting)
        jobs.log_line(f"left {len(waiting)} job(s) running: {ids} (scancel them to stop)")
        raise


DISPATCHERS = {"ray": ray, "slurm": slurm}
"""Backends that run and report the tasks themselves (``sweep._dispatch`` yields from them)."""
