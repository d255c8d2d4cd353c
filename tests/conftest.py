"""Shared fixtures: the real data directory (../shared/data in CI) and a slow-test flag."""

from __future__ import annotations

from pathlib import Path

import pytest

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
