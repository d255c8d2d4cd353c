"""The CPU-preset calibration study (issue 15): which reductions of the NB201 protocol
keep the search's measurements meaningful on a 2-core CPU, at what cost.

One factor at a time from the ``proxy`` preset, then combinations (EcoNAS-style). Each
setting runs ``darts`` and ``rsps`` (uniform single-path training, the ranking's
control) with seed 0 through the real CLI, one thread per run, two runs at a time,
into ``results/calibration/<setting>/``; the harness resumes whatever is done. Then
``table`` reads the runs and writes ``reports/calibration/``: ``study.csv``,
``study.md`` and two plots (τ against cost, skip connections against epoch).

The whole-split rows (issue 27, :data:`WHOLE_SPLIT`) run both methods on the whole
25k + 25k split at 16 px, width C = 8 or 16, depth N = 1 or 2, 10 / 20 / 30 epochs, rank
200 cells (τ's standard error ≈ 0.05), and scale α's learning rate so that α can travel
as far as in the paper protocol (:func:`travel_matched_a_lr`).

    python benchmarks/calibration.py run [--only NAME,...] [--jobs J]
    python benchmarks/calibration.py table
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results" / "calibration"
OUT = ROOT / "reports" / "calibration"
METHODS = ("darts", "rsps")
MEASURE = {
    # every setting measures the same way: 1,024 fixed search-valid images for the gap
    # and the ranking (four eval batches, so the split-half τ has 512 images a side)
    "threads": 1,
    "gap_eval_size": 1024,
    "gap_eval_batch": 256,
    "rank_samples": 100,
    "rank_eval_size": 1024,
    "rsps.eval_size": 256,
    # K = 20, not the published 100: rsps scores its K candidates at every epoch, which at
    # K = 100 cost more than its training; the study's rsps measure is the ranking τ
    # (100 cells, scored apart from K). The `proxy` setting ran with K = 100.
    "rsps.candidates": 20,
}
R16_5K = {"resolution": 16, "train_size": 5000, "valid_size": 5000}
SETTINGS: list[tuple[str, str, dict[str, Any]]] = [
    ("proxy", "the proxy preset (C8 N1, 32 px, 1k+1k, 10 ep, α lr 3e-2)", {}),
    ("r16", "16 px", {"resolution": 16}),
    ("r16-5k", "16 px, 5k+5k", R16_5K),
    ("r16-10k", "16 px, 10k+10k", {**R16_5K, "train_size": 10000, "valid_size": 10000}),
    ("r16-5k-N2", "16 px, 5k+5k, N=2", {**R16_5K, "N": 2}),
    ("r16-5k-warm", "16 px, 5k+5k, 3 warm-up epochs", {**R16_5K, "warmup_epochs": 3}),
    ("r16-5k-bf16", "16 px, 5k+5k, bf16", {**R16_5K, "bf16": True}),
]
LONG = {"resolution": 16, "train_size": 25000, "valid_size": 25000, "epochs": 30}
RSPS_ONLY: list[tuple[str, str, dict[str, Any]]] = [
    # rsps trains one path per step and has no α step: about a fifth of darts' cost per
    # image, so it can afford the budget that tests whether shared weights rank at all
    (
        "r16-25k-ep10",
        "16 px, 25k+25k (the whole split), 10 epochs: rsps only",
        {**LONG, "epochs": 10},
    ),
    ("r16-25k-ep30", "16 px, 25k+25k (the whole split), 30 epochs: rsps only", LONG),
    (
        "r16-25k-ep60",
        "16 px, 25k+25k (the whole split), 60 epochs: rsps only",
        {**LONG, "epochs": 60},
    ),
    (
        "25k-ep10",
        "32 px, 25k+25k, 10 epochs: rsps only (the issue's uniform diagnostic, as a run)",
        {"train_size": 25000, "valid_size": 25000},
    ),
]

PAPER_ALPHA_TRAVEL = 19_550 * 3e-4
"""α steps × Adam lr of the paper protocol (50 epochs × 391 steps at 3e-4): Adam moves an
α entry by about its lr per step while the gradient's sign holds (docs/presets.md)."""
WHOLE_SPLIT_STEPS = 25_000 // 64  # α steps per epoch on the whole split at batch 64


def travel_matched_a_lr(epochs: int) -> float:
    """The α lr that lets α travel as far in ``epochs`` whole-split epochs as in the paper."""
    return float(f"{PAPER_ALPHA_TRAVEL / (WHOLE_SPLIT_STEPS * epochs):.2e}")


