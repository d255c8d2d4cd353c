"""Shared fixtures: the real data directory (../shared/data in CI) and a slow-test flag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness.paths import find_data_dir


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory; its absence is a failure, never a skip."""
    return find_data_dir()


@pytest.fixture
def float64_default() -> Iterator[None]:
    """Every new tensor float64 and the global RNG seeded, for tests of a method's math:
    finite differences and autograd (or an oracle) then agree tightly."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
