"""Does bf16 scoring change the one-shot ranking? fp32 vs bf16 scores of the same cells.

Loads a trained supernet (the ``checkpoint.pt`` of a finished run directory, e.g. of
``python -m harness run --preset proxy --methods darts --seeds 1``), samples cells as
:func:`harness.ranking.ranking_correlation` does, and scores each cell twice on the
run's evaluation images: fp32 and under bfloat16 autocast. From the per-image hits of
one forward per cell and precision it reports:

* τ(fp32, bf16) — how much bf16 reorders the cells;
* the score's own noise: τ between the scores on the two halves of the images
  (split-half), for fp32 and for bf16 — how much the ranking moves with the image
  sample alone;
* τ of each against the NB201 truth (CIFAR-10 valid), with a bootstrap s.d. over cells;
* seconds per 1,000 cells of each precision (interleaved per cell).

Criterion for making bf16 the default (issue 16): τ(fp32, bf16) at least 0.1 above the
fp32 split-half τ, and τ against the truth moved by less than its bootstrap s.d.

    python benchmarks/bench_rank_bf16.py RUN_DIR [--cells 1000] [--json]
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_supernet import apply_threads, base_parser, emit

from harness import config as cfg
from harness import metrics
from harness.benchmark import Benchmark
from harness.data import build_search_data
from harness.paths import find_data_dir
from harness.provenance import cpu_fingerprint
from harness.ranking import rank_generator, sample_cells
from harness.supernet import NUM_OPS, SuperNet


@torch.no_grad()
def hits(
    model: SuperNet, op_indices: tuple[int, ...], images: torch.Tensor, labels: torch.Tensor
) -> np.ndarray:
    """Per-image correctness of one cell (one batch: the whole eval set, as the run)."""
    weights = F.one_hot(torch.tensor(op_indices), NUM_OPS).to(torch.float32)
    logits = model(images, weights, weights.bool())
    return (logits.argmax(1) == labels).numpy()


def bootstrap_sd(scores: np.ndarray, truth: np.ndarray, draws: int = 200) -> float:
    rng = np.random.default_rng(0)
    taus = []
    for _ in range(draws):
        pick = rng.integers(0, len(scores), len(scores))
        taus.append(metrics.kendall_tau(scores[pick], truth[pick]))
    return float(np.std(taus))


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    parser.add_argument("--cells", type=int, default=1000)
    args = parser.parse_args()
    apply_threads(args.threads)
    known = {f.name for f in fields(cfg.Config)}
    config = cfg.Config(**{k: v for k, v in _recorded(args.run_dir).items() if k in known})
    data_dir = find_data_dir()
    data = build_search_data(
        data_dir,
        "cpu",
        config.batch_size,
        config.train_size,
        config.valid_size,
        config.gap_eval_size,
        config.seed,
    )
    size = config.rank_eval_size or config.gap_eval_size
    images, labels = data.eval_images[:size], data.eval_labels[:size]
    model = SuperNet(config.C, config.N, data.num_classes, config.impl, config.track_running_stats)
    state = torch.load(args.run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    cells = sample_cells(args.cells, rank_generator(config.seed))
    hit = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for cell in cells:
        for name in ("fp32", "bf16"):
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=name == "bf16"):
                hit[name].append(hits(model, cell.op_indices, images, labels))
            seconds[name] += time.perf_counter() - start
    half = size // 2
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in hit.items()}
    scores = {name: 100 * a.mean(1) for name, a in arrays.items()}
    codes = np.array([c.code for c in cells], dtype=np.int64)
    truth = Benchmark.load(data_dir).accuracy(codes, "cifar10", "valid")
    split = {
        name: metrics.kendall_tau(a[:, :half].mean(1), a[:, half:].mean(1))
        for name, a in arrays.items()
    }
    payload = {
        "run_dir": str(args.run_dir),
        "cells": len(cells),
        "eval_images": size,
        "cpu": cpu_fingerprint(),
        "tau_fp32_bf16": metrics.kendall_tau(scores["fp32"], scores["bf16"]),
        "split_half_tau_fp32": split["fp32"],
        "split_half_tau_bf16": split["bf16"],
        "tau_truth_fp32": metrics.kendall_tau(scores["fp32"], truth),
        "tau_truth_bf16": metrics.kendall_tau(scores["bf16"], truth),
        "tau_truth_bootstrap_sd": bootstrap_sd(scores["fp32"], truth),
        "cells_score_changed": int((scores["fp32"] != scores["bf16"]).sum()),
        "mean_abs_score_change": float(np.abs(scores["fp32"] - scores["bf16"]).mean()),
        "images_flipped_fraction": float((arrays["fp32"] != arrays["bf16"]).mean()),
        "s_per_1000_cells": {k: v * 1000 / len(cells) for k, v in seconds.items()},
    }
    moved = abs(payload["tau_truth_bf16"] - payload["tau_truth_fp32"])
    payload["adopt_bf16"] = bool(
        payload["tau_fp32_bf16"] >= split["fp32"] + 0.1
        and moved < payload["tau_truth_bootstrap_sd"]
    )
    payload["ratio_speed_bf16"] = seconds["fp32"] / seconds["bf16"]
    rows = [[k, v] for k, v in payload.items() if isinstance(v, int | float | bool)]
    emit(
        "bench_rank_bf16: fp32 vs bf16 one-shot scores", ["what", "value"], rows, payload, args.json
    )


def _recorded(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


if __name__ == "__main__":
    main()
