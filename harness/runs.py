"""Every run of a results directory as a pandas DataFrame, for reports and notebooks.

Built on the files of :mod:`harness.results`, asking :class:`~harness.rundir.RunDir`
whether a run finished or failed: :func:`load_runs` gives one row per run
directory (finished, diverged, failed or unfinished), :func:`load_epochs` one row per
run and epoch. Reading results never imports torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from harness import results
from harness.rundir import RunDir, flat_recorded

ACCURACY_KEYS = {
    ("cifar10", "valid"): "c10_valid",
    ("cifar10", "test"): "c10_test",
    ("cifar100", "valid"): "c100_valid",
    ("cifar100", "test"): "c100_test",
    ("imagenet16", "valid"): "in16_valid",
    ("imagenet16", "test"): "in16_test",
}
"""NB201 (dataset, split) → the short column name used in frames and reports."""
POST_SEARCH = ("select",)
"""Config fields applied after the search (to the trained supernet): each is a column of
:func:`load_runs`, and rows that differ only in them read the same supernets."""


def load_runs(results_dir: Path) -> pd.DataFrame:
    """One row per run directory: finished, diverged, failed or unfinished.

    Scalars from ``final.json`` are flattened into columns (NB201 accuracies as
    ``c10_test`` etc., the gap keys as they are, ranking statistics as
    ``rank_*``); ``epochs`` holds the ``epochs.jsonl`` records and
    ``ranking_cells`` the scored sample. A run that cannot be read is skipped
    with a warning naming it, so one corrupt file never hides the others; the
    skipped ones are listed in ``frame.attrs["unreadable"]`` (path, reason).
    Each :data:`POST_SEARCH` field is a column (``select``: the selection of the
    row's cell); :func:`by_selection` gives a row per recorded selection.
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


def _post_search(config: Any) -> dict[str, Any]:
    """The :data:`POST_SEARCH` fields of a recorded config (an older run reads as its
    old behaviour); None where the run recorded no config."""
    flat = flat_recorded(config) if isinstance(config, dict) else {}
    return {field: flat.get(field) for field in POST_SEARCH}


def _load_run(directory: Path) -> dict[str, Any]:
    preset, dataset, method, seed_dir = directory.parts[-4:]
    row: dict[str, Any] = {
        "preset": preset,
        "dataset": dataset,
        "method": method,
        "seed": int(seed_dir.removeprefix("seed-")),
        "path": str(directory),
    }
    run = RunDir(directory)
    if run.finished:  # a garbled final.json or epochs.jsonl raises BadFile
        final = results.read_final(directory)
        row.update(_final_columns(final))
        row["epochs"] = results.load_epochs(directory, final)
        row["config"] = final["config"]
        return {**row, **_post_search(row["config"])}
    if run.failed:
        failed = run.recorded_failure()
        row.update(status="failed", reason=failed["reason"], config=failed.get("config"))
    else:
        row.update(status="unfinished", reason="no final.json (killed or still running)")
        row["config"] = _recorded_config(directory)
    row["epochs"] = results.read_jsonl(directory / results.EPOCHS)
    return {**row, **_post_search(row["config"])}


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
        **_cell_columns(final),
        "epochs_done": final.get("epochs_done"),
        "wall_s": final.get("wall_s"),
        "table_version": (final.get("table") or {}).get("version"),
        "selections": final.get("selections"),
        "table_sha256": (final.get("table") or {}).get("sha256"),
        "code_version": (final.get("environment") or {}).get("code_version"),
    }
    for key, value in (final.get("gap") or {}).items():
        row[key] = _number(value) if key != "bn_mode" else value
    ranking = final.get("ranking") or {}
    for key, value in ranking.items():
        if isinstance(value, int | float):
            row[f"rank_{key}"] = _number(value)
    for key, value in (ranking.get("test") or {}).items():
        row[f"rank_test_{key}"] = _number(value)
    split_half = ranking.get("split_half") or {}
    row["rank_split_half_tau"] = _number(split_half.get("kendall_tau"))
    row["rank_split_half_reason"] = split_half.get("reason")
    row["ranking_cells"] = ranking.get("cells")
    return row


def _cell_columns(found: dict[str, Any]) -> dict[str, Any]:
    """A cell's columns: arch string, NB201 index and looked-up accuracies."""
    row = {"arch": found["arch"], "nb201_index": found.get("nb201_index")}
    for (dataset, split), column in ACCURACY_KEYS.items():
        row[column] = found["nb201"][dataset][split]
    return row


def by_selection(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, selection): a run that recorded several selections (``select=pt``
    records argmax's cell too) becomes one row per selection, with that selection's cell
    and accuracies and its config's ``select`` set to it. The rows of one supernet then
    differ only in ``select``, which the report splits rows by."""
    rows = []
    for row in frame.to_dict("records"):
        found = row.get("selections")
        if not isinstance(found, dict) or len(found) < 2 or not isinstance(row["config"], dict):
            rows.append(row)
            continue
        for name, chosen in found.items():
            config = {**row["config"], "select": name}
            rows.append({**row, **_cell_columns(chosen), "config": config, "select": name})
    expanded = pd.DataFrame(rows, columns=frame.columns)
    expanded.attrs = dict(frame.attrs)
    return expanded


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
