"""The CI regression gate on the discretization gap (``python -m harness check``).

It runs the deterministic ``ci`` preset for every method in the baseline, in a
fresh temporary results directory, and compares each method's final gap with
``benchmarks/gap_baseline.json``: accuracy gap, loss gap and α distance to
one-hot, averaged over the baseline's seeds. A method whose gap grew by more
than the tolerance fails the gate (exit 1).

The verdict must not depend on the machine. A 4-epoch search amplifies
float32 rounding differences (which oneDNN, MKL and ATen kernels ran) into
points of accuracy, so the ``ci`` preset computes in float64, where the same
differences stay far below what the gate reads; and each run happens in a
fresh worker process whose kernels are pinned to the AVX2 code paths every
x86-64 machine of interest has (:data:`PINNED_ENV`). The measurements behind
both choices and the tolerances are in ``docs/ci-check.md``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import config as cfg
from harness import results
from harness.errors import UsageError
from harness.paths import PROJECT_ROOT
from harness.space import NUM_OPS

PRESET = "ci"
DEFAULT_BASELINE = PROJECT_ROOT / "benchmarks" / "gap_baseline.json"
METRICS = ("gap_acc", "gap_loss", "alpha_distance")
"""What each gate run measures (from ``final.json``'s gap)."""
TRAVEL = "alpha_travel"
"""Derived: how far α went from uniform toward one-hot, 1 − distance / uniform's distance."""
# Allowed growth per metric, and for α travel the allowed relative shrink (see
# docs/ci-check.md for the measurements behind them).
DEFAULT_TOLERANCE = {"gap_acc": 1.0, "gap_loss": 0.02, "alpha_distance": 0.02, TRAVEL: 0.5}
PINNED_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's convolution kernels
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own kernels: init RNG, BatchNorm, reductions
    "MKL_CBWR": "AVX2",  # MKL's BLAS code path (float64 convolutions and the classifier)
    "OMP_NUM_THREADS": "1",
}
"""Set in each gate worker before torch loads: the same kernels on every x86-64 machine."""

Log = Callable[[str], None]
Setup = Callable[[], None]


@dataclass
class Verdict:
    """One method's metric against its baseline. Worse is growth beyond ``tolerance``
    or, for a ``relative`` metric, a shrink by more than that fraction of the baseline."""

    method: str
    metric: str
    baseline: float
    now: float
    tolerance: float
    relative: bool = False

    @property
    def delta(self) -> float:
        return self.now - self.baseline

    @property
    def ok(self) -> bool:
        if self.relative:
            return self.now >= self.baseline * (1.0 - self.tolerance) - 1e-12
        return self.delta <= self.tolerance + 1e-12


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def environment_variables(values: dict[str, str]) -> Iterator[None]:
    """While open, ``os.environ`` holds ``values``, so worker processes started from here
    inherit them (the gate's :data:`PINNED_ENV`, or the settings a study emulates)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def measure_run(
    method: str,
    seed: int,
    data_dir: Path,
    setup: Setup | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``ci`` run in this (worker) process: its gap numbers, cell and fingerprint.

    ``setup`` runs first (the tests use it to break a method inside the worker);
    ``overrides`` are ``--set`` values (benchmarks/ci_variation.py measures float32)."""
    from harness import sweep
    from harness.benchmark import Benchmark
    from harness.provenance import cpu_fingerprint
    from harness.search import Search

    if setup is not None:
        setup()
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        (job,) = sweep.plan([method], [seed], PRESET, overrides or {}, Path(tmp))
        final = Search(job.config, job.directory, data_dir, Benchmark.load(data_dir), _quiet).run()
    gap = final.get("gap") or {}
    return {
        "status": final["status"],
        "arch": final["arch"],
        **{metric: gap.get(metric) for metric in METRICS},
        "wall_s": final["wall_s"],
        "fingerprint": cpu_fingerprint(),
    }


def default_jobs(runs: int) -> int:
    return max(1, min(runs, os.cpu_count() or 1))


