"""Seconds to score 1,000 cells with the supernet at the proxy shape (harness.ranking).

Each cell is scored by :func:`harness.ranking.score_cells` (one-hot edge weights,
the fused path skipping every zero op) on the fixed evaluation images, as a
``proxy`` run does at its end: ``rank_eval_size`` images (256) in batches of
``gap_eval_batch`` (256). The supernet is untrained — the cost does not depend on
the weights. ``--profile`` adds a torch.profiler table of a few cells;
``--options K`` times, on K cells and interleaved, what could close the gap
(inference_mode, channels_last, bf16 autocast, fewer images), as s per 1000 cells.
Target: < 60 s for 1,000 cells.

    python benchmarks/bench_ranking.py [--json] [--cells 1000] [--images N] [--profile]
                                       [--options 50]
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import torch
from bench_supernet import apply_threads, base_parser, emit, interleaved, median
from torch.profiler import ProfilerActivity, profile

from harness import config as cfg
from harness import methods
from harness.data import build_search_data
from harness.paths import find_data_dir
from harness.ranking import rank_generator, sample_cells, score_cells
from harness.supernet import SuperNet

TARGET_S = 60.0
TARGET_CELLS = 1000


def profile_table(
    model: SuperNet, cells: list, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        score_cells(model, cells, images, labels, batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def options(
    model: SuperNet,
    cells: list,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    repeats: int,
) -> dict[str, float]:
    """Seconds per 1000 cells of each alternative, timed in turn on the same cells."""
    fast = SuperNet(model.stem[0].out_channels, model.N)
    fast.load_state_dict(model.state_dict())
    fast.to_channels_last()
    images_cl = images.contiguous(memory_format=torch.channels_last)
    few = min(64, images.shape[0])

    def under(context: Callable, fn: Callable) -> Callable[[], None]:
        def call() -> None:
            with context():
                fn()

        return call

    variants = {
        "default": lambda: score_cells(model, cells, images, labels, batch),
        "inference_mode": under(
            torch.inference_mode, lambda: score_cells(model, cells, images, labels, batch)
        ),
        "channels_last": lambda: score_cells(fast, cells, images_cl, labels, batch),
        "bf16 autocast": under(
            lambda: torch.autocast("cpu", torch.bfloat16),
            lambda: score_cells(model, cells, images, labels, batch),
        ),
        "channels_last + bf16": under(
            lambda: torch.autocast("cpu", torch.bfloat16),
            lambda: score_cells(fast, cells, images_cl, labels, batch),
        ),
        f"{few} images": lambda: score_cells(model, cells, images[:few], labels[:few], batch),
    }
    times = interleaved(variants, repeats)
    return {name: median(t) * TARGET_CELLS / len(cells) for name, t in times.items()}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("--cells", type=int, default=TARGET_CELLS, help="cells to score")
    parser.add_argument("--images", type=int, default=0, help="eval images; 0 = the preset's")
    parser.add_argument("--profile", action="store_true", help="print a profile of 20 cells")
    parser.add_argument("--options", type=int, default=0, help="time alternatives on K cells")
    args = parser.parse_args()
    apply_threads(args.threads)
    config = cfg.resolve("proxy", "darts", {}, None, 0, methods.option_keys())
    data = build_search_data(
        find_data_dir(),
        "cpu",
        config.batch_size,
        config.train_size,
        config.valid_size,
        config.gap_eval_size,
        config.seed,
    )
    size = args.images or config.rank_eval_size or config.gap_eval_size
    images, labels = data.eval_images[:size], data.eval_labels[:size]
    torch.manual_seed(0)
    model = SuperNet(config.C, config.N)
    cells = sample_cells(args.cells, rank_generator(0))
    score_cells(model, cells[:5], images, labels, config.gap_eval_batch)  # warm-up
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        score_cells(model, cells, images, labels, config.gap_eval_batch)
        runs.append(time.perf_counter() - start)
    seconds = min(runs)
    per_1000 = seconds * TARGET_CELLS / len(cells)
    payload = {
        "shape": "proxy",
        "cells": len(cells),
        "images": int(labels.shape[0]),
        "batch": config.gap_eval_batch,
        "seconds": seconds,
        "seconds_per_1000_cells": per_1000,
        "target_s": TARGET_S,
        "ratio_target": TARGET_S / per_1000,
    }
    header = ["variant", "cells", "images/cell", "s per 1000 cells", "target s"]
    rows = [["score_cells", len(cells), int(labels.shape[0]), per_1000, TARGET_S]]
    if args.options:
        alternatives = options(
            model, cells[: args.options], images, labels, config.gap_eval_batch, 3
        )
        payload["options_s_per_1000_cells"] = alternatives
        for name, seconds in alternatives.items():
            payload["ratio_option_" + re.sub(r"\W+", "_", name).strip("_")] = TARGET_S / seconds
        rows += [[name, args.options, "", v, TARGET_S] for name, v in alternatives.items()]
    emit("bench_ranking: one-shot scoring at the proxy shape", header, rows, payload, args.json)
    if args.profile and not args.json:
        print(profile_table(model, cells[:20], images, labels, config.gap_eval_batch))


if __name__ == "__main__":
    main()
