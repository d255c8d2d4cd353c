"""One command for a CUDA machine: does the ``paper`` preset work there, and how fast?

Everything runs in one process (bar the concurrency check's workers) in about 8 minutes
on a current GPU (``--budget-s`` stops starting sections and variants past the budget
and says which were left out). Without CUDA it prints ``no CUDA: skipped`` and exits 0.
It reports, at the paper shape (C=16, N=5, batch 64; small data slices so start-up is
quick):

* ``results``: DARTS' search step under fp32 and each switch — ``bf16``,
  ``channels_last``, ``cuda_graphs`` (``compile`` only when named in ``--switches``: a
  cold TorchInductor build takes minutes) — seconds per step, images/s, peak memory,
  agreement with fp32 after the same steps, and ``deterministic_fp32`` (fp32 twice
  from one seed: α identical bit for bit?), with ``CUBLAS_WORKSPACE_CONFIG`` left for
  the harness to set (``cublas_env_set_by_harness``);
* ``profile``: kernels per DARTS step and the GPU-busy share (kernel time ÷ wall
  time, torch.profiler), and host syncs per step (``torch.cuda.set_sync_debug_mode``);
* ``methods``: three steps of every registered method — s/step, syncs/step and the
  projected minutes of a paper run (390 steps × the method's paper epochs; the
  per-epoch evaluation not included);
* ``loop``: the real loop, ``Search.run`` at the paper shape on 3,200 + 3,200 images ×
  2 epochs, then ``final.json`` deleted and the run started again: it must resume
  (``resumed``: true), not restart; its epoch time gives the headline projection;
* ``concurrency``: 1, 2 and 4 DARTS jobs at once on one GPU (spawned processes):
  aggregate steps/s and the gain over one job;
* ``second_gpu``: with two or more GPUs, a ``cuda_graphs`` run on ``cuda:1``: its
  memory lands on GPU 1, not GPU 0.

It ends with one line: ``paper DARTS-V1 ≈ X min``. ``--json-out PATH`` writes the
result as JSON (``status`` is ``"ok"``, ``"skipped"`` or ``"partial"``); ``--json``
prints it. ``--device cpu --preset smoke`` runs the same code on a CPU (the CUDA-only
parts report ``null``), which is how ``tests/test_gpu_check.py`` checks its wiring.

    python benchmarks/gpu_check.py [--steps 20] [--json] [--json-out gpu_check.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's harness

CUBLAS_PRESET = "CUBLAS_WORKSPACE_CONFIG" in os.environ
"""Whether the user set cuBLAS's workspace by hand (the check wants the harness to)."""

SWITCHES = ("fp32", "bf16", "channels_last", "cuda_graphs")
"""Variants run by default, in order; fp32 is the reference for agreement. ``compile``
runs only when named in ``--switches`` (a cold TorchInductor build takes minutes)."""
SECTIONS = ("switches", "profile", "methods", "loop", "concurrency", "second_gpu")
PAPER_STEPS = 25_000 // 64
"""Weight steps per paper epoch: the 25k search-train half in full batches of 64."""
LOOP_IMAGES = 3200
METHOD_VARIANTS = ("gdas:sampling=device", "constrained:decide=device")
"""Method options timed beside the defaults: GDAS with its sample on the device (no sync,
every op computed) against its host sample (two syncs, the sampled ops only); constrained
deciding its schedule on the device (no sync, an α step computed every step)."""
SHAPE = {"train_size": "640", "valid_size": "640", "gap_eval_size": "256"}
"""The paper preset with a small data slice: the step is the paper shape's."""


def skipped(reason: str) -> dict[str, Any]:
    return {"benchmark": "gpu_check", "status": "skipped", "reason": reason, "results": {}}


def build(method: str, device: torch.device, preset: str, **overrides: str) -> Any:
    """(config, seeded search state) of ``method`` at ``preset``'s shape on a data slice."""
    from harness import config as cfg
    from harness import methods
    from harness.paths import find_data_dir
    from harness.search import build_state, configure_torch

    settings = {**SHAPE, "device": str(device), **overrides}
    options = methods.method_class(method).Options
    config = cfg.resolve(preset, method, settings, options, 0, methods.option_keys())
    configure_torch(config, device)
    return config, build_state(config, find_data_dir(), device)


