"""The on-disk layout of runs and atomic writes.

``results/<preset>/<dataset>/<method>/seed-<n>/`` holds ``config.json``,
``epochs.jsonl``, ``checkpoint.pt`` and, once the run is finished,
``final.json``. Every file is written to a temporary name in the same
directory, flushed to disk and renamed, so a reader sees either the old file or
the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

CONFIG, EPOCHS, FINAL, CHECKPOINT = "config.json", "epochs.jsonl", "final.json", "checkpoint.pt"


def run_dir(results: Path, preset: str, dataset: str, method: str, seed: int) -> Path:
    return Path(results) / preset / dataset / method / f"seed-{seed}"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via ``write(handle)`` to a temporary file, fsync, and rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: Path) -> Any:
    with Path(path).open(encoding="utf-8") as handle:
        return json.load(handle)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite the whole JSON-lines file atomically (it is small: one line per epoch)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=False)


def is_finished(directory: Path) -> bool:
    return (Path(directory) / FINAL).is_file()


def stray_temporaries(directory: Path) -> list[Path]:
    """Temporary files left by a write that was killed; never read as results."""
    return sorted(Path(directory).glob(".*.tmp"))
