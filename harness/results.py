"""The on-disk layout of runs, atomic writes, and loading all runs into a DataFrame.

``results/<preset>/<dataset>/<method>/seed-<n>/`` holds ``config.json``,
``epochs.jsonl``, ``checkpoint.pt`` and, once the run is finished,
``final.json`` (or ``failed.json`` when the last attempt raised). Every file
is written to a temporary name in the same directory, flushed to disk and
renamed, so a reader sees either the old file or the new one, never a partial
one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import torch

CONFIG, EPOCHS, FINAL, CHECKPOINT = "config.json", "epochs.jsonl", "final.json", "checkpoint.pt"
FAILED = "failed.json"
"""Why the last attempt raised; a run with it and no ``final.json`` is retried."""


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


# --- reading a whole results directory ------------------------------------------
ACCURACY_KEYS = {
    ("cifar10", "valid"): "c10_valid",
    ("cifar10", "test"): "c10_test",
    ("cifar100", "valid"): "c100_valid",
    ("cifar100", "test"): "c100_test",
    ("imagenet16", "valid"): "in16_valid",
    ("imagenet16", "test"): "in16_test",
}
"""NB201 (dataset, split) → the short column name used in frames and reports."""


def run_dirs(results: Path) -> list[Path]:
    """Every ``<preset>/<dataset>/<method>/seed-<n>`` directory, sorted."""
    return sorted(p for p in Path(results).glob("*/*/*/seed-*") if p.is_dir())


def load_runs(results: Path) -> pd.DataFrame:
    """One row per run directory: finished, diverged, failed or unfinished.

    Scalars from ``final.json`` are flattened into columns (NB201 accuracies as
    ``c10_test`` etc., the gap keys as they are, ranking statistics as
    ``rank_*``); ``epochs`` holds the ``epochs.jsonl`` records and
    ``ranking_cells`` the scored sample. A run that cannot be read is skipped
    with a warning naming it, so one corrupt file never hides the others.
    """
    rows = []
    for directory in run_dirs(results):
        try:
            rows.append(_load_run(directory))
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"skipping unreadable run {directory}: {error}", stacklevel=2)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["preset", "dataset", "method", "seed", "status", "path"])
    return frame.sort_values(["preset", "dataset", "method", "seed"], ignore_index=True)


def _load_run(directory: Path) -> dict[str, Any]:
    preset, dataset, method, seed_dir = directory.parts[-4:]
    row: dict[str, Any] = {
        "preset": preset,
        "dataset": dataset,
        "method": method,
        "seed": int(seed_dir.removeprefix("seed-")),
        "path": str(directory),
    }
    if is_finished(directory):
        row.update(_final_columns(read_json(directory / FINAL)))
    elif (directory / FAILED).is_file():
        failed = read_json(directory / FAILED)
        row.update(status="failed", reason=failed["reason"])
    else:
        row.update(status="unfinished", reason="no final.json (killed or still running)")
    row["epochs"] = read_jsonl(directory / EPOCHS)
    return row


def _final_columns(final: dict[str, Any]) -> dict[str, Any]:
    """The flat scalar columns of one ``final.json``."""
    row: dict[str, Any] = {
        "status": final["status"],
        "reason": final.get("reason"),
        "arch": final["arch"],
        "nb201_index": final.get("nb201_index"),
        "epochs_done": final.get("epochs_done"),
        "wall_s": final.get("wall_s"),
        "table_version": (final.get("table") or {}).get("version"),
    }
    for (dataset, split), column in ACCURACY_KEYS.items():
        row[column] = final["nb201"][dataset][split]
    for key, value in (final.get("gap") or {}).items():
        row[key] = _number(value) if key != "bn_mode" else value
    ranking = final.get("ranking") or {}
    for key, value in ranking.items():
        if isinstance(value, int | float):
            row[f"rank_{key}"] = _number(value)
    for key, value in (ranking.get("test") or {}).items():
        row[f"rank_test_{key}"] = _number(value)
    row["ranking_cells"] = ranking.get("cells")
    return row


def _number(value: Any) -> float:
    """JSON numbers as floats; None (not measured) as NaN."""
    return float("nan") if value is None else float(value)
