"""Supernet training step, fused vs reference, at the ``paper`` and ``proxy`` shapes.

One step = forward with softmax edge weights (detached, as the weight step uses
them) + cross-entropy + backward, train mode, fp32, batch 64 of 32×32 images.
Both implementations hold the same state dict. Steps alternate A B A B ... in
one process and the medians are compared, so load from other processes hits
both alike. Targets: fused ≥ 1.5× reference at both shapes.

    python benchmarks/bench_supernet.py [--json] [--repeats N] [--threads T]

This file also holds the small timing helpers the other scripts import.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from harness.supernet import SuperNet

SHAPES: dict[str, tuple[int, int]] = {"paper": (16, 5), "proxy": (8, 1)}
"""Preset name → (C, N); batch 64 of 32×32 images for both."""
BATCH = 64
TARGET = 1.5


# ----------------------------------------------------------------- shared helpers
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
def models(C: int, N: int, device: torch.device) -> dict[str, SuperNet]:
    torch.manual_seed(0)
    reference = SuperNet(C, N, impl="reference").to(device)
    fused = SuperNet(C, N, impl="fused").to(device)
    fused.load_state_dict(reference.state_dict())
    return {"reference": reference, "fused": fused}


def train_step(model: SuperNet, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Callable:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x, w), y).backward()
        sync(x.device)

    return step


def measure(shape: str, device: torch.device, repeats: int) -> dict[str, Any]:
    C, N = SHAPES[shape]
    nets = models(C, N, device)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=generator).to(device)
    w = (1e-3 * torch.randn(6, 5, generator=generator)).softmax(-1).to(device)
    times = interleaved({k: train_step(m, x, y, w) for k, m in nets.items()}, repeats)
    ref, fused = median(times["reference"]), median(times["fused"])
    return {
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
    parser.add_argument("--shapes", default="paper,proxy", help="comma-separated: paper,proxy")
    args = parser.parse_args()
    apply_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for shape in args.shapes.split(","):
            repeats = args.repeats or (5 if shape == "paper" and device.type == "cpu" else 20)
            results.append(measure(shape, device, repeats))
    rows = [
        [r["device"], r["shape"], r["reference_img_s"], r["fused_img_s"], r["ratio"], r["target"]]
        for r in results
    ]
    header = ["device", "shape", "reference img/s", "fused img/s", "ratio", "target"]
    payload = {
        "results": results,
        **{f"ratio_{r['device']}_{r['shape']}": r["ratio"] for r in results},
    }
    emit("bench_supernet: training step, fused vs reference", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
