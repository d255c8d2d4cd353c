"""Convert official NAS-Bench-201 / NATS-Bench files into the harness's table.

The harness scores cells against one small CSV (see :mod:`harness.benchmark`);
this module rebuilds that CSV from the benchmark's own files, read with the
official packages (``nats_bench``, ``nas_201_api``) so that the split semantics
are theirs, not a re-implementation. Accepted sources:

* a NATS-Bench topology directory (``meta.pickle.pbz2`` plus one
  ``NNNNNN.pickle.pbz2`` record per cell, e.g. ``NATS-tss-v1_0-3ffb9-simple``);
* a NATS-Bench topology single file (``NATS-tss-v1_0-3ffb9.pickle.pbz2``);
* a NAS-Bench-201 ``.pth`` file (``NAS-Bench-201-v1_0-e61699.pth`` or ``v1_1``).

Always ``hp='200'`` (200-epoch training), last epoch, mean over seeds
(``is_random=False``); the official API defaults (12 epochs, one random seed)
are exactly what the harness avoids.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from harness.benchmark import TABLE_COLUMNS
from harness.errors import UsageError
from harness.space import ArchStringError, Cell

OFFICIAL_DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")

ACCURACY_SOURCES: dict[str, tuple[str, str]] = {
    "cifar10_valid_acc": ("cifar10-valid", "valid-accuracy"),  # x-valid
    "cifar10_test_acc": ("cifar10", "test-accuracy"),  # ori-test
    "cifar100_valid_acc": ("cifar100", "valid-accuracy"),  # x-valid
    "cifar100_test_acc": ("cifar100", "test-accuracy"),  # x-test
    "cifar100_valtest_acc": ("cifar100", "valtest-accuracy"),  # ori-test
    "imagenet16_valid_acc": ("ImageNet16-120", "valid-accuracy"),
    "imagenet16_test_acc": ("ImageNet16-120", "test-accuracy"),
    "imagenet16_valtest_acc": ("ImageNet16-120", "valtest-accuracy"),
}
"""Table column → (official dataset, key of the official ``get_more_info`` dict)."""

NB201FILE_SOURCES: dict[str, tuple[str, str]] = {
    "nb201file_cifar10_valid_acc": ("cifar10-valid", "valid-accuracy"),
    "nb201file_cifar10_test_acc": ("cifar10", "test-accuracy"),
    "nb201file_cifar10valid_test_acc": ("cifar10-valid", "test-accuracy"),  # ori-test
}
"""The CIFAR-10 figures of a NAS-Bench-201 ``.pth`` file (NaN for NATS-Bench sources)."""

COST_SOURCES: dict[str, tuple[str, str]] = {
    "params_m": ("cifar10", "params"),
    "flops_m": ("cifar10", "flops"),
    "params_m_cifar100": ("cifar100", "params"),
    "flops_m_cifar100": ("cifar100", "flops"),
    "params_m_imagenet16": ("ImageNet16-120", "params"),
    "flops_m_imagenet16": ("ImageNet16-120", "flops"),
}
"""Table column → (official dataset, key of ``ArchResults.get_compute_costs``)."""

ACCEPTED = (
    "a NATS-Bench topology directory (meta.pickle.pbz2 + NNNNNN.pickle.pbz2 records), "
    "a NATS-Bench topology file (*.pickle.pbz2) or a NAS-Bench-201 .pth file"
)
_RECORD_RE = re.compile(r"^(\d+)\.pickle\.pbz2$")
_NB201_CHUNK = 256
_READ_ERRORS = (
    AssertionError,
    EOFError,
    KeyError,
    OSError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
)
"""What the official loaders raise on a damaged or foreign file."""


def check_output(out: Path, force: bool) -> None:
    """Refuse, before reading anything, an ``--out`` that is a directory, or an existing
    file without ``force`` (a table is not replaced by accident)."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give the CSV file to write")
    if out.exists() and not force:
        raise UsageError(f"--out {out} exists; give --force to replace it, or another path")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is not a directory")


