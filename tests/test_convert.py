"""Converting official benchmark files (NATS-Bench, NAS-Bench-201 .pth) into the table."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from nas_201_api import ArchResults, ResultsCount
from nats_bench.api_utils import pickle_load, pickle_save

from harness import convert as convert_module
from harness.benchmark import ACCURACY_COLUMNS, TABLE_COLUMNS
from harness.convert import convert_benchmark
from harness.errors import UsageError
from harness.space import Cell

ACC = list(ACCURACY_COLUMNS.values())
NB201FILE = [c for c in TABLE_COLUMNS if c.startswith("nb201file_")]


@pytest.fixture(scope="module")
def nats_dir(data_dir: Path) -> Path:
    return data_dir / "nats-tss-fixture" / "NATS-tss-v1_0-3ffb9-simple"


@pytest.fixture(scope="module")
def table(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "nb201" / "nb201_table.csv").set_index("index")


def _assert_matches_table(frame: pd.DataFrame, table: pd.DataFrame) -> None:
    for _, row in frame.iterrows():
        expected = table.loc[row["index"]]
        assert row["arch_str"] == expected["arch_str"]
        assert row["n_seeds_200ep"] == expected["n_seeds_200ep"]
        for column in ACC + ["params_m", "params_m_cifar100", "params_m_imagenet16"]:
            assert row[column] == pytest.approx(expected[column], abs=1e-4), column


# --- NATS-Bench ---------------------------------------------------------------------
def test_nats_directory_matches_the_table(nats_dir: Path, table: pd.DataFrame) -> None:
    frame = convert_benchmark(nats_dir)
    assert list(frame.columns) == list(TABLE_COLUMNS)
    assert frame["index"].tolist() == [0, 11, 284]
    _assert_matches_table(frame, table)
    cell_11 = frame.set_index("index").loc[11]
    assert round(cell_11["cifar10_valid_acc"], 2) == 87.94
    assert round(cell_11["cifar10_test_acc"], 2) == 91.58
    # the nb201file_* columns are the figures of a NAS-Bench-201 .pth: not in NATS-Bench
    assert frame[NB201FILE].isna().all().all()


def test_nats_directory_written_atomically(nats_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "nb201_table.csv"
    frame = convert_benchmark(nats_dir, out)
    assert [p.name for p in out.parent.iterdir()] == ["nb201_table.csv"]
    back = pd.read_csv(out)
    assert list(back.columns) == list(TABLE_COLUMNS)
    assert back["n_seeds_200ep"].tolist() == [3, 3, 3]
    pd.testing.assert_frame_equal(back[ACC], frame[ACC], atol=1e-6, check_dtype=False)


def test_nats_single_file_matches_directory(
    nats_dir: Path, tmp_path: Path, table: pd.DataFrame
) -> None:
    meta = pickle_load(str(nats_dir / "meta.pickle.pbz2"))
    records = {i: pickle_load(str(nats_dir / f"{i:06d}.pickle.pbz2")) for i in (0, 11, 284)}
    bundle = {
        "meta_archs": meta["meta_archs"],
        "arch2infos": records,
        "evaluated_indexes": sorted(records),
    }
    pickle_save(bundle, str(tmp_path / "NATS-tss-tiny.pickle"))  # adds .pbz2
    frame = convert_benchmark(tmp_path / "NATS-tss-tiny.pickle.pbz2")
    assert frame["index"].tolist() == [0, 11, 284]
    _assert_matches_table(frame, table)
    pd.testing.assert_frame_equal(frame, convert_benchmark(nats_dir))


# --- NAS-Bench-201 .pth -------------------------------------------------------------
EPOCHS = 3
EARLY = 12.5  # every epoch but the last: a converter reading the wrong epoch sees this
COSTS = {  # dataset -> (params M, FLOPs M), all distinct so the source is identifiable
    "cifar10-valid": (0.0700, 10.0),
    "cifar10": (0.0724, 11.0),
    "cifar100": (0.0783, 12.0),
    "ImageNet16-120": (0.0796, 3.0),
}
SKIP_200 = {  # 1835, all skip_connect: 2 seeds except ImageNet16-120 (1 seed)
    "cifar10-valid": [
        (777, {"x-valid": 40.0, "ori-test": 53.0}),
        (888, {"x-valid": 42.0, "ori-test": 55.0}),
    ],
    "cifar10": [(777, {"ori-test": 60.0}), (888, {"ori-test": 62.0})],
    "cifar100": [
        (777, {"x-valid": 20.0, "x-test": 21.0, "ori-test": 20.5}),
        (888, {"x-valid": 22.0, "x-test": 23.0, "ori-test": 22.5}),
    ],
    "ImageNet16-120": [(777, {"x-valid": 10.0, "x-test": 11.0, "ori-test": 10.5})],
}
BEST_200 = {  # 6111: CIFAR-10 only
    "cifar10-valid": [
        (777, {"x-valid": 91.0, "ori-test": 90.0}),
        (888, {"x-valid": 92.0, "ori-test": 91.0}),
    ],
    "cifar10": [(777, {"ori-test": 94.0}), (888, {"ori-test": 94.5})],
}
LESS_12 = {  # 12-epoch results: must never reach the table
    "cifar10-valid": [(111, {"x-valid": 5.0, "ori-test": 5.0})],
    "cifar10": [(111, {"ori-test": 5.0})],
}


def _trial(dataset: str, seed: int, arch: str, finals: dict[str, float]) -> ResultsCount:
    """One training run, built with the official class, with known final accuracies."""
    params, flops = COSTS[dataset]
    config = {"arch_str": arch, "channel": 16, "num_cells": 5, "class_num": 10}
    curve = {epoch: 50.0 for epoch in range(EPOCHS)}
    trial = ResultsCount(dataset, None, curve, curve, params, flops, config, seed, EPOCHS, None)
    accs, losses, times = {}, {}, {}
    for setname, final in finals.items():
        for epoch in range(EPOCHS):
            key = f"{setname}@{epoch}"
            accs[key] = final if epoch == EPOCHS - 1 else EARLY
            losses[key], times[key] = 1.0, 0.1
    trial.update_eval(accs, losses, times)
    return trial


def _arch_results(index: int, arch: str, spec: dict[str, list]) -> dict[str, Any]:
    results = ArchResults(index, arch)
    for dataset, trials in spec.items():
        for seed, finals in trials:
            results.update(dataset, seed, _trial(dataset, seed, arch, finals))
    return results.state_dict()


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory: pytest.TempPathFactory, table: pd.DataFrame) -> Path:
    """A NAS-Bench-201 file in the layout NASBench201API expects, holding two cells."""
    archs = table.sort_index()["arch_str"].tolist()
    arch2infos = {
        index: {"less": _arch_results(index, archs[index], LESS_12), "full": full}
        for index, full in (
            (1835, _arch_results(1835, archs[1835], SKIP_200)),
            (6111, _arch_results(6111, archs[6111], BEST_200)),
        )
    }
    data = {"meta_archs": archs, "arch2infos": arch2infos, "evaluated_indexes": [1835, 6111]}
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-tiny.pth"
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def converted(tiny_pth: Path) -> pd.DataFrame:
    return convert_benchmark(tiny_pth).set_index("index")


def test_pth_rows_and_strings(converted: pd.DataFrame) -> None:
    assert converted.index.tolist() == [1835, 6111]
    assert converted.loc[1835, "arch_str"] == Cell(("skip_connect",) * 6).to_arch_str()


def test_pth_cifar10_split_semantics(converted: pd.DataFrame) -> None:
    row = converted.loc[1835]
    assert row["cifar10_valid_acc"] == pytest.approx(41.0)  # cifar10-valid / x-valid, mean
    assert row["cifar10_test_acc"] == pytest.approx(61.0)  # cifar10 / ori-test, not 54
    assert row["nb201file_cifar10_valid_acc"] == pytest.approx(41.0)
    assert row["nb201file_cifar10_test_acc"] == pytest.approx(61.0)
    assert row["nb201file_cifar10valid_test_acc"] == pytest.approx(54.0)  # cifar10-valid/ori-test


def test_pth_cifar100_imagenet_split_semantics(converted: pd.DataFrame) -> None:
    row = converted.loc[1835]
    assert row["cifar100_valid_acc"] == pytest.approx(21.0)  # x-valid
    assert row["cifar100_test_acc"] == pytest.approx(22.0)  # x-test
    assert row["cifar100_valtest_acc"] == pytest.approx(21.5)  # ori-test
    assert row["imagenet16_valid_acc"] == pytest.approx(10.0)
    assert row["imagenet16_test_acc"] == pytest.approx(11.0)
    assert row["imagenet16_valtest_acc"] == pytest.approx(10.5)


def test_pth_uses_200_epochs_last_epoch(converted: pd.DataFrame) -> None:
    values = converted[ACC].to_numpy().ravel()
    assert not any(v in (5.0, EARLY) for v in values)


def test_pth_costs_and_seeds(converted: pd.DataFrame) -> None:
    row = converted.loc[1835]
    assert (row["params_m"], row["flops_m"]) == pytest.approx(COSTS["cifar10"])
    assert (row["params_m_cifar100"], row["flops_m_cifar100"]) == pytest.approx(COSTS["cifar100"])
    assert row["flops_m_imagenet16"] == pytest.approx(COSTS["ImageNet16-120"][1])
    assert row["n_seeds_200ep"] == 1  # the fewest seeds over the datasets
    assert converted.loc[6111, "n_seeds_200ep"] == 2


def test_pth_missing_datasets_are_nan(converted: pd.DataFrame) -> None:
    row = converted.loc[6111]
    assert row["cifar10_valid_acc"] == pytest.approx(91.5)
    assert row["cifar10_test_acc"] == pytest.approx(94.25)
    assert row["nb201file_cifar10valid_test_acc"] == pytest.approx(90.5)
    for column in ACC[2:] + ["params_m_cifar100", "flops_m_imagenet16"]:
        assert math.isnan(row[column]), column


def test_pth_chunks_give_the_same_rows(tiny_pth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = convert_benchmark(tiny_pth)
    monkeypatch.setattr(convert_module, "_NB201_CHUNK", 1)  # one API object per cell
    pd.testing.assert_frame_equal(convert_benchmark(tiny_pth), whole)


def test_pth_written_csv_round_trips(tiny_pth: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    frame = convert_benchmark(tiny_pth, out)
    back = pd.read_csv(out)
    assert back["n_seeds_200ep"].tolist() == [1, 2]
    pd.testing.assert_frame_equal(back[ACC], frame[ACC], atol=1e-6)


# --- errors -----------------------------------------------------------------------
def test_unrecognised_source(tmp_path: Path) -> None:
    path = tmp_path / "results.txt"
    path.write_text("hello")
    with pytest.raises(UsageError, match=r"unrecognised.*NATS-Bench topology.*\.pth"):
        convert_benchmark(path)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory"):
        convert_benchmark(tmp_path / "absent.pth")


def test_directory_without_meta(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="without meta.pickle.pbz2"):
        convert_benchmark(tmp_path)


def test_single_record_points_at_its_directory(nats_dir: Path) -> None:
    with pytest.raises(UsageError, match="pass the directory"):
        convert_benchmark(nats_dir / "000011.pickle.pbz2")


def test_corrupt_pth(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(UsageError, match="cannot read .*broken.pth"):
        convert_benchmark(path)


def test_pth_without_benchmark_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UsageError, match="not a NAS-Bench-201 benchmark file"):
        convert_benchmark(path)


@pytest.mark.parametrize(
    ("module", "hint", "source"),
    [
        ("nats_bench", "pip install nats_bench", "nats"),
        ("nas_201_api", "pip install nas-bench-201", "pth"),
    ],
)
def test_missing_official_package(
    module: str,
    hint: str,
    source: str,
    nats_dir: Path,
    tiny_pth: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(UsageError, match=hint):
        convert_benchmark(nats_dir if source == "nats" else tiny_pth)
