"""One command for a CUDA machine: the ``paper`` preset's search step under every switch.

For the default (fp32) and each switch — ``bf16``, ``channels_last``, ``cuda_graphs``,
``compile`` — it builds a DARTS search state at the ``paper`` shape (C=16, N=5,
batch 64; a small slice of the data, so start-up is quick) with
:func:`harness.search.build_state` and reports:

* seconds per search step (the weight step plus DARTS' α step on fixed batches, as
  ``bench_search_step.py``) and images/s at batch 64 (median of ``--steps`` steps after
  warm-up; ``compile`` and ``cuda_graphs`` report their first, capturing call apart);
* peak CUDA memory of the variant;
* agreement with fp32: after the same ``--steps`` steps from the same seed, the largest
  difference of the op probabilities and of the last loss;
* determinism: fp32 run twice from the same seed — are the α identical, bit for bit?

Everything runs in one process in under 8 minutes on a current GPU (``--budget-s``
stops starting variants past the budget and says which were skipped). Without CUDA it
prints ``no CUDA: skipped`` and exits 0. ``--json-out PATH`` writes the result as JSON
(``status`` is ``"ok"``, ``"skipped"`` or ``"partial"``); ``--json`` prints it.

    python benchmarks/gpu_check.py [--steps 20] [--json] [--json-out gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

# cuBLAS is deterministic only with a fixed workspace; set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

SWITCHES = ("fp32", "bf16", "channels_last", "cuda_graphs", "compile")
"""Variants in the order they run; fp32 is the reference for agreement. ``compile`` is
last: a cold TorchInductor build may take minutes, and the budget then stops there."""
SHAPE = {"train_size": "640", "valid_size": "640", "gap_eval_size": "256"}
"""The paper preset with a small data slice: the step is the paper shape's."""


def skipped(reason: str) -> dict[str, Any]:
    return {"benchmark": "gpu_check", "status": "skipped", "reason": reason, "results": {}}


def run_variant(switch: str, steps: int, device: torch.device, preset: str) -> dict[str, Any]:
    """Time ``steps`` search steps of a fresh seeded state with ``switch`` on."""
    from bench_search_step import search_step

    from harness import config as cfg
    from harness import methods
    from harness.paths import find_data_dir
    from harness.search import build_state, configure_torch

    overrides = {**SHAPE, "device": device.type}
    if switch != "fp32":
        overrides[switch] = "true"
    config = cfg.resolve(
        preset, "darts", overrides, methods.method_class("darts").Options, 0, methods.option_keys()
    )
    configure_torch(config, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    state = build_state(config, find_data_dir(), device)
    step = search_step(state, config.epochs)
    start = time.perf_counter()
    step()  # compiles or captures where the switch does
    first = time.perf_counter() - start
    times = []
    for _ in range(steps - 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times) if times else first
    probabilities = state.method.probabilities().detach().double().cpu()
    return {
        "s_per_step": seconds,
        "img_per_s": config.batch_size / seconds,
        "first_call_s": first,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "probabilities": probabilities.tolist(),
        "_alpha": state.method.alpha.detach().cpu().clone(),
    }


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def check(
    steps: int, budget_s: float, switches: list[str], device: torch.device, preset: str
) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    left_out: list[str] = []
    for switch in ["fp32", "fp32 again", *[s for s in switches if s != "fp32"]]:
        if time.perf_counter() - started > budget_s:
            left_out.append(switch)
            continue
        try:
            results[switch] = run_variant(switch.split()[0], steps, device, preset)
        except Exception as exc:  # report and go on: one broken switch must not hide others
            errors[switch] = f"{type(exc).__name__}: {first_line(exc)}"
    alphas = {name: result.pop("_alpha") for name, result in results.items()}
    probabilities = {name: result.pop("probabilities") for name, result in results.items()}
    deterministic = None
    if "fp32" in alphas and "fp32 again" in alphas:
        deterministic = bool(torch.equal(alphas["fp32"], alphas["fp32 again"]))
        del results["fp32 again"]
    base = results.get("fp32")
    for name, result in results.items():
        if base is not None and name != "fp32":
            diff = torch.tensor(probabilities[name]) - torch.tensor(probabilities["fp32"])
            result["max_prob_diff_vs_fp32"] = float(diff.abs().max())
            result["alpha_equal_fp32"] = bool(torch.equal(alphas[name], alphas["fp32"]))
    fp32_s = base["s_per_step"] if base else None
    for result in results.values():
        if fp32_s:
            result["ratio_vs_fp32"] = fp32_s / result["s_per_step"]
    return {
        "benchmark": "gpu_check",
        "status": "ok" if not errors and not left_out else "partial",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": preset,
        "torch": torch.__version__,
        "steps": steps,
        "deterministic_fp32": deterministic,
        "results": results,
        "errors": errors,
        "left_out_over_budget": left_out,
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="search steps per variant")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no variant after")
    parser.add_argument("--switches", default=",".join(SWITCHES))
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--json-out", type=Path, help="also write the result here")
    parser.add_argument(
        "--device", default="cuda", help="cpu: the same code on the CPU, to test its wiring"
    )
    parser.add_argument("--preset", default="paper", help="paper; smaller ones for tests")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA: skipped", file=sys.stderr)
        result = skipped("no CUDA: skipped (torch.cuda.is_available() is False)")
    else:
        result = check(args.steps, args.budget_s, args.switches.split(","), device, args.preset)
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    if args.json or result["status"] == "skipped":
        print(text)
    else:
        _table(result)
    return 0


def _table(result: dict[str, Any]) -> None:
    print(f"gpu_check on {result['device']} (torch {result['torch']}), {result['steps']} steps")
    print(f"fp32 deterministic (two runs, same α bits): {result['deterministic_fp32']}")
    print(f"{'variant':>14} {'s/step':>9} {'img/s':>8} {'vs fp32':>8} {'peak MB':>8} {'Δp':>9}")
    for name, r in result["results"].items():
        print(
            f"{name:>14} {r['s_per_step']:9.4f} {r['img_per_s']:8.0f} "
            f"{r.get('ratio_vs_fp32', 1.0):8.2f} {r['peak_memory_mb'] or 0:8.0f} "
            f"{r.get('max_prob_diff_vs_fp32', 0.0):9.2e}"
        )
    for name, error in result["errors"].items():
        print(f"{name}: FAILED {error}")
    if result["left_out_over_budget"]:
        print("not run (over budget):", ", ".join(result["left_out_over_budget"]))


if __name__ == "__main__":
    sys.exit(main())
