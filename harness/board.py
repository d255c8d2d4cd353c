"""TensorBoard logging of a run's epoch records (``--set tensorboard=true``).

Each epoch's record, the line ``epochs.jsonl`` gets, is also written as TensorBoard
events under ``<run directory>/tensorboard/``: losses, supernet accuracies (continuous
and one-hot), the gap, α per edge and op, the derived cell (as text) and its NB201
accuracies, the learning rate and the method's telemetry, so that
``tensorboard --logdir results`` shows a sweep while it searches. ``epochs.jsonl``
stays the record; the events are a view of it. Needs the ``tensorboard`` extra.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.space import EDGES, OPS

SUBDIR = "tensorboard"
GROUPS = (("gap_", "gap"), ("alpha_", "alpha"), ("_loss", "loss"), ("_acc", "accuracy"))
"""A record key's TensorBoard section: the first pattern it contains names it."""
NOT_SCALARS = ("epoch", "alpha", "arch", "nb201", "method")
NB201_NAMES = {"cifar10": "c10", "cifar100": "c100", "imagenet16": "in16"}

WriteEpoch = Callable[[dict[str, Any]], None]


def require() -> None:
    """Refuse ``tensorboard=true`` before anything runs when the package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(
            "tensorboard=true needs the tensorboard package: pip install -e '.[tensorboard]'"
        )


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers by TensorBoard tag (``section/name``); None and NaN left out."""
    tags: dict[str, Any] = {}
    for key, value in record.items():
        if key not in NOT_SCALARS:
            tags[_section(key)] = value
    for dataset, splits in (record.get("nb201") or {}).items():
        for split, accuracy in splits.items():
            tags[f"nb201/{NB201_NAMES.get(dataset, dataset)}_{split}"] = accuracy
    for row, (target, source) in zip(record.get("alpha") or [], EDGES, strict=False):
        for op, probability in zip(OPS, row, strict=True):
            tags[f"alpha_edge_{source}-{target}/{op}"] = probability
    for key, value in (record.get("method") or {}).items():
        tags[f"method/{key}"] = value
    return {tag: float(v) for tag, v in tags.items() if _is_number(v) and not math.isnan(v)}


def _section(key: str) -> str:
    for pattern, section in GROUPS:
        if pattern in key:
            return f"{section}/{key}"
    return f"run/{key}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@contextmanager
def epoch_writer(enabled: bool, directory: Path, done_epochs: int) -> Iterator[WriteEpoch]:
    """A function that writes one epoch record as events (a no-op when not ``enabled``).

    Events of epochs after ``done_epochs`` (left by an attempt killed before its
    checkpoint) are purged, so a resumed run shows each epoch once.
    """
    if not enabled:
        yield lambda record: None
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(Path(directory) / SUBDIR), purge_step=done_epochs + 1)

    def write(record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for tag, value in scalars(record).items():
            writer.add_scalar(tag, value, step)
        if record.get("arch"):
            writer.add_text("cell", record["arch"], step)
        writer.flush()

    try:
        yield write
    finally:
        writer.close()