def _whole(width: int, depth: int, epochs: int) -> tuple[str, str, dict[str, Any]]:
    a_lr = travel_matched_a_lr(epochs)
    name = f"w16-C{width}-N{depth}-ep{epochs}"
    label = f"16 px, 25k+25k, C={width}, N={depth}, {epochs} epochs, α lr {a_lr:g}, 200 cells"
    overrides = {
        "resolution": 16, "train_size": 25000, "valid_size": 25000, "C": width, "N": depth,
        "epochs": epochs, "a_lr": a_lr, "rank_samples": 200,
    }  # fmt: skip
    return name, label, overrides


RSPS_SEEDS = 3
"""rsps seeds per whole-split setting: one seed's τ moved from +0.23 to −0.14 on the same
100 cells between two code versions (docs/presets.md), so a row's τ is a mean over seeds."""

WHOLE_SPLIT: list[tuple[str, str, dict[str, Any]]] = [
    # cheapest first: a sweep that is cut short still leaves the most informative rows
    _whole(8, 1, 10),
    _whole(16, 1, 10),
    _whole(8, 1, 20),
    _whole(16, 1, 20),
    _whole(8, 1, 30),
    _whole(16, 1, 30),
    _whole(8, 2, 10),
    _whole(16, 2, 10),
]


def command(
    name: str,
    overrides: dict[str, Any],
    methods: tuple[str, ...],
    jobs: int = 2,
    seeds: str = "1",
) -> list[str]:
    """The ``harness run`` line of one setting; ``seeds`` as the CLI takes it (``1``: seed
    0; ``1,2``: seeds 1 and 2)."""
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items()]
    args = [sys.executable, "-m", "harness", "run", "--preset", "proxy"]
    args += ["--methods", ",".join(methods), "--seeds", seeds, "--jobs", str(jobs)]
    args += ["--results", str(RUNS / name)]
    for item in sets:
        args += ["--set", item]
    return args


def run(only: set[str] | None, jobs: int = 2) -> None:
    whole = {n for n, _, _ in WHOLE_SPLIT}
    for name, _, overrides, methods in [
        *((n, w, o, METHODS) for n, w, o in SETTINGS),
        *((n, w, o, ("rsps",)) for n, w, o in RSPS_ONLY),
        *((n, w, o, METHODS) for n, w, o in WHOLE_SPLIT),
    ]:
        if only and name not in only:
            continue
        measure = {
            k: v for k, v in MEASURE.items() if not (name == "proxy" and k.endswith("candidates"))
        }
        if any(load(name, method) is None for method in methods):
            _run_one(name, command(name, {**measure, **overrides}, methods, jobs))
        extra = [s for s in range(1, RSPS_SEEDS) if load(name, "rsps", s) is None]
        if name in whole and extra:
            seeds = ",".join(map(str, extra)) + ("," if len(extra) == 1 else "")
            _run_one(name, command(name, {**measure, **overrides}, ("rsps",), jobs, seeds))


def _run_one(name: str, args: list[str]) -> None:
    """One ``harness run`` of the study; finished runs it names are skipped by the harness."""
    print(f"== {name}: {' '.join(args[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT)
    print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)


