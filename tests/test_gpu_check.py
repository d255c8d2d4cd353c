"""benchmarks/gpu_check.py: skips cleanly without CUDA, and its measuring code works
(run on the CPU with a small preset, as far as a CPU allows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, whatever the machine has
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json-out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return done, json.loads(out.read_text()) if out.exists() else {}


def test_gpu_check_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    done, result = run([], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no CUDA: skipped" in done.stderr
    assert result["status"] == "skipped" and result["results"] == {}
    assert json.loads(done.stdout) == result  # the same object on stdout


def test_gpu_check_measures_and_compares_on_cpu(tmp_path: Path) -> None:
    """The CUDA path's code on the CPU: fp32 twice (determinism), a switch compared with
    fp32, and cuda_graphs refused with its plan-time error, reported, not fatal."""
    args = ["--device", "cpu", "--preset", "smoke", "--steps", "2", "--sections", "switches"]
    done, result = run([*args, "--switches", "fp32,channels_last,cuda_graphs"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert result["status"] == "partial"
    assert result["deterministic_fp32"] is True
    assert set(result["results"]) == {"fp32", "channels_last"}
    switch = result["results"]["channels_last"]
    assert switch["s_per_step"] > 0 and switch["img_per_s"] > 0
    assert 0 <= switch["max_prob_diff_vs_fp32"] < 0.05
    assert "cuda_graphs needs a CUDA device" in result["errors"]["cuda_graphs"]


def test_gpu_check_runs_its_loop_methods_and_profile_on_cpu(tmp_path: Path) -> None:
    """The new checks' code on the CPU: the real loop finishes, then resumes from its
    checkpoint instead of restarting; each method's three steps are timed and projected
    to a paper run; the CUDA-only figures are null here; the last line is the headline."""
    args = ["--device", "cpu", "--preset", "smoke", "--steps", "2", "--loop-images", "128"]
    methods = ["--methods", "darts,gdas,gdas:sampling=device,constrained:decide=device"]
    sections = ["--sections", "profile,methods,loop,concurrency", *methods]
    done, result = run([*args, *sections], tmp_path)
    assert done.returncode == 0, done.stderr
    assert result["status"] == "ok", result["errors"]
    loop = result["loop"]
    assert loop["status"] == "finished" and loop["resumed"] is True and loop["same_result"]
    assert loop["steps_per_epoch"] == 128 // 32 and loop["paper_minutes"] > 0
    variants = {"gdas:sampling=device", "constrained:decide=device"}
    assert set(result["methods"]) == {"darts", "gdas", *variants}
    gdas = result["methods"]["gdas"]
    assert gdas["paper_epochs"] == 250 and gdas["paper_minutes"] > 0
    assert all("error" not in result["methods"][v] for v in variants)  # options reached
    assert gdas["syncs_per_step"] == 0.0  # counted by CUDA only: none on a CPU
    assert result["profile"]["kernels_per_step"] is None and result["concurrency"] is None
    assert result["headline"].startswith("paper DARTS-V1 ≈ ")
    assert done.stdout.strip().splitlines()[-1] == result["headline"]