def convert_benchmark(src: Path | str, out: Path | str | None = None) -> pd.DataFrame:
    """Read an official benchmark file into a frame with the table's columns.

    One row per cell the source holds, sorted by index. Columns the source cannot
    provide are NaN: the ``nb201file_*`` columns for NATS-Bench sources (they
    are, by definition, the figures of a NAS-Bench-201 ``.pth`` file), and any
    dataset or split missing for a cell (e.g. ``cifar10-valid`` on ``ori-test``
    in some files). ``n_seeds_200ep`` is the smallest number of 200-epoch seeds
    over the four official datasets. FLOPs are as the source reports them: the
    NATS-Bench files count fewer FLOPs than the distilled table's ``flops_m``
    (e.g. 15.65 vs 17.96 M for cell 0); params and accuracies agree.

    ``.pth`` and ``.pickle.pbz2`` files are pickles: convert only files you trust
    (the official downloads). With ``out``, the CSV is written atomically.
    """
    src = Path(src)
    rows = _reader_for(src)(src)
    frame = _to_frame(rows)
    if frame.empty:
        raise UsageError(f"{src} holds no 200-epoch results to convert")
    if out is not None:
        write_table(frame, Path(out))
    return frame


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Write the CSV under a temporary name, then rename: never a half-written table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", newline="") as handle:  # "x": a fresh file, mode from the umask
            frame.to_csv(handle, index=False, float_format="%.6f")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- format detection ----------------------------------------------------------
def _reader_for(src: Path) -> Callable[[Path], Iterator[dict[str, Any]]]:
    """Which reader understands ``src``, or a :class:`UsageError` listing the formats."""
    if not src.exists():
        raise UsageError(f"no such file or directory: {src}; expected {ACCEPTED}")
    if src.is_dir():
        if (src / "meta.pickle.pbz2").is_file():
            return _read_nats_dir
        raise UsageError(f"{src} is a directory without meta.pickle.pbz2; expected {ACCEPTED}")
    name = src.name
    if name.endswith(".pth"):
        return _read_nb201_pth
    if name.endswith(".pickle.pbz2"):
        if name == "meta.pickle.pbz2" or _RECORD_RE.match(name):
            raise UsageError(
                f"{src} is one file of a NATS-Bench directory; pass the directory {src.parent}"
            )
        return _read_nats_file
    raise UsageError(f"unrecognised benchmark file {src}; expected {ACCEPTED}")


def _official(module: str, pip_name: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"reading this benchmark file needs the official `{module}` package: "
            f"pip install {pip_name}"
        ) from None


# --- NATS-Bench ------------------------------------------------------------------
def _read_nats_dir(src: Path) -> Iterator[dict[str, Any]]:
    """Fast mode: the API loads one record per queried cell; drop each when done."""
    nats_bench = _official("nats_bench", "nats_bench")
    indices = sorted(
        int(m.group(1)) for m in map(_RECORD_RE.match, os.listdir(src)) if m is not None
    )
    if not indices:
        raise UsageError(f"{src} has meta.pickle.pbz2 but no NNNNNN.pickle.pbz2 records")
    api = _open(src, lambda: nats_bench.create(str(src), "tss", fast_mode=True, verbose=False))
    for index in indices:
        if index >= len(api):
            raise UsageError(f"{src}: record {index} is beyond the {len(api)} archs in its meta")
        yield _read_record(api, index, src, nb201file=False)
        # fast mode caches every record it loaded; without this, memory grows to all of them
        api.arch2infos_dict.pop(index, None)


def _read_nats_file(src: Path) -> Iterator[dict[str, Any]]:
    nats_bench = _official("nats_bench", "nats_bench")
    api = _open(src, lambda: nats_bench.create(str(src), "tss", fast_mode=False, verbose=False))
    for index in sorted(api.evaluated_indexes):
        yield _read_record(api, index, src, nb201file=False)


