"""The CI gate can pass, can fail on a broken method, and refuses bad baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.methods.darts import Darts


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("check") / "baseline.json"
    assert (
        main(["check", "--update", "--methods", "darts", "--seeds", "0", "--baseline", str(path)])
        == 0
    )
    return path


def test_unchanged_tree_passes(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "darts" in out and "+0.0000" in out and "WORSE" not in out


def test_broken_method_fails(
    baseline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An α update that does nothing leaves α near uniform: the gap to one-hot grows."""
    monkeypatch.setattr(Darts, "arch_step", lambda self, ctx, train, valid: None)
    assert main(["check", "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "WORSE" in out and "FAIL" in out and "darts" in out.split("FAIL")[1]


def test_missing_baseline_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "check --update" in capsys.readouterr().err


def test_mismatched_baseline_is_usage_error(
    baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(baseline.read_text())
    document["preset_config"]["epochs"] = 99
    other = tmp_path / "other.json"
    other.write_text(json.dumps(document))
    assert main(["check", "--baseline", str(other)]) == 2
    assert "another preset" in capsys.readouterr().err
    document = json.loads(baseline.read_text())
    document["table"]["sha256"] = "0" * 64
    other.write_text(json.dumps(document))
    assert main(["check", "--baseline", str(other)]) == 2
    assert "table" in capsys.readouterr().err


def test_method_missing_from_baseline(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline), "--methods", "darts2"]) == 2
    assert "not in the gap baseline" in capsys.readouterr().err


def test_unknown_tolerance_metric(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline), "--tolerance", "gapp=1"]) == 2
    assert "unknown tolerance" in capsys.readouterr().err
