"""Expand methods × seeds into jobs, skip finished ones, run the rest.

Each job is one run directory; a finished job (``final.json`` present) is
skipped, an unfinished one resumes from its checkpoint.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def run_job(job: Job, data_dir: Path, benchmark: Benchmark) -> dict[str, Any]:
    if results.is_finished(job.directory):
        return results.read_json(job.directory / results.FINAL)
    return Search(job.config, job.directory, data_dir, benchmark, log_line).run()


def run_jobs(jobs: list[Job], data_dir: Path, benchmark: Benchmark) -> list[dict[str, Any]]:
    finals = []
    for number, job in enumerate(jobs, start=1):
        skipped = results.is_finished(job.directory)
        final = run_job(job, data_dir, benchmark)
        state = "already finished" if skipped else final["status"]
        log_line(f"[{number}/{len(jobs)}] {job.method} seed {job.seed}: {state}")
        finals.append(final)
    return finals