# --- NAS-Bench-201 ---------------------------------------------------------------
def _read_nb201_pth(src: Path) -> Iterator[dict[str, Any]]:
    """Feed the official API a few hundred cells at a time.

    ``NASBench201API`` deep-copies a dict it is given; on the multi-GB official
    file one copy of everything would double peak memory, so each chunk is
    handed over (and released) on its own.
    """
    nas_201_api = _official("nas_201_api", "nas-bench-201")
    data = _load_pth(src)
    archs: dict[int, Any] = data["arch2infos"]
    for chunk in _batched(sorted(archs), _NB201_CHUNK):
        part = {
            "meta_archs": data["meta_archs"],
            "arch2infos": {index: archs.pop(index) for index in chunk},
            "evaluated_indexes": list(chunk),
        }
        api = _open(src, lambda part=part: nas_201_api.NASBench201API(part, verbose=False))
        for index in chunk:
            yield _read_record(api, index, src, nb201file=True)


def _load_pth(src: Path) -> dict[str, Any]:
    """``weights_only=False``: the official file pickles plain Python objects, not tensors."""
    import torch

    try:
        data = torch.load(src, map_location="cpu", weights_only=False)
    except (*_READ_ERRORS, RuntimeError) as exc:
        raise UsageError(
            f"cannot read {src} as a NAS-Bench-201 .pth file ({_brief(exc)})"
        ) from None
    keys = ("meta_archs", "arch2infos", "evaluated_indexes")
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise UsageError(f"{src} is not a NAS-Bench-201 benchmark file (needs keys {keys})")
    return data


# --- one cell ------------------------------------------------------------------------
def _open(src: Path, create: Callable[[], Any]) -> Any:
    try:
        return create()
    except _READ_ERRORS as exc:
        raise UsageError(f"the official API cannot open {src} ({_brief(exc)})") from None


def _read_record(api: Any, index: int, src: Path, nb201file: bool) -> dict[str, Any]:
    try:
        return _row(api, index, nb201file)
    except ArchStringError as exc:
        raise UsageError(f"{src}: arch {index} is not an NB201 topology cell ({exc})") from None
    except _READ_ERRORS as exc:
        raise UsageError(
            f"{src}: cannot read the record of index {index} ({_brief(exc)})"
        ) from None


def _row(api: Any, index: int, nb201file: bool) -> dict[str, Any]:
    """One table row from the official API: get_more_info for accuracies, costs, seeds."""
    cell = Cell.from_arch_str(api.arch(index))
    infos = {ds: _more_info(api, index, ds) for ds in OFFICIAL_DATASETS}
    results = api.query_meta_info_by_index(index, hp="200")  # one copy, for costs and seeds
    costs = {ds: _costs(results, ds) for ds in OFFICIAL_DATASETS}
    row: dict[str, Any] = {"index": int(index), "arch_str": cell.to_arch_str()}
    for column, (dataset, key) in ACCURACY_SOURCES.items():
        row[column] = _number(infos[dataset].get(key))
    for column, (dataset, key) in NB201FILE_SOURCES.items():
        row[column] = _number(infos[dataset].get(key)) if nb201file else math.nan
    for column, (dataset, key) in COST_SOURCES.items():
        row[column] = _number(costs[dataset].get(key))
    row["n_seeds_200ep"] = _seed_count(results)
    return row


def _more_info(api: Any, index: int, dataset: str) -> dict[str, Any]:
    """The official 200-epoch, seed-averaged metrics; empty when the dataset is absent."""
    try:
        return api.get_more_info(index, dataset, hp="200", is_random=False)
    except KeyError:
        return {}


def _costs(results: Any, dataset: str) -> dict[str, Any]:
    if dataset not in results.get_dataset_names():
        return {}
    return results.get_compute_costs(dataset)


def _seed_count(results: Any) -> int | None:
    counts = [len(results.get_dataset_seeds(ds)) for ds in results.get_dataset_names()]
    return min(counts) if counts else None


def _to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS))
    frame = frame.sort_values("index", kind="stable").reset_index(drop=True)
    frame["index"] = frame["index"].astype("int64")
    frame["n_seeds_200ep"] = frame["n_seeds_200ep"].astype("Int64")
    return frame


# --- helpers -------------------------------------------------------------------------
def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _batched(items: list[int], size: int) -> Iterator[list[int]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
