"""A full search step of every registered method, fused vs reference supernet, proxy shape.

One step is what :func:`harness.search.train_epoch` does per batch: the method's
``arch_step`` (before or after, as ``alpha_first`` says) and the loop's own
:func:`harness.train.weight_step`. States come from
:func:`harness.search.build_state` with the ``proxy`` preset, placed mid-run
(epoch ``epochs // 2``) so every schedule is active; the batches are fixed so
data loading is not timed. Fused and reference steps alternate in one process.

    python benchmarks/bench_search_step.py [--json] [--repeats N] [--methods a,b]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from bench_supernet import apply_threads, base_parser, emit, interleaved, median

from harness import config as cfg
from harness import methods
from harness.methods.base import StepContext
from harness.paths import find_data_dir
from harness.search import build_state
from harness.train import SearchState, weight_step


def make_state(
    method: str, impl: str, device: torch.device, extra: dict[str, str] | None = None
) -> tuple[SearchState, int]:
    """(state placed at mid-run, the run's epochs) for the proxy preset (+ ``extra``)."""
    options = methods.method_class(method).Options
    overrides = {"impl": impl, "device": device.type, **(extra or {})}
    config = cfg.resolve("proxy", method, overrides, options, 0, methods.option_keys())
    torch.manual_seed(0)
    state = build_state(config, find_data_dir(), device)
    state.epoch = config.epochs // 2
    state.method.begin_epoch(state.epoch)
    return state, config.epochs


def search_step(state: SearchState, epochs: int) -> Callable[[], None]:
    """One step of the search loop on fixed batches (train, valid)."""
    train = state.prepare(next(state.data.train.epoch_batches(0)))
    valid = state.prepare(next(state.data.valid.epoch_batches(0)))
    steps = state.data.train.batches_per_epoch
    counter = {"step": 0}

    def step() -> None:
        method, at = state.method, counter["step"] % steps
        ctx = StepContext(
            state.model, state.w_optimizer, state.epoch, at, steps, epochs, state.numerics
        )
        if method.alpha_first:
            method.arch_step(ctx, train, valid)
        weight_step(state, ctx, train)
        if not method.alpha_first:
            method.arch_step(ctx, train, valid)
        counter["step"] += 1
        if train[0].device.type == "cuda":
            torch.cuda.synchronize()

    return step


def measure(method: str, device: torch.device, repeats: int) -> dict[str, Any]:
    steps = {
        impl: search_step(*make_state(method, impl, device)) for impl in ("reference", "fused")
    }
    times = interleaved(steps, repeats)
    ref, fused = median(times["reference"]), median(times["fused"])
    return {
        "method": method,
        "device": device.type,
        "reference_s": ref,
        "fused_s": fused,
        "ratio": ref / fused,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument("--methods", default="", help="comma-separated; default: all registered")
    args = parser.parse_args()
    apply_threads(args.threads)
    names = args.methods.split(",") if args.methods else list(methods.registry())
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = [measure(name, device, args.repeats) for device in devices for name in names]
    rows = [[r["device"], r["method"], r["reference_s"], r["fused_s"], r["ratio"]] for r in results]
    payload = {
        "shape": "proxy",
        "repeats": args.repeats,
        "results": results,
        **{f"ratio_{r['device']}_{r['method']}": r["ratio"] for r in results},
    }
    header = ["device", "method", "reference s/step", "fused s/step", "ratio"]
    emit("bench_search_step: search step, fused vs reference", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
