"""What produced a result: code version, device and library versions."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harness
from harness.paths import PROJECT_ROOT


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return done.stdout.strip()


@functools.cache
def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` inside a git checkout, else the package version."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return harness.__version__
    return f"{harness.__version__}+g{commit}{'.dirty' if dirty else ''}"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
"""The /proc/cpuinfo flags that decide which kernels oneDNN, MKL and ATen pick."""
NUMERICS_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS")
"""Environment variables that change which floating-point kernels run."""


@functools.cache
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """(model name, the ISA flags of interest) from /proc/cpuinfo; unknowns where absent."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return model, ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, tuple(flag for flag in ISA_FLAGS if flag in flags)


def cpu_fingerprint() -> dict[str, Any]:
    """What decides a CPU result's last bits: the CPU, its ISA, torch, threads, pins."""
    model, isa = _cpuinfo()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return {
        "cpu": model,
        "isa": list(isa),
        "aten_capability": capability,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "env": {name: os.environ[name] for name in NUMERICS_ENV if name in os.environ},
    }


def environment(device: torch.device) -> dict[str, Any]:
    import pandas
    import scipy

    return {
        "code_version": code_version(),
        "device": device_description(device),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scipy": scipy.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cpu": cpu_fingerprint(),
    }