def one_step(state: Any, epochs: int) -> Callable[[], None]:
    """A loop step (the method's α step and the weight step) on fixed batches, with no
    synchronisation of its own, so a sync counted inside it is the step's."""
    from harness.methods.base import StepContext
    from harness.train import weight_step

    train = state.prepare(next(state.data.train.epoch_batches(0)))
    valid = state.prepare(next(state.data.valid.epoch_batches(0)))
    steps = state.data.train.batches_per_epoch
    method = state.method

    def step() -> None:
        ctx = StepContext(state.model, state.w_optimizer, 0, 0, steps, epochs, state.numerics)
        if method.alpha_first:
            method.arch_step(ctx, train, valid)
        weight_step(state, ctx, train)
        if not method.alpha_first:
            method.arch_step(ctx, train, valid)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def counting_syncs(device: torch.device) -> Iterator[list[Any]]:
    """The host syncs CUDA reports inside the block (``set_sync_debug_mode("warn")``);
    none are counted on a CPU."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
    caught[:] = [w for w in caught if "synchroniz" in str(w.message)]


def timed_steps(step: Callable[[], None], steps: int, device: torch.device) -> dict[str, Any]:
    """Seconds per step (after one warm-up step) and host syncs per step."""
    step()
    synchronize(device)
    with counting_syncs(device) as syncs:
        start = time.perf_counter()
        for _ in range(steps):
            step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return {"s_per_step": seconds, "syncs_per_step": len(syncs) / steps if syncs else 0.0}


def run_variant(switch: str, steps: int, device: torch.device, preset: str) -> dict[str, Any]:
    """Time ``steps`` search steps of a fresh seeded state with ``switch`` on."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    config, state = build("darts", device, preset, **({} if switch == "fp32" else {switch: "true"}))
    step = one_step(state, config.epochs)
    start = time.perf_counter()
    step()  # compiles or captures where the switch does
    synchronize(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps - 1):
        start = time.perf_counter()
        step()
        synchronize(device)
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


def profile_section(device: torch.device, preset: str, steps: int = 5) -> dict[str, Any]:
    """Kernels per DARTS step and the share of the wall time the GPU computes."""
    from torch.profiler import ProfilerActivity, profile

    config, state = build("darts", device, preset)
    step = one_step(state, config.epochs)
    timing = timed_steps(step, 2, device)  # warm-up, and the step's syncs
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(getattr(e, "device_time", getattr(e, "cuda_time", 0.0)) for e in kernels)
    cuda = device.type == "cuda"
    return {
        "kernels_per_step": len(kernels) / steps if cuda else None,
        "gpu_busy_share": busy_us / 1e6 / wall if cuda else None,
        "syncs_per_step": timing["syncs_per_step"] if cuda else None,
        "s_per_step": wall / steps,
    }


def methods_section(
    device: torch.device, preset: str, names: list[str], steps: int = 3
) -> dict[str, Any]:
    """Three steps of each method: s/step, syncs/step, projected minutes per paper run.
    A name may carry method options: ``gdas:sampling=device``."""
    from harness import config as cfg
    from harness import methods

    costs: dict[str, Any] = {}
    for entry in names:
        name, _, extra = entry.partition(":")
        options = dict(item.split("=", 1) for item in extra.split(",") if item)
        try:
            config, state = build(
                name, device, preset, **{f"{name}.{k}": v for k, v in options.items()}
            )
            timing = timed_steps(one_step(state, config.epochs), steps, device)
        except Exception as exc:  # report and go on: one broken method must not hide others
            costs[entry] = {"error": f"{type(exc).__name__}: {first_line(exc)}"}
            continue
        protocol = cfg.paper_protocol("paper", methods.method_class(name).Options)
        epochs = protocol.get("epochs", cfg.Config().epochs)
        minutes = timing["s_per_step"] * PAPER_STEPS * epochs / 60
        costs[entry] = {**timing, "paper_epochs": epochs, "paper_minutes": minutes}
    return costs


