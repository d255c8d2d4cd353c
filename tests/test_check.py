"""The CI gate can pass, fails on broken methods (inside its worker processes), runs
with pinned kernels, and refuses bad baselines."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import mutations
import pytest

from harness import check
from harness.cli import main
from harness.paths import find_data_dir


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("check") / "baseline.json"
    argv = ["check", "--update", "--methods", "darts,da2s", "--seeds", "0", "--baseline"]
    assert main([*argv, str(path)]) == 0
    return path


def _broken(monkeypatch: pytest.MonkeyPatch, setup: Callable[[], None]) -> None:
    """Make every measurement of this test run ``setup`` in its worker processes."""
    monkeypatch.setattr(check, "measure", functools.partial(check.measure, setup=setup))


def _failed_methods(out: str) -> list[str]:
    lines = [line for line in out.splitlines() if line.startswith("FAIL")]
    return lines[0].rsplit(":", 1)[1].replace(" ", "").split(",") if lines else []


def test_unchanged_tree_passes(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline)]) == 0
    captured = capsys.readouterr()
    assert "darts" in captured.out and "+0.0000" in captured.out
    assert "WORSE" not in captured.out
    assert "2/2 runs bit-identical" in captured.out  # same machine: the exact layer agrees
    assert "check [2/2]" in captured.err  # a progress line per finished run


@pytest.mark.parametrize("method", ["darts", "da2s"])
def test_frozen_alpha_fails_and_names_the_method(
    baseline: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    method: str,
) -> None:
    """An α update that does nothing leaves α near uniform: the gap to one-hot grows."""
    _broken(monkeypatch, mutations.alpha_frozen(method))
    assert main(["check", "--baseline", str(baseline)]) == 1
    assert _failed_methods(capsys.readouterr().out) == [method]


def test_da2s_entropy_sign_flip_fails(
    baseline: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken(monkeypatch, mutations.da2s_entropy_rewarded)
    assert main(["check", "--baseline", str(baseline), "--methods", "da2s"]) == 1
    assert _failed_methods(capsys.readouterr().out) == ["da2s"]


def test_worker_kernels_are_pinned() -> None:
    """Each gate run happens in a worker whose kernels are the pinned AVX2 paths, in
    float64: the two things that make its numbers the same on every machine."""
    run = check.measure(["darts"], [0], find_data_dir())["darts"]["0"]
    fingerprint = run["fingerprint"]
    assert fingerprint["env"] == check.PINNED_ENV
    if "avx2" in fingerprint["isa"]:
        assert fingerprint["aten_capability"] == "AVX2"
    assert fingerprint["threads"] == 1


def test_native_kernels_give_the_pinned_numbers(baseline: Path) -> None:
    """On this machine's own instruction set (no pins), float64 gives the pinned
    numbers: what the gate reads does not depend on the kernels oneDNN, MKL, ATen pick."""
    pinned = json.loads(baseline.read_text())["methods"]["darts"]["0"]
    native = check.measure(["darts"], [0], find_data_dir(), pin=False)["darts"]["0"]
    assert native["fingerprint"]["env"] == {}
    assert native["arch"] == pinned["arch"]
    assert native["gap_acc"] == pinned["gap_acc"]
    for metric in ("gap_loss", "alpha_distance"):
        assert native[metric] == pytest.approx(pinned[metric], abs=1e-6)


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


def test_alpha_travel_catches_a_frozen_alpha_that_barely_moved_anyway() -> None:
    """rdarts moves α little at ci scale (distance 0.797 of uniform's 0.8); frozen, it stays
    at 0.7999: inside the absolute α-distance tolerance, but all of its travel is gone."""

    def runs(distance: float) -> dict:
        return {"0": {"gap_acc": 5.0, "gap_loss": 0.1, "alpha_distance": distance}}

    verdicts = check.compare(
        {"methods": {"rdarts": runs(0.797)}}, {"rdarts": runs(0.7999)}, check.DEFAULT_TOLERANCE
    )
    worse = {v.metric for v in verdicts if not v.ok}
    assert worse == {check.TRAVEL}
    half = check.compare(
        {"methods": {"rdarts": runs(0.797)}}, {"rdarts": runs(0.7984)}, check.DEFAULT_TOLERANCE
    )
    assert all(v.ok for v in half)  # travel 0.00375 → 0.002: shrunk by less than half


def test_bad_jobs_is_usage_error(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_method_missing_from_baseline(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline), "--methods", "darts2"]) == 2
    assert "not in the gap baseline" in capsys.readouterr().err


def test_unknown_tolerance_metric(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--baseline", str(baseline), "--tolerance", "gapp=1"]) == 2
    assert "unknown tolerance" in capsys.readouterr().err
