"""One-shot scoring precision (``rank_precision``): float32 by default (scores that do
not depend on the CPU), auto = bfloat16 where the hardware computes it natively, float64
runs in float64; the ranking block records which was used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness import config as cfg
from harness import methods, ranking
from harness.benchmark import Benchmark
from harness.data import build_search_data
from harness.numerics import Numerics
from harness.space import Cell
from harness.supernet import SuperNet

CPU = torch.device("cpu")


def smoke(**overrides: str) -> cfg.Config:
    return cfg.resolve("smoke", "darts", dict(overrides), None, 0, methods.option_keys())


@pytest.mark.parametrize(
    ("overrides", "native", "expected"),
    [
        ({}, True, "float32"),
        ({"rank_precision": "auto"}, True, "bfloat16"),
        ({"rank_precision": "auto"}, False, "float32"),
        ({"rank_precision": "float32"}, True, "float32"),
        ({"rank_precision": "bfloat16"}, False, "bfloat16"),
        ({"dtype": "float64"}, True, "float64"),
    ],
)
def test_scoring_precision(
    overrides: dict[str, str], native: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ranking, "native_bf16", lambda device: native)
    assert ranking.scoring_precision(smoke(**overrides), CPU) == expected


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for isa, native in ((["avx2", "avx512f"], False), (["avx512f", "amx_bf16"], True)):
        monkeypatch.setattr(ranking, "cpu_fingerprint", lambda isa=isa: {"isa": isa})
        assert ranking.native_bf16(CPU) is native


def test_bf16_scores_are_autocast_and_close() -> None:
    torch.manual_seed(0)
    model = SuperNet(C=4, N=1)
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    cells = [Cell.from_code(code) for code in (0, 1835, 9000, 15624)]
    acc32, loss32 = ranking.score_cells_with_loss(model, cells, images, labels, 16)
    acc16, loss16 = ranking.score_cells_with_loss(
        model, cells, images, labels, 16, Numerics(bf16=True)
    )
    assert not np.array_equal(loss16, loss32)  # bfloat16 arithmetic did happen
    np.testing.assert_allclose(loss16, loss32, rtol=0.02)
    assert np.abs(acc16 - acc32).max() <= 100 * 3 / 32  # at most a few images flip


def test_ranking_block_records_the_precision(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ranking, "native_bf16", lambda device: True)
    config = smoke(rank_samples="4", rank_precision="auto")
    data = build_search_data(
        data_dir, CPU, config.batch_size, 64, 64, config.gap_eval_size, config.seed
    )
    model = SuperNet(config.C, config.N)
    block = ranking.ranking_correlation(model, Benchmark.load(data_dir), data, config)
    assert block["precision"] == "bfloat16"
    assert "isa" in block["precision_hardware"]
    block = ranking.ranking_correlation(
        model, Benchmark.load(data_dir), data, smoke(rank_samples="4", rank_precision="float32")
    )
    assert block["precision"] == "float32" and block["precision_hardware"] is None
