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
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from joblib import Parallel, delayed

from harness import backends, methods, results
from harness import config as cfg
from harness.benchmark import Benchmark
from harness.errors import UsageError
from harness.jobs import Job, indexed, log_line, pool_failure, uses_cuda, with_threads
from harness.rundir import RunDir

MAX_SEED_COUNT = 1000
"""The largest ``--seeds`` count: more is a typo (give a list to run particular seeds)."""


def parse_seeds(text: str) -> list[int]:
    """``"5"`` → seeds 0..4; ``"0,3,7"`` → those seeds (``"0,"`` is seed 0 alone). Seeds
    are distinct, in 0..``MAX_SEED``; a count is 1..``MAX_SEED_COUNT``."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if count == 0:
                raise UsageError(
                    "--seeds 0: a count must be at least 1; to run seed 0 alone, give the "
                    "one-seed list --seeds 0, (a trailing comma)"
                )
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
    """Refuse no seed, one outside 0..``MAX_SEED``, or one given twice (as a method given
    twice is: a repeated name is more likely a typo than a wish)."""
    if not seeds:
        raise _bad_seeds(text)
    if any(s < 0 or s > cfg.MAX_SEED for s in seeds):
        raise UsageError(f"--seeds {text!r}: seeds must be distinct integers in 0..{cfg.MAX_SEED}")
    twice = _repeated(seeds)
    if twice is not None:
        raise UsageError(f"--seeds {text!r}: seed {twice} is given twice; give each seed once")
    return seeds


def _repeated(items: Sequence[Any]) -> Any:
    """The first item that occurs twice, or None."""
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _bad_seeds(text: str) -> UsageError:
    return UsageError(
        f"--seeds {text!r}: expected a count (e.g. 5 for seeds 0..4) or a list like 0,3,7 "
        "(0, for seed 0 alone)"
    )


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names (``--methods``), as :func:`method_list`."""
    return method_list(text.split(","))


def method_list(names: Iterable[str]) -> list[str]:
    """Method names in the order given; each must be registered and given once
    (``darts,darts`` is refused, as a repeated seed is)."""
    names = list(names)
    if not all(isinstance(name, str) for name in names):
        raise UsageError(f"--methods {names!r}: expected method names, e.g. darts,cdao")
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise UsageError("--methods: give at least one method, e.g. --methods darts,cdao")
    for name in names:
        methods.method_class(name)
    twice = _repeated(names)
    if twice is not None:
        shown = ",".join(names)
        raise UsageError(f"--methods {shown}: {twice} is given twice; name each method once")
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


def check_run_dirs(jobs: list[Job], table_sha256: str) -> list[RunDir]:
    """Each job's run directory, after refusing, before any job runs and writing nothing,
    one whose ``config.json`` records another config or NB201 table than requested
    (UsageError naming the file and the keys; :meth:`RunDir.refuse_other_config`)."""
    run_dirs = [job.rundir(table_sha256) for job in jobs]
    for run_dir in run_dirs:
        run_dir.refuse_other_config()
    return run_dirs


def _table_sha256(benchmark: Benchmark | Path, table_path: Path) -> str:
    if isinstance(benchmark, Benchmark):
        return benchmark.sha256
    return Benchmark.load(None, table_path).sha256


# --- how many jobs, how many threads, which GPU ----------------------------------
def default_jobs(jobs: list[Job]) -> int:
    """One job per GPU on CUDA; on CPU one per core (each then gets one thread)."""
    pending = max(1, len(jobs))
    if jobs and uses_cuda(jobs[0].config):
        return max(1, min(pending, torch.cuda.device_count()))
    return max(1, min(pending, os.cpu_count() or 1))


def per_gpu(n_jobs: int, gpus: int) -> int:
    """Jobs one GPU takes at a time: ``--jobs`` spread over the GPUs (8 jobs on 4 GPUs:
    2 each), so one small supernet does not leave a large GPU mostly idle."""
    return max(1, math.ceil(n_jobs / gpus)) if gpus else 1


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
    run_dirs = check_run_dirs(jobs, table_sha256)
    finals: list[dict[str, Any] | None] = [None] * len(jobs)
    pending = []
    for index, (job, run_dir) in enumerate(zip(jobs, run_dirs, strict=True)):
        final = run_dir.trusted_final()  # else the job repairs it
        if final is not None:
            finals[index] = final
            _progress(finals, job, "already finished")
        else:
            pending.append(index)
    n_jobs = max(1, min(n_jobs or default_jobs([jobs[i] for i in pending]), len(pending) or 1))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    shared = [dataclasses.replace(job, per_gpu=per_gpu(n_jobs, gpus)) for job in jobs]
    tasks = [(i, shared[i], data_dir, table_path, gpus) for i in pending]
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
            yield indexed(index, with_threads(job, 1), *rest)
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
                yield task[0], pool_failure(task[1], error)
