"""Cost of each method's search step relative to DARTS (V1), in one process.

Every configuration trains the proxy-shaped supernet (C=8, N=1, batch 64,
32×32 inputs) for ``--steps`` search steps — the method's α step plus the
loop's own weight step (:func:`harness.train.weight_step`) — on fixed random
batches, at epoch 30 of 50 so every schedule is in its active phase (CDAO's λ_t
mid-ramp, DA2S past its interval). Repetitions rotate the order of the
configurations and the medians are reported, because other processes may share
the CPU; ratios are against DARTS in the same process. Within a repetition the
configurations advance in lock step — one search step of each, in rotating
order, then the next — so a burst of load from another process hits all of
them alike instead of whichever happened to be running.

    python benchmarks/bench_methods_cost.py --steps 20 --reps 5 --json out.json

``--fd-check`` instead measures how far the finite-difference Hessian products
that DARTS-V2 and Amended-DARTS use (radius 0.01/‖v‖) are from the exact
double-backward products at the same shape, on real CIFAR-10 batches, after a
few DARTS steps, in float32 and float64, and Amended-DARTS's ‖ηz‖/‖∇_α L_val‖
with either way of computing z.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import torch

from harness import config as cfg
from harness import methods
from harness.methods.amended import amended_gradient, hessian_vector, mixed_hessian_vector
from harness.methods.base import Method, StepContext, weight_params
from harness.paths import find_data_dir
from harness.supernet import SuperNet
from harness.train import SearchState, weight_optimizer, weight_step

EPOCH, EPOCHS = 30, 50
CONFIGS: list[tuple[str, str, dict[str, str]]] = [
    ("darts", "darts", {}),
    ("darts2", "darts2", {}),
    ("cdao", "cdao", {}),
    ("cdao loss_gap_every=0", "cdao", {"loss_gap_every": "0"}),
    ("cdao loss_gap_every=1", "cdao", {"loss_gap_every": "1"}),
    ("cdao two_pass", "cdao", {"two_pass": "true"}),
    ("da2s", "da2s", {}),
    ("da2s single_level", "da2s", {"single_level": "true"}),
    ("constrained (dynamic)", "constrained", {}),
    ("constrained schedule=fixed", "constrained", {"schedule": "fixed"}),
    ("constrained schedule=every", "constrained", {"schedule": "every"}),
    ("constrained crb every", "constrained", {"activation": "crb", "schedule": "every"}),
    ("rdarts", "rdarts", {}),
    ("amended", "amended", {}),
    ("amended hessian=autograd", "amended", {"hessian": "autograd"}),
    ("sdarts_rs", "sdarts_rs", {}),
    ("sdarts_adv", "sdarts_adv", {}),
    ("darts_minus", "darts_minus", {}),
    ("beta_darts", "beta_darts", {}),
    ("fairdarts", "fairdarts", {}),
    ("gdas", "gdas", {}),
    ("snas", "snas", {}),
    ("pcdarts", "pcdarts", {}),
    ("drnas", "drnas", {}),
    ("drnas reg_type=kl", "drnas", {"reg_type": "kl"}),
    ("drnas progressive", "drnas", {"progressive": "true"}),  # epoch 30 of 50: stage 2, K=2
]


@dataclass
class Timing:
    arch_s: float  # time in arch_step over the timed steps
    weight_s: float  # time in the weight step over the timed steps
    alpha_steps: int  # arch_step calls that changed α


def build(method: str, options: dict[str, str], seed: int) -> SearchState:
    overrides = {f"{method}.{k}": v for k, v in options.items()} | {"epochs": str(EPOCHS)}
    option_type = methods.method_class(method).Options
    config = cfg.resolve("proxy", method, overrides, option_type, seed, methods.option_keys())
    torch.manual_seed(seed)
    extra = methods.method_class(method).supernet_options(methods.options_for(config))
    model = SuperNet(config.C, config.N, 10, config.impl, config.track_running_stats, **extra)
    algorithm = methods.create(model, config, torch.device("cpu"))
    optimizer, scheduler = weight_optimizer(model, config)  # config.epochs == EPOCHS
    algorithm.begin_epoch(EPOCH)
    # A step uses only the model, method and optimizer; the data stub answers the
    # one question the state asks of it (which device, for autocast).
    data = SimpleNamespace(eval_images=torch.empty(0))
    return SearchState(model, algorithm, optimizer, scheduler, data)  # type: ignore[arg-type]


def batches(count: int, size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 3, 32, 32, generator=generator), torch.randint(0, 10, (size,)))
        for _ in range(count)
    ]


def search_step(state: SearchState, method: Method, step: int, data: Any) -> list[float]:
    """One loop step; returns [arch seconds, weight seconds, 1 if α moved]."""
    train, valid = data
    ctx = StepContext(state.model, state.w_optimizer, EPOCH, step, 100, EPOCHS)
    before = method.alpha.detach().clone()
    arch_s = 0.0
    if method.alpha_first:
        started = time.perf_counter()
        method.arch_step(ctx, train, valid)
        arch_s = time.perf_counter() - started
    started = time.perf_counter()
    weight_step(state, ctx, train)
    weight_s = time.perf_counter() - started
    if not method.alpha_first:
        started = time.perf_counter()
        method.arch_step(ctx, train, valid)
        arch_s = time.perf_counter() - started
    return [arch_s, weight_s, float(not torch.equal(before, method.alpha))]


def run_rep(
    steps: int, warmup: int, seed: int, configs: list[tuple[str, str, dict[str, str]]]
) -> dict[str, Timing]:
    """One repetition: fresh states for every configuration, advanced in lock step."""
    states = {label: build(method, options, seed) for label, method, options in configs}
    train = batches(steps + warmup, 64, seed + 1)
    valid = batches(steps + warmup, 64, seed + 2)
    totals = {label: [0.0, 0.0, 0.0] for label in states}
    labels = list(states)
    for step, data in enumerate(zip(train, valid, strict=True)):
        shift = step % len(labels)
        for label in labels[shift:] + labels[:shift]:
            spent = search_step(states[label], states[label].method, step, data)
            if step >= warmup:
                totals[label] = [t + s for t, s in zip(totals[label], spent, strict=True)]
    return {label: Timing(t[0], t[1], int(t[2])) for label, t in totals.items()}


def run(
    steps: int, reps: int, warmup: int, configs: list[tuple[str, str, dict[str, str]]]
) -> dict[str, dict[str, float]]:
    samples: dict[str, list[Timing]] = {label: [] for label, _, _ in configs}
    for rep in range(reps):
        for label, timing in run_rep(steps, warmup, rep, configs).items():
            samples[label].append(timing)
            print(f"rep {rep} {label}: {timing}", flush=True)
    return summarise(samples, steps)


def summarise(samples: dict[str, list[Timing]], steps: int) -> dict[str, dict[str, float]]:
    """Median seconds per search step and per α step, and their ratios to DARTS."""
    rows: dict[str, dict[str, float]] = {}
    for label, timings in samples.items():
        step_s = statistics.median((t.arch_s + t.weight_s) / steps for t in timings)
        taken = [t for t in timings if t.alpha_steps]
        alpha_s = statistics.median(t.arch_s / t.alpha_steps for t in taken) if taken else 0.0
        rate = statistics.median(t.alpha_steps / steps for t in timings)
        rows[label] = {"step_s": step_s, "alpha_step_s": alpha_s, "alpha_rate": rate}
    base = rows["darts"]
    for row in rows.values():
        row["step_ratio"] = row["step_s"] / base["step_s"]
        row["alpha_step_ratio"] = row["alpha_step_s"] / base["alpha_step_s"]
    return rows


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        "| configuration | s / search step | × darts | α steps / step | s / α step | × darts |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['step_s']:.3f} | {r['step_ratio']:.2f} | {r['alpha_rate']:.2f} "
            f"| {r['alpha_step_s']:.3f} | {r['alpha_step_ratio']:.2f} |"
        )
    return "\n".join(lines)


def relative_error(approx: list[torch.Tensor], exact: list[torch.Tensor]) -> float:
    diff = torch.cat([(a - e).reshape(-1) for a, e in zip(approx, exact, strict=True)])
    return float(diff.norm() / torch.cat([e.reshape(-1) for e in exact]).norm())


def fd_check(dtype: torch.dtype, radii: tuple[float, ...], seed: int = 0) -> dict[str, Any]:
    """Relative error of the FD products H·v and ∇²_{αw}L·v against double backward."""
    from harness.data import build_search_data

    torch.set_default_dtype(dtype)
    state = build("amended", {}, seed)
    data = build_search_data(find_data_dir(), torch.device("cpu"), 64, 1024, 1024, 64, seed)
    loader = ((images.to(dtype), labels) for images, labels in data.train.epoch_batches(0))
    method, model = state.method, state.model
    for step in range(5):  # leave the initial point
        ctx = StepContext(model, state.w_optimizer, 0, step, 100, EPOCHS)
        weight_step(state, ctx, next(loader))
    batch = next(loader)
    params = weight_params(model)
    vector = list(torch.autograd.grad(ctx.loss(batch, method.edge_weights().detach()), params))
    grads = torch.autograd.grad(ctx.loss(batch, method.edge_weights()), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector, strict=True))
    exact_hv = list(torch.autograd.grad(dot, params, retain_graph=True))
    exact_mixed = list(torch.autograd.grad(dot, method.arch_parameters()))
    rows = {}
    for radius in radii:
        hv = hessian_vector(ctx, method, batch, vector, radius)
        mixed = mixed_hessian_vector(ctx, method, batch, vector, radius)
        rows[str(radius)] = {
            "hv": relative_error(hv, exact_hv),
            "mixed": relative_error(mixed, exact_mixed),
        }
    valid = next(loader)
    for mode in ("fd", "autograd"):
        options = replace(method.options, hessian=mode)
        _, ratio = amended_gradient(ctx, method, batch, valid, options)
        rows[f"amend_ratio {mode}"] = float(ratio)
    torch.set_default_dtype(torch.float32)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--only", help="comma-separated configuration labels (darts is kept)")
    parser.add_argument("--fd-check", action="store_true", help="FD accuracy, not cost")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.fd_check:
        radii = (1e-2, 1e-3, 1e-4, 1e-5)
        for dtype in (torch.float32, torch.float64):
            print(dtype, json.dumps(fd_check(dtype, radii), indent=1))
        return
    wanted = set(args.only.split(",")) | {"darts"} if args.only else None
    configs = [c for c in CONFIGS if wanted is None or c[0] in wanted]
    rows = run(args.steps, args.reps, args.warmup, configs)
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, handle)


if __name__ == "__main__":
    main()