def measure(
    method_names: list[str],
    seeds: list[int],
    data_dir: Path,
    log: Log | None = None,
    jobs: int | None = None,
    pin: bool = True,
    setup: Setup | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run the ci preset fresh for each (method, seed), each in a new worker process (so
    no state, and no ``setup``, carries from one run to the next) with pinned kernels
    (``pin``); the final gap numbers per run. ``log`` gets a line per run."""
    log = log or _quiet
    runs = [(method, seed) for method in method_names for seed in seeds]
    workers = jobs or default_jobs(len(runs))
    measured: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in method_names}
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with (
        environment_variables(PINNED_ENV if pin else {}),
        ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool,
    ):
        futures = {
            pool.submit(measure_run, method, seed, data_dir, setup, overrides): (method, seed)
            for method, seed in runs
        }
        for done, future in enumerate(as_completed(futures), 1):
            method, seed = futures[future]
            run = future.result()
            measured[method][str(seed)] = run
            log(_progress_line(method, seed, run, done, len(runs), started))
    return {m: dict(sorted(r.items(), key=lambda kv: int(kv[0]))) for m, r in measured.items()}


def _progress_line(
    method: str, seed: int, run: dict[str, Any], done: int, total: int, started: float
) -> str:
    numbers = ", ".join(
        f"{metric} {run[metric]:.4f}" for metric in METRICS if run[metric] is not None
    )
    elapsed = time.perf_counter() - started
    return (
        f"check [{done}/{total}] {method} seed {seed}: {run['status']}, {numbers} "
        f"({run['wall_s']:.0f} s; {elapsed:.0f} s elapsed)"
    )


def baseline_document(
    measured: dict[str, Any], seeds: list[int], data_dir: Path, pin: bool = True
) -> dict:
    """The baseline file: the runs, and everything needed to tell whether a later
    measurement happened in the same numerical environment."""
    import torch

    from harness.benchmark import Benchmark
    from harness.provenance import environment

    info = Benchmark.load(data_dir).info()
    runs = {
        m: {s: _without(r, "fingerprint", "wall_s") for s, r in rs.items()}
        for m, rs in measured.items()
    }
    return {
        "preset": PRESET,
        "preset_config": cfg.PRESETS[PRESET],
        "seeds": list(seeds),
        "table": {"version": info["version"], "sha256": info["sha256"]},
        "environment": environment(torch.device("cpu")),
        "fingerprint": first_fingerprint(measured),
        "pinned": pin,
        "tolerance": DEFAULT_TOLERANCE,
        "methods": runs,
    }


def _without(run: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in keys}


def first_fingerprint(measured: dict[str, Any]) -> dict[str, Any] | None:
    """The workers' CPU fingerprint (all workers of one measurement share it)."""
    for runs in measured.values():
        for run in runs.values():
            return run.get("fingerprint")
    return None


def exact_match(baseline: dict[str, Any], measured: dict[str, Any]) -> str:
    """An extra, informational layer: where the numerical environment is the baseline's,
    say whether every number is bit-identical. It never decides the verdict."""
    here = first_fingerprint(measured)
    if baseline.get("fingerprint") != here:
        return "exact-match layer: skipped (baseline made in another numerical environment)"
    same = sum(
        all(run.get(k) == baseline["methods"][m][s].get(k) for k in (*METRICS, "arch"))
        for m, runs in measured.items()
        for s, run in runs.items()
    )
    total = sum(len(runs) for runs in measured.values())
    return f"exact-match layer (same CPU, ISA, torch, pins): {same}/{total} runs bit-identical"


def load_baseline(path: Path, data_dir: Path) -> dict[str, Any]:
    """Read and validate a baseline; mismatches are usage errors, never silent passes."""
    if not path.is_file():
        raise UsageError(
            f"no gap baseline at {path}; create it with: python -m harness check --update"
        )
    try:
        baseline = results.read_json(path)
        methods = baseline["methods"]
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"gap baseline {path} is unreadable ({error}); regenerate it") from None
    if baseline.get("preset") != PRESET or baseline.get("preset_config") != cfg.PRESETS[PRESET]:
        raise UsageError(
            f"gap baseline {path} was made with another preset or preset config; "
            "regenerate it with: python -m harness check --update"
        )
    from harness.benchmark import Benchmark

    table = Benchmark.load(data_dir).info()
    if baseline.get("table", {}).get("sha256") != table["sha256"]:
        raise UsageError(
            f"gap baseline {path} was made with table {baseline.get('table', {}).get('version')}, "
            f"but the data holds {table['version']}; regenerate it with --update"
        )
    if not methods:
        raise UsageError(f"gap baseline {path} lists no methods")
    return baseline


def mean_metric(runs: dict[str, dict[str, Any]], metric: str) -> float:
    return float(np.mean([run[metric] for run in runs.values()]))


def compare(
    baseline: dict[str, Any], measured: dict[str, Any], tolerance: dict[str, float]
) -> list[Verdict]:
    verdicts = []
    for method, runs in measured.items():
        base_runs = baseline["methods"][method]
        for metric in METRICS:
            base, now = mean_metric(base_runs, metric), mean_metric(runs, metric)
            verdicts.append(Verdict(method, metric, base, now, tolerance[metric]))
        base, now = (alpha_travel(mean_metric(r, "alpha_distance")) for r in (base_runs, runs))
        verdicts.append(Verdict(method, TRAVEL, base, now, tolerance[TRAVEL], relative=True))
    return verdicts


def alpha_travel(distance: float) -> float:
    """1 − distance / the uniform α's distance: 0 at uniform, 1 at one-hot. Methods whose
    α moves little (rdarts at ci scale: 0.4 %) still lose all of it when α is frozen."""
    return 1.0 - distance / ((NUM_OPS - 1) / NUM_OPS)


def format_table(verdicts: list[Verdict]) -> str:
    header = (
        f"{'method':<12}{'metric':<16}{'baseline':>10}{'now':>10}{'delta':>10}{'tol':>8}  verdict"
    )
    lines = [header, "-" * len(header)]
    for v in verdicts:
        tol = f"-{v.tolerance:.0%}" if v.relative else f"{v.tolerance:.3f}"
        lines.append(
            f"{v.method:<12}{v.metric:<16}{v.baseline:10.4f}{v.now:10.4f}{v.delta:+10.4f}"
            f"{tol:>8}  {'ok' if v.ok else 'WORSE'}"
        )
    return "\n".join(lines)


def parse_tolerance(items: list[str] | None) -> dict[str, float]:
    """``["gap_acc=2", "gap_loss=0.05"]`` over the defaults."""
    tolerance = dict(DEFAULT_TOLERANCE)
    for key, text in cfg.parse_overrides(items).items():
        if key not in tolerance:
            raise UsageError(f"unknown tolerance {key!r}; known: {', '.join(tolerance)}")
        tolerance[key] = cfg.parse_value(f"tolerance {key}", text, float)
    return tolerance


def parse_seed_list(text: str) -> list[int]:
    """``--seeds`` of ``check --update`` is always a list: ``0`` means seed 0."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: expected distinct seeds like 0,1")
    return seeds


def select_methods(baseline: dict[str, Any], requested: list[str] | None) -> list[str]:
    known = list(baseline["methods"])
    if not requested:
        return known
    missing = [m for m in requested if m not in known]
    if missing:
        raise UsageError(
            f"method(s) {', '.join(missing)} not in the gap baseline (it has {', '.join(known)}); "
            "add them with: python -m harness check --update --methods ..."
        )
    return requested
