"""How much do the CI gate's numbers move? The measurement behind docs/ci-check.md.

For each method it runs the deterministic ``ci`` preset and reports, per gated metric
(gap_acc, gap_loss, alpha_distance):

* the rerun delta (same seed, same threads; must be exactly 0 for the gate to be exact),
* the thread delta (same seed, 2 threads instead of 1: another floating-point
  summation order, the same kind of perturbation a torch upgrade brings),
* the spread over seeds (std over ``--seeds``).

    python benchmarks/ci_variation.py --methods darts,cdao,da2s --seeds 0,1,2,3,4 [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from harness import sweep
from harness.benchmark import Benchmark
from harness.check import METRICS, PRESET
from harness.paths import find_data_dir
from harness.search import Search


def _quiet(_: str) -> None:
    pass


def gap_of(method: str, seed: int, overrides: dict[str, str], data_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (job,) = sweep.plan([method], [seed], PRESET, overrides, Path(tmp))
        final = Search(job.config, job.directory, data_dir, Benchmark.load(data_dir), _quiet).run()
    return {metric: final["gap"][metric] for metric in METRICS}


def measure(method: str, seeds: list[int], data_dir: Path) -> dict:
    per_seed = [gap_of(method, s, {}, data_dir) for s in seeds]
    rerun = gap_of(method, seeds[0], {}, data_dir)
    threads = [gap_of(method, s, {"threads": "2"}, data_dir) for s in seeds[:2]]
    row = {}
    for metric in METRICS:
        values = np.array([r[metric] for r in per_seed])
        row[metric] = {
            "rerun_delta": abs(rerun[metric] - per_seed[0][metric]),
            "thread_delta_max": max(
                abs(t[metric] - p[metric]) for t, p in zip(threads, per_seed, strict=False)
            ),
            "seed_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "seed_mean": float(values.mean()),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="darts,cdao,da2s")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    data_dir = find_data_dir()
    table = {m: measure(m, seeds, data_dir) for m in args.methods.split(",")}
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(
        f"{'method':<12}{'metric':<16}{'mean':>9}{'seed std':>10}{'rerun Δ':>10}{'threads Δ':>11}"
    )
    for method, row in table.items():
        for metric, v in row.items():
            print(
                f"{method:<12}{metric:<16}{v['seed_mean']:9.4f}{v['seed_std']:10.4f}"
                f"{v['rerun_delta']:10.4f}{v['thread_delta_max']:11.4f}"
            )


if __name__ == "__main__":
    main()
