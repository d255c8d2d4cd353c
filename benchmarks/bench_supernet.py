"""Supernet training step, fused vs reference, at the ``paper`` and ``proxy`` shapes.

One step = forward with softmax edge weights (detached, as the weight step uses
them) + cross-entropy + backward, train mode, fp32, batch 64 of 32×32 images.
Both implementations hold the same state dict. Steps alternate A B A B ... in
one process and the medians are compared, so load from other processes hits
both alike. Targets: fused ≥ 1.5× reference at both shapes.

    python benchmarks/bench_supernet.py [--json] [--repeats N] [--threads T] [--baseline-rev R]

``--baseline-rev R`` adds the fused path of ``harness/supernet.py`` as of git
revision R as a third variant (``fused@R``), to measure a change to the fused
path itself; its ratio is fused@R / fused (> 1 = the current one is faster).

This file also holds the small timing helpers the other scripts import.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from harness.config import PRESETS, Config
from harness.supernet import SuperNet

BATCH = 64  # images per step at every shape; C, N and image side: shape_of
TARGET = 1.5


# ----------------------------------------------------------------- shared helpers
SHAPE = re.compile(r"C(\d+)N(\d+)R(\d+)")


def shape_of(preset: str) -> tuple[int, int, int]:
    """(C, N, image side) of a preset (side 32 where the config has no ``resolution``), or
    of a shape written ``C16N1R16``."""
    explicit = SHAPE.fullmatch(preset)
    if explicit:
        return int(explicit[1]), int(explicit[2]), int(explicit[3])
    if preset not in PRESETS:
        raise SystemExit(
            f"unknown shape {preset!r}; a preset ({', '.join(PRESETS)}) or C<c>N<n>R<side>"
        )
    default = {"C": Config.C, "N": Config.N, "resolution": getattr(Config, "resolution", 32)}
    values = {**default, **PRESETS[preset]}
    return int(values["C"]), int(values["N"]), int(values["resolution"])


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant, called in turn (A B A B ...) ``repeats`` times."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def base_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    return parser


def apply_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def emit(
    title: str, header: list[str], rows: list[list[Any]], payload: dict, as_json: bool
) -> None:
    """Print the table, or the JSON object (with the machine) when ``as_json``."""
    if as_json:
        print(json.dumps({"benchmark": title, "machine": machine(), **payload}, indent=2))
        return
    cells = [header] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"{title}  ({cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__})")
    for i, row in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------- this benchmark
def supernet_at(rev: str) -> type:
    """The ``SuperNet`` class of ``harness/supernet.py`` at git revision ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:harness/supernet.py"], capture_output=True, text=True, check=True
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(f"supernet_{rev}", handle.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(handle.name)
    return module.SuperNet


def models(C: int, N: int, device: torch.device, baseline: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    reference = SuperNet(C, N, impl="reference").to(device)
    fused = SuperNet(C, N, impl="fused").to(device)
    fused.load_state_dict(reference.state_dict())
    nets: dict[str, torch.nn.Module] = {"reference": reference, "fused": fused}
    if baseline:
        torch.manual_seed(0)  # same initial values; the row layout may differ between revisions
        nets[f"fused@{baseline}"] = supernet_at(baseline)(C, N, impl="fused").to(device)
    return nets


def train_step(model: SuperNet, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Callable:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, w), y).backward()
        sync(x.device)

    return step


def measure(shape: str, device: torch.device, repeats: int, baseline: str = "") -> dict[str, Any]:
    C, N, side = shape_of(shape)
    nets = models(C, N, device, baseline)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, side, side, generator=generator).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=generator).to(device)
    w = (1e-3 * torch.randn(6, 5, generator=generator)).softmax(-1).to(device)
    times = interleaved({k: train_step(m, x, y, w) for k, m in nets.items()}, repeats)
    ref, fused = median(times["reference"]), median(times["fused"])
    extra: dict[str, Any] = {}
    if baseline:
        before = median(times[f"fused@{baseline}"])
        extra = {"baseline_rev": baseline, "baseline_fused_s": before}
        extra["ratio_baseline"] = before / fused
    return {
        **extra,
        "shape": shape,
        "device": device.type,
        "C": C,
        "N": N,
        "batch": BATCH,
        "reference_s": ref,
        "fused_s": fused,
        "reference_img_s": BATCH / ref,
        "fused_img_s": BATCH / fused,
        "ratio": ref / fused,
        "target": TARGET,
        "repeats": repeats,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=0)
    parser.add_argument(
        "--shapes", default="paper,proxy", help="presets or C<c>N<n>R<side>, comma-separated"
    )
    parser.add_argument("--baseline-rev", default="", help="also time the fused path at this rev")
    args = parser.parse_args()
    apply_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for shape in args.shapes.split(","):
            repeats = args.repeats or (5 if shape == "paper" and device.type == "cpu" else 20)
            results.append(measure(shape, device, repeats, args.baseline_rev))
    rows = [
        [r["device"], r["shape"], r["reference_img_s"], r["fused_img_s"], r["ratio"], r["target"]]
        for r in results
    ]
    header = ["device", "shape", "reference img/s", "fused img/s", "ratio", "target"]
    payload = {
        "results": results,
        **{f"ratio_{r['device']}_{r['shape']}": r["ratio"] for r in results},
    }
    if args.baseline_rev:
        header.append(f"fused@{args.baseline_rev} / fused")
        for row, r in zip(rows, results, strict=True):
            row.append(r["ratio_baseline"])
            payload[f"ratio_{r['device']}_{r['shape']}_vs_baseline"] = r["ratio_baseline"]
    emit("bench_supernet: training step, fused vs reference", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