def loop_section(
    device: torch.device, preset: str, log: Callable[[str], None], images: int = LOOP_IMAGES
) -> dict[str, Any]:
    """``Search.run`` at the paper shape, 2 epochs; then ``final.json`` deleted and run
    again, which must resume from the checkpoint and train no epoch again."""
    from harness import config as cfg
    from harness import methods
    from harness.benchmark import Benchmark
    from harness.paths import find_data_dir
    from harness.search import Search

    size = str(images)
    settings = {"train_size": size, "valid_size": size, "epochs": "2", "rank_samples": "0"}
    settings["device"] = str(device)
    options = methods.method_class("darts").Options
    config = cfg.resolve(preset, "darts", settings, options, 0, methods.option_keys())
    data_dir = find_data_dir()
    benchmark = Benchmark.load(data_dir)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "darts-seed-0"
        first = Search(config, directory, data_dir, benchmark, lines.append).run()
        epochs = [json.loads(t) for t in (directory / "epochs.jsonl").read_text().splitlines()]
        (directory / "final.json").unlink()
        started = len(lines)
        again = Search(config, directory, data_dir, benchmark, lines.append).run()
    for line in lines:
        log(line)
    second_epoch_s = epochs[-1]["wall_s"] - epochs[0]["wall_s"]
    steps = images // config.batch_size
    minutes = second_epoch_s * (PAPER_STEPS / steps) * cfg.Config().epochs / 60
    rerun = lines[started:]
    return {
        "status": first["status"],
        "epoch_s": [e["wall_s"] for e in epochs],
        "steps_per_epoch": steps,
        "resumed": any("resumed" in line for line in rerun)
        and not any("epoch 1/" in line for line in rerun),
        "same_result": again.get("epochs_sha256") == first.get("epochs_sha256"),
        "paper_minutes": minutes,
    }


def _concurrent_worker(preset: str, steps: int, barrier: Any, results: Any, index: int) -> None:
    """One of several jobs on one GPU: build, wait for the others, time ``steps``."""
    device = torch.device("cuda")
    config, state = build("darts", device, preset)
    step = one_step(state, config.epochs)
    step()
    synchronize(device)
    barrier.wait()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    results.put((index, time.perf_counter() - start))


def concurrency_section(preset: str, steps: int, counts: tuple[int, ...] = (1, 2, 4)) -> Any:
    """Aggregate DARTS steps/s of 1, 2 and 4 jobs at once on GPU 0 (spawned processes)."""
    context = multiprocessing.get_context("spawn")
    rates: dict[str, Any] = {}
    for jobs in counts:
        barrier, results = context.Barrier(jobs), context.Queue()
        workers = [
            context.Process(target=_concurrent_worker, args=(preset, steps, barrier, results, i))
            for i in range(jobs)
        ]
        for worker in workers:
            worker.start()
        durations = [results.get(timeout=180)[1] for _ in workers]  # a dead worker: an error
        for worker in workers:
            worker.join()
        rates[str(jobs)] = {"steps_per_s": sum(steps / d for d in durations)}
    one = rates[str(counts[0])]["steps_per_s"]
    for rate in rates.values():
        rate["gain_vs_one"] = rate["steps_per_s"] / one
    return rates


def second_gpu_section(preset: str) -> dict[str, Any] | None:
    """A ``cuda_graphs`` step on ``cuda:1``: set_device puts its memory on GPU 1."""
    if torch.cuda.device_count() < 2:
        return None
    before = torch.cuda.memory_allocated(0)
    device = torch.device("cuda:1")
    config, state = build("darts", device, preset, cuda_graphs="true")
    timed_steps(one_step(state, config.epochs), 2, device)
    return {
        "ok": True,
        "gpu1_memory_mb": torch.cuda.memory_allocated(1) / 2**20,
        "gpu0_memory_growth_mb": (torch.cuda.memory_allocated(0) - before) / 2**20,
    }


def log_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def switches_section(
    steps: int, switches: list[str], device: torch.device, preset: str, over: Callable[[], bool]
) -> dict[str, Any]:
    """Each switch's DARTS step against fp32, and fp32 twice (determinism)."""
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    left_out: list[str] = []
    for switch in ["fp32", "fp32 again", *[s for s in switches if s != "fp32"]]:
        if over():
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
        "deterministic_fp32": deterministic,
        "results": results,
        "errors": errors,
        "left_out": left_out,
    }


def headline(result: dict[str, Any]) -> str:
    """The last line: the real loop's projection, else DARTS' three-step one."""
    loop = result.get("loop") or {}
    darts = (result.get("methods") or {}).get("darts") or {}
    minutes = loop.get("paper_minutes") or darts.get("paper_minutes")
    return f"paper DARTS-V1 ≈ {minutes:.0f} min" if minutes else "paper DARTS-V1 ≈ n/a"


