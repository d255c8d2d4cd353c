"""The committed calibration study (reports/calibration) regenerates from its committed
runs (results/calibration), table for table: a hand-edited number, or a change to the
study script that moves one, fails here until the study table is regenerated."""

from __future__ import annotations

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


def test_every_setting_of_the_table_has_both_methods_run(tmp_path: Path) -> None:
    study = study_module()
    rows = (REPO / "reports" / "calibration" / "study.csv").read_text().splitlines()[1:]
    assert len(rows) >= 6  # the one-factor settings at least
    for line in rows:
        assert "," in line and line.split(",")[2] != "", f"an rsps run is missing: {line}"
    assert {name for name, _, _ in study.SETTINGS} >= {r.split(",")[0] for r in rows}
