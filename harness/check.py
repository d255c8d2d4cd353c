"""The CI regression gate on the discretization gap (``python -m harness check``).

It runs the deterministic ``ci`` preset for every method in the baseline, in a
fresh temporary results directory, and compares each method's final gap with
``benchmarks/gap_baseline.json``: accuracy gap, loss gap and α distance to
one-hot, averaged over the baseline's seeds. A method whose gap grew by more
than the tolerance fails the gate (exit 1). Tolerances and their measurement
are in ``docs/ci-check.md``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import config as cfg
from harness import results, sweep
from harness.benchmark import Benchmark
from harness.errors import UsageError
from harness.paths import PROJECT_ROOT
from harness.provenance import environment
from harness.search import Search

PRESET = "ci"
DEFAULT_BASELINE = PROJECT_ROOT / "benchmarks" / "gap_baseline.json"
DEFAULT_SEEDS = (0, 1)
METRICS = ("gap_acc", "gap_loss", "alpha_distance")
# Allowed growth per metric (see docs/ci-check.md for the measurements behind them).
DEFAULT_TOLERANCE = {"gap_acc": 1.0, "gap_loss": 0.02, "alpha_distance": 0.02}


@dataclass
class Verdict:
    method: str
    metric: str
    baseline: float
    now: float
    tolerance: float

    @property
    def delta(self) -> float:
        return self.now - self.baseline

    @property
    def ok(self) -> bool:
        return self.delta <= self.tolerance + 1e-12


def _quiet(_: str) -> None:
    pass


def measure(
    method_names: list[str], seeds: list[int], data_dir: Path, log: Any = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run the ci preset fresh for each (method, seed); the final gap numbers per run."""
    benchmark = Benchmark.load(data_dir)
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        jobs = sweep.plan(method_names, seeds, PRESET, {}, Path(tmp))
        for job in jobs:
            final = Search(job.config, job.directory, data_dir, benchmark, log or _quiet).run()
            gap = final.get("gap") or {}
            measured.setdefault(job.method, {})[str(job.seed)] = {
                "status": final["status"],
                "arch": final["arch"],
                **{metric: gap.get(metric) for metric in METRICS},
            }
    return measured


def baseline_document(measured: dict[str, Any], seeds: list[int], data_dir: Path) -> dict:
    info = Benchmark.load(data_dir).info()
    return {
        "preset": PRESET,
        "preset_config": cfg.PRESETS[PRESET],
        "seeds": list(seeds),
        "table": {"version": info["version"], "sha256": info["sha256"]},
        "environment": environment(torch.device("cpu")),
        "tolerance": DEFAULT_TOLERANCE,
        "methods": measured,
    }


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
            verdicts.append(
                Verdict(
                    method,
                    metric,
                    mean_metric(base_runs, metric),
                    mean_metric(runs, metric),
                    tolerance[metric],
                )
            )
    return verdicts


def format_table(verdicts: list[Verdict]) -> str:
    header = (
        f"{'method':<12}{'metric':<16}{'baseline':>10}{'now':>10}{'delta':>10}{'tol':>8}  verdict"
    )
    lines = [header, "-" * len(header)]
    for v in verdicts:
        lines.append(
            f"{v.method:<12}{v.metric:<16}{v.baseline:10.4f}{v.now:10.4f}{v.delta:+10.4f}"
            f"{v.tolerance:8.3f}  {'ok' if v.ok else 'WORSE'}"
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