def load(
    name: str, method: str, seed: int = 0, runs_root: Path = RUNS
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    runs = list((runs_root / name).glob(f"*/cifar10/{method}/seed-{seed}/final.json"))
    if not runs:
        return None
    final = json.loads(runs[0].read_text())
    epochs = [json.loads(line) for line in runs[0].with_name("epochs.jsonl").open()]
    return final, epochs


def skip_count(arch: str) -> int:
    return arch.count("skip_connect")


def row(name: str, label: str, runs_root: Path = RUNS) -> dict[str, Any] | None:
    darts, rsps = load(name, "darts", 0, runs_root), load(name, "rsps", 0, runs_root)
    if darts is None and rsps is None:
        return None
    out: dict[str, Any] = {"setting": name, "what": label, "skip_by_epoch": []}
    if darts is not None:
        out |= _darts_columns(*darts)
    if rsps is not None:
        out |= _rsps_columns(rsps[0], _rsps_taus(name, runs_root))
    return out


def _rsps_taus(name: str, runs_root: Path) -> list[tuple[float, float]]:
    """Each finished rsps seed's (accuracy τ, loss τ), seed 0 first."""
    taus = []
    for seed in range(RSPS_SEEDS):
        if (found := load(name, "rsps", seed, runs_root)) is not None:
            rank = found[0].get("ranking", {})
            taus.append((rank["kendall_tau"], rank["kendall_tau_neg_loss"]))
    return taus


def _rsps_columns(final: dict[str, Any], taus: list[tuple[float, float]]) -> dict[str, Any]:
    """Seed 0's costs and accuracies; τ as the mean over the seeds that ran, with their
    spread (sample standard deviation; none for one seed)."""
    rank = final.get("ranking", {})
    acc, loss = [t[0] for t in taus], [t[1] for t in taus]
    return {
        "rsps_wall_s": round(final["wall_s"]),
        "rsps_cpu_s": round(final["cpu_s"] + rank.get("cpu_s", 0)),
        "rsps_supernet_acc": round(final["gap"]["supernet_valid_acc"], 1),
        "rsps_seeds": len(taus),
        "rsps_tau": _round(sum(acc) / len(acc)),
        "rsps_tau_sd": _round(statistics.stdev(acc)) if len(acc) > 1 else None,
        "rsps_tau_loss": _round(sum(loss) / len(loss)),
        "rsps_split_half_tau": _round(rank.get("split_half", {}).get("kendall_tau")),
        "rsps_c10_test": round(final["nb201"]["cifar10"]["test"], 2),
    }


def _darts_columns(final: dict[str, Any], epochs: list[dict[str, Any]]) -> dict[str, Any]:
    gap, rank = final["gap"], final.get("ranking", {})
    return {
        "darts_wall_s": round(final["wall_s"]),
        "darts_cpu_s": round(final["cpu_s"] + rank.get("cpu_s", 0)),
        "supernet_acc": round(gap["supernet_valid_acc"], 1),
        "onehot_acc": round(gap["onehot_valid_acc"], 1),
        "alpha_max_prob": round(gap["alpha_max_prob"], 3),
        "alpha_entropy": round(gap["alpha_entropy"], 3),
        "skip_edges": skip_count(final["arch"]),
        "none_edges": final["arch"].count("none"),
        "darts_c10_test": round(final["nb201"]["cifar10"]["test"], 2),
        "darts_tau": _round(rank.get("kendall_tau")),
        "darts_split_half_tau": _round(rank.get("split_half", {}).get("kendall_tau")),
        "skip_by_epoch": [skip_count(e["arch"]) for e in epochs],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


COLUMNS = (
    "setting", "darts_cpu_s", "rsps_cpu_s", "supernet_acc", "onehot_acc", "alpha_max_prob",
    "alpha_entropy", "skip_edges", "none_edges", "darts_c10_test", "darts_tau",
    "darts_split_half_tau", "rsps_supernet_acc", "rsps_seeds", "rsps_tau", "rsps_tau_sd",
    "rsps_tau_loss", "rsps_split_half_tau", "rsps_c10_test",
)  # fmt: skip


def table(runs_root: Path = RUNS, out: Path = OUT, plots: bool = True) -> None:
    """``study.csv`` and ``study.md`` (and the plots) from the runs under ``runs_root``."""
    every = SETTINGS + RSPS_ONLY + WHOLE_SPLIT
    rows = [r for n, label, _ in every if (r := row(n, label, runs_root)) is not None]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "study.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS + ("what",), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "Settings:", ""] + [f"- `{n}`: {label}" for n, label, _ in every]
    (out / "study.md").write_text("\n".join(lines) + "\n")
    if plots:
        _plots(rows, out)
    print("\n".join(lines))


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)


def _plots(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, wall, marker in (("darts_tau", "darts_cpu_s", "o"), ("rsps_tau", "rsps_cpu_s", "s")):
        points = [(r[wall], r[key], r["setting"]) for r in rows if r.get(key) is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=key)
        for x, y, name in points:
            ax.annotate(name, (x, y), fontsize=6)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xlabel="CPU s per run (search + ranking)", ylabel="Kendall τ", xscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "tau_vs_cost.png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in (r for r in rows if r["skip_by_epoch"]):
        ax.plot(range(1, len(r["skip_by_epoch"]) + 1), r["skip_by_epoch"], label=r["setting"])
    ax.set(xlabel="epoch", ylabel="skip_connect edges in darts' cell", ylim=(-0.2, 6.2))
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "skip_by_epoch.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("run", "table"))
    parser.add_argument("--only", help="comma-separated setting names")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    args = parser.parse_args()
    if args.what == "run":
        run(set(args.only.split(",")) if args.only else None, args.jobs)
    else:
        table()


if __name__ == "__main__":
    main()
