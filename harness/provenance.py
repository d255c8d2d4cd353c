"""What produced a result: code version, device and library versions."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
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
    }
