"""The NAS-Bench-201 results table: load it, validate it, look cells up in it.

The table (``nb201/nb201_table.csv``, one row per cell, 200-epoch results
averaged over seeds) is the ground truth every search is scored against, so a
wrong or truncated table must fail loudly at load time, never give quiet NaNs.
Lookups follow the NAS-Bench-201 split semantics:

* CIFAR-10 ``valid``: the ``cifar10-valid`` network (trained on the 25k train
  half) scored on the 25k valid half; ``test``: the ``cifar10`` network (trained
  on all 50k) scored on the 10k test set.
* CIFAR-100 / ImageNet16-120 ``valid`` / ``test``: the two halves (``x-valid`` /
  ``x-test``) of the test set; ``valtest``: the whole test set (``ori-test``).

Turning the official benchmark files into this table is :mod:`harness.convert`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.paths import TABLE_RELPATH, find_data_dir
from harness.space import (
    EDGES,
    NUM_CELLS,
    NUM_EDGES,
    NUM_NODES,
    NUM_OPS,
    OPS,
    ArchStringError,
    Cell,
)

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16")
LOOKUP_SPLITS: tuple[str, ...] = ("valid", "test")
"""The splits :meth:`Benchmark.lookup` reports for every dataset."""

ACCURACY_COLUMNS: dict[tuple[str, str], str] = {
    ("cifar10", "valid"): "cifar10_valid_acc",
    ("cifar10", "test"): "cifar10_test_acc",
    ("cifar100", "valid"): "cifar100_valid_acc",
    ("cifar100", "test"): "cifar100_test_acc",
    ("cifar100", "valtest"): "cifar100_valtest_acc",
    ("imagenet16", "valid"): "imagenet16_valid_acc",
    ("imagenet16", "test"): "imagenet16_test_acc",
    ("imagenet16", "valtest"): "imagenet16_valtest_acc",
}
"""(dataset, split) → table column; the eight accuracy columns, in percent."""

TABLE_COLUMNS: tuple[str, ...] = (
    "index",
    "arch_str",
    *ACCURACY_COLUMNS.values(),
    "n_seeds_200ep",
    "params_m",
    "flops_m",
    "params_m_cifar100",
    "flops_m_cifar100",
    "params_m_imagenet16",
    "flops_m_imagenet16",
    "nb201file_cifar10_valid_acc",
    "nb201file_cifar10_test_acc",
    "nb201file_cifar10valid_test_acc",
)
"""Every column of the distilled table, in file order (what the converter writes)."""

REQUIRED_COLUMNS: tuple[str, ...] = ("index", "arch_str", *ACCURACY_COLUMNS.values())
"""The columns a table must have to be loaded; the others are informational."""

DATASET_ALIASES: dict[str, str] = {"imagenet16-120": "imagenet16", "imagenet": "imagenet16"}
"""Official dataset names accepted as well (compared case-insensitively)."""

FIX_HINT = (
    "point --data-dir (or $HARNESS_DATA) at the real NAS-Bench-201 data, "
    "or regenerate the table with `python -m harness benchmark convert SRC`"
)


def _arch_regex() -> re.Pattern[str]:
    """Matches exactly the official strings, capturing one op per edge (fast path)."""
    op = "(" + "|".join(re.escape(name) for name in OPS) + ")"
    groups = [
        r"\|" + "".join(rf"{op}~{source}\|" for target, source in EDGES if target == node)
        for node in range(1, NUM_NODES)
    ]
    return re.compile(r"\+".join(groups))


_ARCH_RE = _arch_regex()

_CACHE: dict[str, tuple[tuple[int, int], Benchmark]] = {}
"""Resolved path → ((mtime_ns, size), table): one parsed table per file per process."""


class Benchmark:
    """The validated NB201 table, with lookups by :class:`~harness.space.Cell`.

    Build it with :meth:`load`. Instances are shared through a per-process
    cache, so they are read-only: the arrays inside are not writeable.
    """

    def __init__(self, path: Path, sha256: str, frame: pd.DataFrame, codes: np.ndarray) -> None:
        """``frame`` sorted by index (row position == NB201 index); ``codes`` per row."""
        self._path = path
        self._sha256 = sha256
        self._frame = frame
        self._code_of_index = _readonly(codes.astype(np.int64))
        index_of_code = np.empty(NUM_CELLS, dtype=np.int64)
        index_of_code[codes] = np.arange(NUM_CELLS)
        self._index_of_code = _readonly(index_of_code)
        self._by_code = {
            column: _readonly(_by_code(frame[column].to_numpy(np.float64), codes))
            for column in ACCURACY_COLUMNS.values()
        }

    # --- loading -----------------------------------------------------------
    @classmethod
    def load(
        cls, data_dir: Path | str | None = None, table_path: Path | str | None = None
    ) -> Benchmark:
        """Load (once per file and modification) and validate the table.

        ``table_path`` wins; else ``data_dir/nb201/nb201_table.csv``; with neither,
        the data directory is found by :func:`harness.paths.find_data_dir`.
        """
        path = Path(table_path) if table_path else find_data_dir(data_dir) / TABLE_RELPATH
        path = Path(os.path.abspath(path))  # results record where their ground truth came from
        try:
            stat = path.stat()
        except OSError:
            raise UsageError(f"no NAS-Bench-201 table at {path}; {FIX_HINT}") from None
        if not path.is_file():
            raise UsageError(f"{path} is not a file; expected the NB201 table CSV; {FIX_HINT}")
        key, stamp = str(path.resolve()), (stat.st_mtime_ns, stat.st_size)
        cached = _CACHE.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        table = cls._read(path)
        _CACHE[key] = (stamp, table)
        return table

    @classmethod
    def _read(cls, path: Path) -> Benchmark:
        """Hash and parse the same bytes, so the recorded hash is what was used."""
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            frame = pd.read_csv(io.BytesIO(data))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise _invalid(path, f"cannot be read as CSV ({_one_line(exc)})") from None
        frame, codes = _validate(frame, path)
        return cls(path, sha256, frame, codes)

    # --- identity ----------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def version(self) -> str:
        """A short name recorded with every result, so results name their ground truth."""
        return f"nb201-table@{self._sha256[:12]}"

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self._path),
            "version": self.version,
            "sha256": self._sha256,
            "rows": len(self._frame),
        }

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        return f"Benchmark({self.version}, {len(self)} cells, {self._path})"

    # --- index ↔ cell ------------------------------------------------------
    def index_of(self, cell: Cell | str) -> int:
        """The official NB201 index (the table's row order, not computable from the cell)."""
        return int(self._index_of_code[_as_cell(cell).code])

    def cell_at(self, index: int) -> Cell:
        return Cell.from_code(int(self._code_of_index[_check_index(index)]))

    # --- lookups -----------------------------------------------------------
    def lookup(self, cell: Cell | str) -> dict[str, dict[str, float]]:
        """``{dataset: {"valid": acc, "test": acc}}`` in percent, NB201 split semantics."""
        code = _as_cell(cell).code
        return {
            dataset: {
                split: float(self._by_code[ACCURACY_COLUMNS[dataset, split]][code])
                for split in LOOKUP_SPLITS
            }
            for dataset in DATASETS
        }

    def accuracy(
        self, codes: np.ndarray, dataset: str = "cifar10", split: str = "valid"
    ) -> np.ndarray:
        """Accuracies (percent) for an array of :attr:`Cell.code` values, vectorised.

        ``split`` is ``valid`` or ``test``, or ``valtest`` for cifar100/imagenet16.
        """
        array = np.asarray(codes)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"codes must be integers (Cell.code values), got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= NUM_CELLS):
            low, high = array.min(), array.max()
            raise ValueError(f"cell codes must be in [0, {NUM_CELLS}), got {low}..{high}")
        return self._by_code[column_for(dataset, split)][array.astype(np.int64)]

    def optimum(self) -> dict[str, dict[str, float]]:
        """The best value of every (dataset, split) over the space, nested like :meth:`lookup`."""
        return {
            dataset: {
                split: float(self._by_code[ACCURACY_COLUMNS[dataset, split]].max())
                for split in LOOKUP_SPLITS
            }
            for dataset in DATASETS
        }

    def row(self, cell: Cell | str) -> dict[str, Any]:
        """Every column of the cell's row, as plain Python values."""
        record = self._frame.iloc[self.index_of(cell)]
        return {column: _plain(value) for column, value in record.items()}


# --- names -------------------------------------------------------------------
def column_for(dataset: str, split: str) -> str:
    """The table column of a (dataset, split), or a :class:`UsageError` listing valid ones."""
    name = dataset.lower() if isinstance(dataset, str) else dataset
    name = DATASET_ALIASES.get(name, name)
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    column = ACCURACY_COLUMNS.get((name, split))
    if column is None:
        valid = [s for d, s in ACCURACY_COLUMNS if d == name]
        raise UsageError(f"unknown split {split!r} for {name}; valid splits: {', '.join(valid)}")
    return column


# --- validation ----------------------------------------------------------------
def _validate(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Every check a loaded table must pass; returns it sorted by index, with codes."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise _invalid(path, f"missing column(s) {', '.join(missing)}")
    if len(frame) != NUM_CELLS:
        raise _invalid(path, f"has {len(frame):,} rows, expected {NUM_CELLS:,} (one per cell)")
    _check_index_column(frame["index"], path)
    _check_accuracies(frame, path)
    frame = frame.sort_values("index", kind="stable").reset_index(drop=True)
    codes = _codes_of(frame, path)
    return frame, codes


def _check_index_column(index: pd.Series, path: Path) -> None:
    if not pd.api.types.is_integer_dtype(index):
        raise _invalid(path, f"column index must hold integers, got dtype {index.dtype}")
    values = index.to_numpy()
    if not np.array_equal(np.sort(values), np.arange(NUM_CELLS)):
        repeated = index[index.duplicated()].head(3).tolist()
        detail = f" (repeated: {repeated})" if repeated else ""
        raise _invalid(path, f"index must hold each of 0..{NUM_CELLS - 1} exactly once{detail}")


def _check_accuracies(frame: pd.DataFrame, path: Path) -> None:
    for column in ACCURACY_COLUMNS.values():
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values):
            raise _invalid(path, f"column {column} must be numeric, got dtype {values.dtype}")
        missing = int(values.isna().sum())
        if missing:
            raise _invalid(path, f"column {column} has {missing} missing value(s)")
        if values.min() < 0 or values.max() > 100:
            raise _invalid(path, f"column {column} must hold percentages in [0, 100]")


def _codes_of(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """Cell codes of every row; a fast regex path, :meth:`Cell.from_arch_str` for the rest."""
    arch = frame["arch_str"].astype(object)
    op_index = {op: i for i, op in enumerate(OPS)}
    digits = np.empty((len(frame), NUM_EDGES), dtype=np.int64)
    for row, text in enumerate(arch):
        match = _ARCH_RE.fullmatch(text) if isinstance(text, str) else None
        if match is not None:
            digits[row] = [op_index[op] for op in match.groups()]
            continue
        try:
            digits[row] = Cell.from_arch_str(text).op_indices
        except (ArchStringError, ValueError) as exc:
            index = frame["index"].iat[row]
            raise _invalid(path, f"arch_str of index {index} does not parse: {exc}") from None
    codes = digits @ (NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1))
    _check_unique_cells(codes, frame, path)
    return codes


def _check_unique_cells(codes: np.ndarray, frame: pd.DataFrame, path: Path) -> None:
    counts = np.bincount(codes, minlength=NUM_CELLS)
    if counts.max() > 1:
        rows = np.flatnonzero(codes == int(np.argmax(counts)))
        indices = frame["index"].to_numpy()[rows].tolist()
        raise _invalid(path, f"one cell appears at several indices {indices}")


def _invalid(path: Path, problem: str) -> UsageError:
    return UsageError(f"invalid NAS-Bench-201 table {path}: {problem}; {FIX_HINT}")


# --- small helpers -------------------------------------------------------------
def _as_cell(cell: Cell | str) -> Cell:
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        return Cell.from_arch_str(cell)
    raise TypeError(f"expected a Cell or an arch string, got {type(cell).__name__}")


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise UsageError(f"NB201 index must be an integer in 0..{NUM_CELLS - 1}, got {index!r}")
    if not 0 <= index < NUM_CELLS:
        raise UsageError(f"NB201 index {index} is out of range: expected 0..{NUM_CELLS - 1}")
    return int(index)


def _by_code(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Reorder per-row values so that position == cell code."""
    result = np.empty(NUM_CELLS, dtype=np.float64)
    result[codes] = values
    return result


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# --- the benchmark's own training noise ---------------------------------------------
PERSEED_NAME = "nb201_perseed_200ep.csv"
"""Per-seed 200-epoch accuracies beside the table (the data directory's README)."""


def seed_spread(data_dir: Path | str | None = None) -> pd.DataFrame | None:
    """Per NB201 index: how many training seeds the benchmark has (``n``) and the
    sample std of their CIFAR-10 valid accuracy (``std``, NaN for one seed); None where
    the data directory has no per-seed file (a report then shows no spread)."""
    try:
        path = find_data_dir(data_dir) / TABLE_RELPATH.parent / PERSEED_NAME
    except UsageError:
        return None
    if not path.is_file():
        return None
    frame = pd.read_csv(path, usecols=["index", "cifar10_valid_acc"])
    grouped = frame.groupby("index")["cifar10_valid_acc"]
    return pd.DataFrame({"n": grouped.count(), "std": grouped.std(ddof=1)})
