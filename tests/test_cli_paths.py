"""Issue 32: paths on the command line. A mistyped ``--results`` or ``--out`` fails the
``report --check`` gate (exit 2) instead of passing having checked nothing; a
``<preset>`` subtree is a valid ``--results``; a user's sweeps and reports go to
``out/`` by default, never into the committed ``results/`` and ``reports/``.

Nothing here trains: the runs are synthetic (``test_committed_reports.synthetic_run``).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from test_committed_reports import synthetic_run

from harness import committed, layout, paths
from harness.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``results/smoke/cifar10`` with 2 runs and ``reports/`` regenerated from it."""
    root = tmp_path_factory.mktemp("paths")
    for seed in (0, 1):
        synthetic_run(root / "results", "darts", seed, 80.0 + seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert quiet_main(["report", "--results", "results", "--out", "reports"]) == 0
    return root


@pytest.fixture
def work(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the tree to run commands in (as the working directory)."""
    for name in ("results", "reports"):
        shutil.copytree(tree / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def quiet_main(argv: list[str]) -> int:
    """``main`` without the NB201 table (no optimum row: fast, no data needed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no space-optimum row")
        try:
            return main([*argv, "--data-dir", "no-table"])
        except SystemExit as exit_:
            return int(exit_.code or 0)


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("harness: error: "), err
    return err


@pytest.mark.parametrize(
    ("results", "out", "message"),
    [
        ("typo-dir", "typo-out", "--results typo-dir: no such directory"),
        ("reslts", "reports", "no such directory; did you mean --results results?"),
        ("results", "typo-out", "--out typo-out: no such directory; nothing to compare with"),
        ("results", "empty", "--out empty: no reports there"),
        ("empty", "reports", "--results empty: no runs there (expected <preset>/<dataset>/"),
        ("results/smoke/cifar10/darts", "reports", "did you mean --results results?"),
        (".", "reports", "--results .: no runs there (expected <preset>/<dataset>/<method>/"),
    ],
)
def test_report_check_with_a_wrong_path_fails_with_exit_2(
    work: Path, results: str, out: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row 1: ``report --check`` on a mistyped path said ``ok: 0 report(s)`` and exit 0."""
    (work / "empty").mkdir()
    assert quiet_main(["report", "--check", "--results", results, "--out", out]) == 2
    err = one_error(capsys)
    assert message in err, err
    assert not (work / "typo-out").exists()
    if results == ".":
        assert err.endswith("did you mean --results results?"), err


def test_report_reads_a_preset_subtree_as_that_part_of_the_results(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row 2: ``--results results/smoke`` said "no runs under results/smoke". A subtree's
    report is byte for byte that part of the whole tree's (its manifest names
    ``results/smoke/cifar10`` either way), and ``--check`` compares only that part."""
    for subtree in ("results/smoke", "results/smoke/cifar10"):
        assert quiet_main(["report", "--results", subtree, "--out", "again"]) == 0
        assert committed.compare_reports(Path("reports"), Path("again")) == []
        shutil.rmtree("again")
    other = Path("reports") / "proxy" / "cifar10"  # a report the subtree does not cover
    shutil.copytree(Path("reports") / "smoke" / "cifar10", other)
    capsys.readouterr()
    assert quiet_main(["report", "--check", "--results", "results/smoke", "--out", "reports"]) == 0
    assert "ok: 1 report(s) under reports regenerate from results/smoke" in capsys.readouterr().out
    assert quiet_main(["report", "--check", "--results", "results", "--out", "reports"]) == 1
    assert f"differs: {other}: no results behind it" in capsys.readouterr().out


def test_layout_scope_of_each_level(work: Path) -> None:
    run = Path("results") / "smoke" / "cifar10" / "darts" / "seed-0"
    assert layout.run_dirs(Path("results")) == layout.run_dirs(Path("results/smoke")) != []
    assert [layout.scope(p) for p in (Path("results"), run.parents[1], run.parents[2])] == [
        "",
        "smoke/cifar10",
        "smoke",
    ]
    assert layout.run_dirs(run.parent) == []  # a method's directory is not a results tree
    assert layout.in_scope("smoke/cifar10", "smoke") and not layout.in_scope("smoke2/x", "smoke")


def test_user_output_goes_to_out_by_default_and_leaves_the_committed_trees_alone(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row 5: ``run`` wrote ``results/smoke`` beside the committed runs, plain ``report``
    rewrote the committed ``reports/`` and ``report --check`` then checked the user's
    sweep too. Now both default to ``out/``, which git ignores."""
    args = build_parser().parse_args(["run"])
    report_args = build_parser().parse_args(["report"])
    assert (args.results, report_args.results, report_args.out) == (
        paths.RESULTS,
        paths.RESULTS,
        paths.REPORTS,
    )
    assert all(Path(p).parts[0] == "out" for p in (paths.RESULTS, paths.REPORTS))
    shutil.copytree(Path("results"), Path(paths.RESULTS))  # a user's sweep in the default place
    before = {p: p.read_bytes() for p in Path("reports").rglob("*") if p.is_file()}
    assert quiet_main(["report"]) == 0
    assert (Path(paths.REPORTS) / "smoke" / "cifar10" / "report.md").is_file()
    assert {p: p.read_bytes() for p in Path("reports").rglob("*") if p.is_file()} == before
    capsys.readouterr()
    assert quiet_main(["report", "--check"]) == 0
    assert f"under {paths.REPORTS} regenerate from {paths.RESULTS}" in capsys.readouterr().out


def test_git_ignores_the_default_output_and_nothing_committed() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    names = [f"{paths.RESULTS}/smoke/cifar10/darts/seed-0/final.json", f"{paths.REPORTS}/x.md"]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", *names],
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == names
    kept = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", "reports/cpu/cifar10/nb201.md"],
        capture_output=True,
    )
    assert kept.returncode == 1  # not ignored
