"""The NB201 table: known values from the paper, split semantics, validation errors."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.benchmark import ACCURACY_COLUMNS, TABLE_COLUMNS, Benchmark, column_for
from harness.errors import UsageError
from harness.space import NUM_CELLS, Cell

ALL_SKIP = Cell(("skip_connect",) * 6)
ALL_NONE = Cell(("none",) * 6)


@pytest.fixture(scope="module")
def bench(data_dir: Path) -> Benchmark:
    return Benchmark.load(data_dir)


@pytest.fixture(scope="module")
def table_path(data_dir: Path) -> Path:
    return data_dir / "nb201" / "nb201_table.csv"


@pytest.fixture(scope="module")
def raw(table_path: Path) -> pd.DataFrame:
    """The table as pandas reads it, independent of the module under test."""
    return pd.read_csv(table_path)


# --- known values (NAS-Bench-201 paper, data README) --------------------------------
def test_all_skip_connect_cell(bench: Benchmark) -> None:
    assert bench.index_of(ALL_SKIP) == 1835
    result = bench.lookup(ALL_SKIP)
    assert round(result["cifar10"]["valid"], 2) == 39.77
    assert round(result["cifar10"]["test"], 2) == 54.30


def test_all_none_cell_is_chance(bench: Benchmark) -> None:
    result = bench.lookup(ALL_NONE)
    assert round(result["cifar10"]["test"], 2) == 10.00
    assert round(result["cifar100"]["test"], 2) == 1.00
    assert round(result["imagenet16"]["test"], 2) == round(100 / 120, 2)


def test_optimum_matches_the_paper(bench: Benchmark) -> None:
    best = bench.optimum()
    assert set(best) == {"cifar10", "cifar100", "imagenet16"}
    assert round(best["cifar10"]["test"], 2) == 94.37
    assert round(best["cifar100"]["test"], 2) == 73.51
    assert round(best["imagenet16"]["test"], 2) == 47.31
    assert round(best["cifar10"]["valid"], 2) == 91.61
    # 6111 attains the best CIFAR-10 test accuracy (tied, to 6 decimals, with 13714)
    test = bench.accuracy(np.arange(NUM_CELLS), "cifar10", "test")
    winners = {bench.index_of(Cell.from_code(int(c))) for c in np.flatnonzero(test == test.max())}
    assert 6111 in winners
    assert bench.lookup(bench.cell_at(6111))["cifar10"]["test"] == best["cifar10"]["test"]


def test_lookup_shape_and_plain_floats(bench: Benchmark) -> None:
    result = bench.lookup(bench.cell_at(6111))
    assert {d: set(v) for d, v in result.items()} == {
        "cifar10": {"valid", "test"},
        "cifar100": {"valid", "test"},
        "imagenet16": {"valid", "test"},
    }
    assert all(type(v) is float for split in result.values() for v in split.values())


def test_lookup_split_semantics_against_raw_columns(bench: Benchmark, raw: pd.DataFrame) -> None:
    row = raw.set_index("index").loc[11]
    result = bench.lookup(row["arch_str"])
    assert result["cifar10"] == {"valid": row["cifar10_valid_acc"], "test": row["cifar10_test_acc"]}
    assert result["cifar100"]["valid"] == row["cifar100_valid_acc"]
    assert result["cifar100"]["test"] == row["cifar100_test_acc"]
    assert result["imagenet16"]["valid"] == row["imagenet16_valid_acc"]
    assert result["imagenet16"]["test"] == row["imagenet16_test_acc"]
    assert round(result["cifar10"]["valid"], 2) == 87.94
    assert round(result["cifar10"]["test"], 2) == 91.58


# --- index <-> cell ------------------------------------------------------------------
def test_index_of_and_cell_at_agree_with_the_file(bench: Benchmark, raw: pd.DataFrame) -> None:
    for index, arch in zip(raw["index"], raw["arch_str"], strict=True):
        cell = bench.cell_at(int(index))
        assert cell.to_arch_str() == arch
        assert bench.index_of(cell) == index


def test_index_is_not_the_code(bench: Benchmark) -> None:
    codes = [bench.cell_at(i).code for i in range(100)]
    assert codes != list(range(100))


@pytest.mark.parametrize("index", [-1, NUM_CELLS, 3.0, True])
def test_cell_at_rejects_bad_index(bench: Benchmark, index: object) -> None:
    with pytest.raises(UsageError, match="NB201 index"):
        bench.cell_at(index)  # type: ignore[arg-type]


# --- info / row / caching ------------------------------------------------------------
def test_info_has_hash_of_the_file(bench: Benchmark, table_path: Path) -> None:
    digest = hashlib.sha256(table_path.read_bytes()).hexdigest()
    info = bench.info()
    assert info["sha256"] == digest
    assert info["version"] == f"nb201-table@{digest[:12]}"
    assert info["rows"] == NUM_CELLS
    assert Path(info["path"]).resolve() == table_path.resolve()


def test_row_has_every_column_as_plain_values(bench: Benchmark) -> None:
    row = bench.row(ALL_SKIP)
    assert list(row) == list(TABLE_COLUMNS)
    assert row["index"] == 1835 and type(row["index"]) is int
    assert row["arch_str"] == ALL_SKIP.to_arch_str()
    assert type(row["params_m"]) is float
    assert row["cifar10_test_acc"] == bench.lookup(ALL_SKIP)["cifar10"]["test"]


def test_load_is_cached_and_returns_copies(
    bench: Benchmark, data_dir: Path, table_path: Path
) -> None:
    start = time.perf_counter()
    again = Benchmark.load(data_dir)
    assert time.perf_counter() - start < 0.05
    assert again is bench
    assert Benchmark.load(table_path=table_path) is bench
    values = bench.accuracy(np.arange(3))
    values[0] = -1.0  # a copy: harmless
    assert bench.accuracy(np.arange(3))[0] != -1.0


def test_changed_file_is_reloaded(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = tmp_path / "table.csv"
    raw.to_csv(path, index=False)
    first = Benchmark.load(table_path=path)
    changed = raw.copy()
    changed.loc[changed["index"] == 1835, "cifar10_test_acc"] = 55.5
    changed.to_csv(path, index=False)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = Benchmark.load(table_path=path)
    assert second is not first
    assert second.lookup(ALL_SKIP)["cifar10"]["test"] == 55.5
    assert second.sha256 != first.sha256


# --- vectorised accuracy ---------------------------------------------------------------
def test_accuracy_matches_lookup(bench: Benchmark) -> None:
    codes = np.random.default_rng(0).integers(0, NUM_CELLS, size=500)
    for dataset in ("cifar10", "cifar100", "imagenet16"):
        for split in ("valid", "test"):
            values = bench.accuracy(codes, dataset, split)
            assert values.shape == codes.shape and values.dtype == np.float64
            expected = [bench.lookup(Cell.from_code(int(c)))[dataset][split] for c in codes]
            np.testing.assert_array_equal(values, expected)


def test_accuracy_valtest_and_aliases(bench: Benchmark, raw: pd.DataFrame) -> None:
    code = np.array([ALL_SKIP.code])
    row = raw.set_index("index").loc[1835]
    assert bench.accuracy(code, "cifar100", "valtest")[0] == row["cifar100_valtest_acc"]
    assert bench.accuracy(code, "ImageNet16-120", "test")[0] == row["imagenet16_test_acc"]


def test_accuracy_is_fast(bench: Benchmark) -> None:
    codes = np.random.default_rng(1).integers(0, NUM_CELLS, size=10_000)
    start = time.perf_counter()
    bench.accuracy(codes, "cifar10", "test")
    assert time.perf_counter() - start < 0.1


def test_accuracy_rejects_bad_codes(bench: Benchmark) -> None:
    with pytest.raises(ValueError, match="cell codes must be in"):
        bench.accuracy(np.array([0, NUM_CELLS]))
    with pytest.raises(TypeError, match="integers"):
        bench.accuracy(np.array([0.5]))


def test_unknown_dataset_or_split_lists_valid_ones(bench: Benchmark) -> None:
    with pytest.raises(UsageError, match="valid datasets: cifar10, cifar100, imagenet16"):
        bench.accuracy(np.arange(3), "svhn", "valid")
    with pytest.raises(UsageError, match="valid splits: valid, test$"):
        bench.accuracy(np.arange(3), "cifar10", "valtest")
    with pytest.raises(UsageError, match="valid splits: valid, test, valtest"):
        column_for("cifar100", "train")


def test_column_map_covers_eight_accuracy_columns() -> None:
    assert len(set(ACCURACY_COLUMNS.values())) == 8
    assert column_for("cifar10", "valid") == "cifar10_valid_acc"
    assert column_for("cifar100", "valtest") == "cifar100_valtest_acc"


# --- validation errors -------------------------------------------------------------
def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(UsageError) as info:
        Benchmark.load(table_path=path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "benchmark convert" in message
    return message


def test_missing_column(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = _write(raw.drop(columns=["cifar100_test_acc", "arch_str"]), tmp_path / "t.csv")
    assert "missing column(s) arch_str, cifar100_test_acc" in _load_error(path)


def test_wrong_row_count(tmp_path: Path, raw: pd.DataFrame) -> None:
    path = _write(raw.iloc[:-10], tmp_path / "t.csv")
    assert "15,615 rows, expected 15,625" in _load_error(path)


def test_duplicate_index(tmp_path: Path, raw: pd.DataFrame) -> None:
    frame = raw.copy()
    frame.loc[5, "index"] = 4
    path = _write(frame, tmp_path / "t.csv")
    message = _load_error(path)
    assert "exactly once" in message and "[4]" in message


def test_unparseable_arch_string(tmp_path: Path, raw: pd.DataFrame) -> None:
    frame = raw.copy()
    frame.loc[frame["index"] == 77, "arch_str"] = (
        "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    )
    path = _write(frame, tmp_path / "t.csv")
    message = _load_error(path)
    assert "index 77" in message and "unknown operation 'conv_5x5'" in message


def test_repeated_cell(tmp_path: Path, raw: pd.DataFrame) -> None:
    frame = raw.copy()
    frame.loc[frame["index"] == 3, "arch_str"] = ALL_SKIP.to_arch_str()
    path = _write(frame, tmp_path / "t.csv")
    assert "one cell appears at several indices [3, 1835]" in _load_error(path)


def test_missing_accuracy_values(tmp_path: Path, raw: pd.DataFrame) -> None:
    frame = raw.copy()
    frame.loc[10:12, "imagenet16_valid_acc"] = np.nan
    path = _write(frame, tmp_path / "t.csv")
    assert "imagenet16_valid_acc has 3 missing value(s)" in _load_error(path)


def test_fractions_instead_of_percent(tmp_path: Path, raw: pd.DataFrame) -> None:
    frame = raw.copy()
    frame["cifar10_test_acc"] = frame["cifar10_test_acc"] * 100
    path = _write(frame, tmp_path / "t.csv")
    assert "percentages in [0, 100]" in _load_error(path)


def test_not_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"")
    assert "cannot be read as CSV" in _load_error(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(UsageError, match="no NAS-Bench-201 table at .*nowhere.csv"):
        Benchmark.load(table_path=path)


def test_data_dir_without_table(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nb201_table\.csv"):
        Benchmark.load(data_dir=tmp_path)
