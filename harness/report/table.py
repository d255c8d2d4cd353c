"""A report table (numbers for the CSV, text for Markdown and LaTeX) and how a value reads."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.runs import ACCURACY_KEYS

ACCURACIES = tuple(ACCURACY_KEYS.values())
LABELS = {
    "c10_valid": "C10 valid",
    "c10_test": "C10 test",
    "c100_valid": "C100 valid",
    "c100_test": "C100 test",
    "in16_valid": "IN16 valid",
    "in16_test": "IN16 test",
}
RUN_HERE, REFERENCE, PUBLISHED = "run here", "reference (this table)", "published, not run here"
Format = Callable[[float], str]


@dataclass
class Table:
    """One table: numbers for the CSV, formatted strings for Markdown and LaTeX."""

    name: str
    title: str
    numeric: pd.DataFrame
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    """Row positions that start a new group (a rule is drawn above them)."""


def column_of(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or NaNs where no run has it (e.g. every run failed)."""
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index)


# --- formatting -----------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fixed(decimals: int) -> Format:
    return lambda v: f"{v:.{decimals}f}"


def number_text(value: Any, fmt: Format) -> str:
    return "–" if is_missing(value) else fmt(float(value))


def percent_text(value: Any) -> str:
    return "–" if is_missing(value) else f"{100 * float(value):.0f}%"