def check(
    steps: int,
    budget_s: float,
    switches: list[str],
    device: torch.device,
    preset: str,
    sections: list[str],
    method_names: list[str],
    loop_images: int = LOOP_IMAGES,
) -> dict[str, Any]:
    from harness import methods

    started = time.perf_counter()
    cuda = device.type == "cuda"
    names = method_names or [*methods.registry(), *METHOD_VARIANTS]

    def over() -> bool:
        return time.perf_counter() - started > budget_s

    runs: dict[str, Callable[[], Any]] = {
        "profile": lambda: profile_section(device, preset),
        "methods": lambda: methods_section(device, preset, names),
        "loop": lambda: loop_section(device, preset, log_line, loop_images),
        "concurrency": lambda: concurrency_section(preset, max(3, steps // 2)) if cuda else None,
        "second_gpu": lambda: second_gpu_section(preset) if cuda else None,
    }
    result: dict[str, Any] = {
        "benchmark": "gpu_check",
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "preset": preset,
        "torch": torch.__version__,
        "steps": steps,
        "cublas_env_set_by_harness": None
        if CUBLAS_PRESET
        else bool(os.environ.get("CUBLAS_WORKSPACE_CONFIG")),
    }
    found = {"deterministic_fp32": None, "results": {}, "errors": {}, "left_out": []}
    if "switches" in sections:
        found = switches_section(steps, switches, device, preset, over)
        if not CUBLAS_PRESET:  # the harness, not this script, must have set it
            result["cublas_env_set_by_harness"] = bool(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    errors, left_out = found["errors"], found["left_out"]
    for section in [s for s in SECTIONS if s in sections and s != "switches"]:
        if over():
            left_out.append(section)
            continue
        try:
            result[section] = runs[section]()
        except Exception as exc:  # report and go on
            errors[section] = f"{type(exc).__name__}: {first_line(exc)}"
    if "second_gpu" in result:
        torch.cuda.set_device(0)
    result.update(
        status="ok" if not errors and not left_out else "partial",
        deterministic_fp32=found["deterministic_fp32"],
        results=found["results"],
        errors=errors,
        left_out_over_budget=left_out,
        wall_s=time.perf_counter() - started,
    )
    result["headline"] = headline(result)
    return result


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
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which checks to run")
    parser.add_argument("--methods", default="", help="for the methods check; default all")
    parser.add_argument("--loop-images", type=int, default=LOOP_IMAGES, help="per split")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA: skipped", file=sys.stderr)
        result = skipped("no CUDA: skipped (torch.cuda.is_available() is False)")
    else:
        sections = args.sections.split(",")
        names = [m for m in args.methods.split(",") if m]
        switches = args.switches.split(",")
        result = check(
            args.steps,
            args.budget_s,
            switches,
            device,
            args.preset,
            sections,
            names,
            args.loop_images,
        )
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    if args.json or result["status"] == "skipped":
        print(text)
    else:
        _table(result)
    if "headline" in result:
        print(result["headline"], file=sys.stderr if args.json else sys.stdout)
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
    if result.get("profile"):
        p = result["profile"]
        print(f"profile: {p['kernels_per_step']} kernels/step, GPU busy {p['gpu_busy_share']}")
    for name, cost in (result.get("methods") or {}).items():
        text = cost.get("error") or (
            f"{cost['s_per_step']:.4f} s/step, {cost['syncs_per_step']:.1f} syncs/step, "
            f"≈ {cost['paper_minutes']:.0f} min per paper run ({cost['paper_epochs']} epochs)"
        )
        print(f"{name:>12}: {text}")
    if result.get("loop"):
        loop = result["loop"]
        print(f"loop: {loop['status']}, epochs at {loop['epoch_s']} s, resumed {loop['resumed']}")
    if result.get("concurrency"):
        gains = {k: round(v["gain_vs_one"], 2) for k, v in result["concurrency"].items()}
        print(f"jobs on one GPU → throughput vs one job: {gains}")
    if result.get("second_gpu"):
        print(f"cuda:1: {result['second_gpu']}")


if __name__ == "__main__":
    sys.exit(main())
