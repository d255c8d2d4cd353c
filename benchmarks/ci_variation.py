"""How much do the CI gate's numbers move, and what does it catch? The measurements
behind docs/ci-check.md.

Three studies, each against one reference measurement (the gate as it runs in CI:
float64, kernels pinned to AVX2):

* ``envs``: the same runs under each instruction-set setting this machine can
  emulate, with the pins off (``--unpinned``), in float64 (and in float32 under the
  oneDNN settings): the largest change of each metric's seed mean. Shows whether
  float64 alone makes the gate machine-independent, and what float32 would do.
* ``perturb``: initial α moved by ε (a stand-in for rounding changes of a refactor
  or another machine's kernels): the smallest ε that moves a metric.
* ``mutations``: deliberate breakages (tests/mutations.py) under each
  ``ONEDNN_MAX_CPU_ISA`` value, with the pins off (so the ISA really changes), against
  the pinned baseline: does the gate fail and name the broken method?

    python benchmarks/ci_variation.py envs|perturb|mutations [--methods a,b] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the mutations live beside the tests that use them

import mutations  # noqa: E402

from harness import check, results  # noqa: E402
from harness.benchmark import Benchmark  # noqa: E402
from harness.methods import registry  # noqa: E402
from harness.paths import find_data_dir  # noqa: E402

ENVS: dict[str, dict[str, str]] = {
    "default": {},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ONEDNN_MAX_CPU_ISA=AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
}
ISA_ENVS = ("default", "ONEDNN_MAX_CPU_ISA=AVX2", "ONEDNN_MAX_CPU_ISA=AVX512_CORE")


def with_env(env: dict[str, str], work: Callable[[], Any]) -> Any:
    """Run ``work`` with ``env`` set, so the worker processes it starts inherit it."""
    with check.environment_variables(env):
        return work()


def seed_means(measured: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        method: {metric: check.mean_metric(runs, metric) for metric in check.METRICS}
        for method, runs in measured.items()
    }


def largest_change(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """Per metric, the largest |Δ| of a method's seed mean; and how many cells changed."""
    a, b = seed_means(reference), seed_means(other)
    row = {metric: max(abs(a[m][metric] - b[m][metric]) for m in a) for metric in check.METRICS}
    row["cells_changed"] = sum(
        reference[m][s]["arch"] != other[m][s]["arch"] for m in reference for s in reference[m]
    )
    return row


class Study:
    def __init__(self, methods: list[str], seeds: list[int], baseline_out: str | None) -> None:
        self.methods, self.seeds, self.baseline_out = methods, seeds, baseline_out
        self.data_dir = find_data_dir()
        Benchmark.load(self.data_dir)  # fail early on missing data

    def measure(self, **options: Any) -> dict[str, Any]:
        started = time.perf_counter()
        names = options.pop("methods", self.methods)
        result = check.measure(names, self.seeds, self.data_dir, **options)
        print(f"  measured {len(names)} method(s) in {time.perf_counter() - started:.0f} s")
        return result

    def envs(self) -> dict[str, Any]:
        reference = self.measure()
        rows: dict[str, Any] = {}
        for dtype in ("float64", "float32"):
            overrides = {"dtype": dtype}
            base = reference if dtype == "float64" else None
            labels = ENVS if dtype == "float64" else ISA_ENVS
            for label in labels:
                env = ENVS[label]
                print(f"{dtype}, unpinned, {label}")
                got = with_env(env, lambda o=overrides: self.measure(pin=False, overrides=o))
                base = base or got
                rows[f"{dtype} unpinned {label}"] = largest_change(base, got)
        return {"reference": seed_means(reference), "rows": rows}

    def perturb(self, epsilons: list[float]) -> dict[str, Any]:
        reference = self.measure()
        rows = {}
        for eps in epsilons:
            print(f"α shifted by up to {eps:g}")
            rows[f"{eps:g}"] = largest_change(
                reference, self.measure(setup=mutations.alpha_shifted(eps))
            )
        return {"rows": rows}

    def mutations(self, none_envs: tuple[str, ...]) -> dict[str, Any]:
        """Each breakage under each oneDNN setting (the supernet one under ``none_envs``,
        as it reruns every method)."""
        cases: list[tuple[str, list[str], Any, tuple[str, ...]]] = [
            (f"{m}: α update off", [m], mutations.alpha_frozen(m), ISA_ENVS) for m in self.methods
        ]
        if "da2s" in self.methods:
            flip = mutations.da2s_entropy_rewarded
            cases.append(("da2s: entropy sign flipped", ["da2s"], flip, ISA_ENVS))
        cases.append(
            (
                "supernet: none passes its input",
                self.methods,
                mutations.none_passes_input,
                none_envs,
            )
        )
        baseline = check.baseline_document(self.measure(), self.seeds, self.data_dir)
        if self.baseline_out:
            results.write_json(Path(self.baseline_out), baseline)
        rows: dict[str, Any] = {}
        for label, names, setup, envs in cases:
            for env_label in envs:
                print(f"{label} under {env_label}")
                run = lambda n=names, s=setup: self.measure(methods=n, setup=s, pin=False)  # noqa: E731
                got = with_env(ENVS[env_label], run)
                verdicts = check.compare(baseline, got, check.DEFAULT_TOLERANCE)
                failed = sorted({v.method for v in verdicts if not v.ok})
                deltas: dict[str, dict[str, float]] = {v.method: {} for v in verdicts}
                for v in verdicts:
                    deltas[v.method][v.metric] = round(v.delta, 4)
                rows.setdefault(label, {})[env_label] = {
                    "failed": failed,
                    "deltas": deltas,
                    "now": seed_means(got),
                }
        rows["_baseline"] = seed_means(baseline["methods"])
        return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("envs", "perturb", "mutations"))
    parser.add_argument("--methods", default=",".join(registry()))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--eps", default="1e-12,1e-9,1e-6,1e-3")
    parser.add_argument(
        "--none-envs",
        default="default",
        help="mutations: oneDNN settings for the supernet breakage (comma list of labels)",
    )
    parser.add_argument("--out", help="write the table as JSON here too")
    parser.add_argument(
        "--baseline-out", help="mutations: also write the pinned reference as a gate baseline"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    study = Study(args.methods.split(","), seeds, args.baseline_out)
    started = time.perf_counter()
    if args.study == "envs":
        table = study.envs()
    elif args.study == "perturb":
        table = study.perturb([float(e) for e in args.eps.split(",")])
    else:
        table = study.mutations(tuple(args.none_envs.split(",")))
    table["wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(table, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
