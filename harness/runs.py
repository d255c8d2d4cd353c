"""Every run of a results directory as a pandas DataFrame, for reports and notebooks.

Built on the files of :mod:`harness.results`: :func:`load_runs` gives one row per run
directory (finished, diverged, failed or unfinished), :func:`load_epochs` one row per
run and epoch. Reading results never imports torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from harness import results

ACCURACY_KEYS = {
    ("cifar10", "valid"): "c10_valid",
    ("cifar10", "test"): "c10_test",
    ("cifar100", "valid"): "c100_valid",
    ("cifar100", "test"): "c100_test",
    ("imagenet16", "valid"): "in16_valid",
    ("imagenet16", "test"): "in16_test",
}
"""NB201 (dataset, split) → the short column name used in frames and reports."""


def load_runs(results_dir: Path) -> pd.DataFrame:
    """One row per run directory: finished, diverged, failed or unfinished.

    Scalars from ``final.json`` are flattened into columns (NB201 accuracies as
    ``c10_test`` etc., the gap keys as they are, ranking statistics as
    ``rank_*``); ``epochs`` holds the ``epochs.jsonl`` records and
    ``ranking_cells`` the scored sample. A run that cannot be read is skipped
    with a warning naming it, so one corrupt file never hides the others; the
    skipped ones are listed in ``frame.attrs["unreadable"]`` (path, reason).
    """
    rows, unreadable = [], []
    for directory in results.run_dirs(results_dir):
        try:
            rows.append(_load_run(directory))
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"skipping unreadable run {directory}: {error}", stacklevel=2)
            reason = f"{type(error).__name__}: {error}"
            unreadable.append({"path": str(directory), "reason": reason})
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["preset", "dataset", "method", "seed", "status", "path"])
    else:
        frame = frame.sort_values(["preset", "dataset", "method", "seed"], ignore_index=True)
    frame.attrs["unreadable"] = unreadable
    return frame


def _load_run(directory: Path) -> dict[str, Any]:
    preset, dataset, method, seed_dir = directory.parts[-4:]
    row: dict[str, Any] = {
        "preset": preset,
        "dataset": dataset,
        "method": method,
        "seed": int(seed_dir.removeprefix("seed-")),
        "path": str(directory),
    }
    if results.is_finished(directory):  # a garbled final.json or epochs.jsonl raises BadFile
        final = results.read_final(directory)
        row.update(_final_columns(final))
        row["epochs"] = results.load_epochs(directory, final)
        row["config"] = final["config"]
        return row
    if (directory / results.FAILED).is_file():
        failed = results.read_json(directory / results.FAILED)
        row.update(status="failed", reason=failed["reason"], config=failed.get("config"))
    else:
        row.update(status="unfinished", reason="no final.json (killed or still running)")
        row["config"] = _recorded_config(directory)
    row["epochs"] = results.read_jsonl(directory / results.EPOCHS)
    return row


def _recorded_config(directory: Path) -> dict[str, Any] | None:
    """The config an unfinished run was started with; None where ``config.json`` is
    missing or unreadable (a run killed before its first write)."""
    try:
        return results.read_json_object(Path(directory) / results.CONFIG)
    except results.BadFile:
        return None


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
        "table_sha256": (final.get("table") or {}).get("sha256"),
        "code_version": (final.get("environment") or {}).get("code_version"),
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


EPOCH_KEYS = ("preset", "dataset", "method", "seed", "status")
"""The run columns each row of :func:`load_epochs` repeats."""


def load_epochs(results_dir: Path) -> pd.DataFrame:
    """One row per (run, epoch) of every run under ``results_dir``: the run's
    :data:`EPOCH_KEYS`, then the epoch record as :func:`epoch_columns`; the unreadable
    runs as :func:`load_runs` lists them."""
    runs = load_runs(results_dir)
    rows = [
        {**{key: run[key] for key in EPOCH_KEYS}, "epoch": None, **epoch_columns(record)}
        for run in runs.to_dict("records")
        for record in run.get("epochs") or []
    ]
    columns = list(EPOCH_KEYS) + ["epoch"]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)
    frame.attrs["unreadable"] = runs.attrs.get("unreadable", [])
    return frame


def epoch_columns(record: dict[str, Any]) -> dict[str, Any]:
    """One ``epochs.jsonl`` record as flat columns (see :func:`harness.api.load_epochs`)."""
    row = {key: value for key, value in record.items() if key not in ("nb201", "method")}
    nb201 = record.get("nb201") or {}
    for (dataset, split), column in ACCURACY_KEYS.items():
        row[column] = (nb201.get(dataset) or {}).get(split)
    for key, value in (record.get("method") or {}).items():
        row[f"telemetry_{key}"] = value
    return row
