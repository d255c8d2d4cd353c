"""Running methods end to end through ``harness.cli.main`` at a smoke size, and the
telemetry keys each method's ``epochs.jsonl`` lines must carry.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import cli

# --- every method end to end -----------------------------------------------------------
TELEMETRY = {
    "cdao": {"lambda_t", "divergence", "loss_gap"},
    "da2s": {"entropy", "lambda_t"},
    "constrained": {"alpha_step_rate", "threshold", "fisher_ewma", "pruned_ops"},
    "rdarts": {"reg_distance", "reg_weight", "stage_disagreement", "stage_archs"},
    "amended": {"amend_ratio"},
    "sdarts_rs": {"epsilon"},
    "sdarts_adv": {"epsilon"},
    "darts_minus": {"beta"},
    "beta_darts": {"lambda_t", "beta_decay"},
    "fairdarts": {"zero_one", "sigmoid_max", "above_threshold"},
    "gdas": {"tau"},
    "snas": {"tau"},
    "drnas": {"concentration_sum", "partial_channels", "stage"},
}
VARIANTS = [
    "cdao.two_pass=true",
    "cdao.weights_use_blend=true",
    "da2s.single_level=true",
    "da2s.alpha_optimizer=sgd",
    "da2s.interval_frac=0",
    "constrained.activation=crb",
    "constrained.regularizer=admm",
    "rdarts.adapt=dual",
    "amended.normalize_c=0.5",
    "fairdarts.derive=argmax",
    "drnas.progressive=true",
    "drnas.reg_type=kl",
]


def run_cli(names: list[str], results: Path, overrides: list[str]) -> None:
    argv = ["run", "--methods", ",".join(names), "--seeds", "1", "--preset", "smoke"]
    argv += ["--results", str(results)]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0


def check_runs(names: list[str], results: Path, epochs: int) -> None:
    for name in names:
        directory = results / "smoke" / "cifar10" / name / "seed-0"
        final = json.loads((directory / "final.json").read_text())
        assert final["status"] == "finished", name
        lines = (directory / "epochs.jsonl").read_text().splitlines()
        assert len(lines) == epochs
        telemetry = json.loads(lines[-1])["method"]
        assert TELEMETRY.get(name, set()) <= set(telemetry), name
