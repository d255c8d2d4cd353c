"""The committed calibration study (reports/calibration) regenerates from its committed
runs (results/calibration), table for table: a hand-edited number, or a change to the
study script that moves one, fails here until the study table is regenerated."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def study_module() -> ModuleType:
    path = REPO / "benchmarks" / "calibration.py"
    spec = importlib.util.spec_from_file_location("calibration_study", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_study_table_regenerates_from_its_runs(tmp_path: Path) -> None:
    study = study_module()
    committed = REPO / "reports" / "calibration"
    assert (committed / "study.csv").is_file(), "reports/calibration/study.csv is committed"
    study.table(REPO / "results" / "calibration", tmp_path, plots=False)
    for name in ("study.csv", "study.md"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"{name} differs: run `python benchmarks/calibration.py table` and commit it"
        )
    for plot in ("tau_vs_cost.png", "skip_by_epoch.png"):
        assert (committed / plot).stat().st_size > 10_000


def test_every_setting_of_the_study_is_in_the_table() -> None:
    """Each darts setting has its darts and rsps runs; each rsps-only setting its rsps run;
    a whole-split setting (a sweep that spans sessions) is in the table once it has run."""
    study = study_module()
    with (REPO / "reports" / "calibration" / "study.csv").open() as handle:
        rows = {row["setting"]: row for row in csv.DictReader(handle)}
    for name, _, _ in study.SETTINGS:
        assert rows[name]["darts_cpu_s"] and rows[name]["rsps_cpu_s"], name
    for name, _, _ in study.RSPS_ONLY:
        assert rows[name]["rsps_cpu_s"] and not rows[name]["darts_cpu_s"], name
    whole = {n for n, _, _ in study.WHOLE_SPLIT}
    for name in set(rows) & whole:
        assert rows[name]["darts_cpu_s"] or rows[name]["rsps_cpu_s"], name
    assert set(rows) - whole == {n for n, _, _ in study.SETTINGS + study.RSPS_ONLY}
