"""Committed reports regenerate from committed results, byte for byte; a hand-edited
cell, a stale or missing file and a report without results are each caught.

Nothing here trains: ``report`` only reads run files. The synthetic runs are written
with the harness's own writers (checksums included), so they load like real ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from harness import committed as report_check
from harness import manifest, results, rundir
from harness.cli import main
from harness.report import write_reports
from harness.runs import load_runs

REPO = Path(__file__).resolve().parents[1]
ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|none~2|",
)
TABLE = {"version": "nb201-table@synthetic", "sha256": "ab" * 32}
GROUP = Path("smoke") / "cifar10"


def test_committed_reports_regenerate_from_committed_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path
) -> None:
    """The CI gate of issue 20: every ``reports/<preset>/<dataset>`` has results behind
    it under ``results/`` and regenerates from them (tables byte for byte, plots by
    presence and size). On failure, run ``python -m harness report --results results
    --out reports`` and commit what changed, with the change that moved it."""
    root = committed_results(tmp_path)
    monkeypatch.chdir(root)  # the manifests record `results` as the committed command gave it
    reports = REPO / "reports"
    if not report_check.report_groups(reports) and not results.run_dirs(Path("results")):
        pytest.skip("no committed reports and no committed results: nothing to regenerate")
    assert report_check.check_reports(Path("results"), reports, data_dir) == []


def committed_results(target: Path) -> Path:
    """A directory whose ``results/`` holds the run files git tracks (copied under
    ``target``), so runs left in a working tree uncommitted (ignored checkpoints, a sweep
    in progress) do not count, as in a clean clone; outside a git checkout, the
    repository itself."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--", "results"],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return REPO
    for name in filter(None, done.stdout.decode().split("\0")):
        if (REPO / name).is_file():  # a tracked file deleted in the working tree is gone
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, target / name)
    return target


# --- the machinery, on a synthetic results tree ------------------------------------------
def synthetic_run(root: Path, method: str, seed: int, c10: float, epochs: int = 2) -> Path:
    """A finished run as the search loop writes it, with made-up numbers."""
    directory = results.run_dir(root, "smoke", "cifar10", method, seed)
    arch = ARCHS[seed % len(ARCHS)]
    config = {"method": method, "seed": seed, "preset": "smoke", "dataset": "cifar10"}
    nb201 = {
        "cifar10": {"valid": c10 - 3.0, "test": c10},
        "cifar100": {"valid": c10 - 25.0, "test": c10 - 25.5},
        "imagenet16": {"valid": c10 - 50.0, "test": c10 - 50.25},
    }
    alpha = [[0.1 + 0.05 * op + 0.01 * epoch for op in range(5)] for epoch in range(6)]
    records = [
        {"epoch": e, "arch": arch, "alpha": alpha, "nb201": nb201, "gap_acc": 1.0 + e + seed}
        for e in range(1, epochs + 1)
    ]
    results.write_json(directory / results.CONFIG, {**config, rundir.TABLE_KEY: TABLE["sha256"]})
    results.write_jsonl(directory / results.EPOCHS, records)
    final = {
        "status": "finished",
        "arch": arch,
        "nb201": nb201,
        "epochs_done": epochs,
        "config": config,
        "gap": {"gap_acc": 2.0 + seed / 3, "gap_loss": 0.1},
        "wall_s": 10.0 + seed,
        "table": TABLE,
        "environment": {"code_version": "0.1.0+gsynthetic"},
        "epochs_sha256": results.text_digest(results.jsonl_text(records)),
    }
    results.write_final(directory / results.FINAL, final)
    return directory


def report(results_dir: Path, out: Path, no_table: Path) -> list[Path]:
    """``write_reports`` without the NB201 table (no optimum row: fast, no data needed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no space-optimum row")
        return write_reports(results_dir, out, no_table)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``results/`` with 2 methods × 2 seeds, a committed-style ``reports/`` and a
    second regeneration ``again/``, all in one directory (relative paths within it)."""
    root = tmp_path_factory.mktemp("tree")
    for method, base in (("darts", 80.0), ("da2s", 90.0)):
        for seed in (0, 1):
            synthetic_run(root / "results", method, seed, base + 1.25 * seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        report(Path("results"), Path("reports"), root / "no-table")
        report(Path("results"), Path("again"), root / "no-table")
    return root


@pytest.fixture
def committed(tree: Path, tmp_path: Path) -> Path:
    """A copy of the tree's reports to edit."""
    return Path(shutil.copytree(tree / "reports", tmp_path / "reports"))


def test_regenerating_gives_the_same_bytes_for_every_file(tree: Path) -> None:
    first, second = tree / "reports" / GROUP, tree / "again" / GROUP
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert {"nb201.csv", "nb201.md", "nb201.tex", "report.md", "manifest.json"} <= set(names)
    assert {"alpha_darts.png", "alpha_da2s.pdf", "c10_test.pdf"} <= set(names)
    for name in names:  # PDFs too: no creation date, no library version
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert report_check.compare_reports(tree / "reports", tree / "again") == []


def test_manifest_traces_the_numbers_to_their_runs(tree: Path) -> None:
    out = tree / "reports" / GROUP
    data = json.loads((out / manifest.MANIFEST).read_text())
    assert data["results"] == "results/smoke/cifar10"
    assert data["runs"] == {
        "total": 4,
        "finished": 4,
        "diverged": 0,
        "failed": 0,
        "unfinished": 0,
        "unreadable": 0,
    }
    assert data["nb201_table_sha256"] == [TABLE["sha256"]]
    assert data["run_code_versions"] == ["0.1.0+gsynthetic"]
    assert data["reference_table"] is None  # no table given: no optimum row
    paths = [run["path"] for run in data["run_list"]]
    assert paths == ["da2s/seed-0", "da2s/seed-1", "darts/seed-0", "darts/seed-1"]
    run_dir = tree / "results" / GROUP / "darts" / "seed-1"
    assert data["run_list"][3]["sha256"] == manifest.run_digest(run_dir)
    assert data["files"] == sorted(p.name for p in out.iterdir() if p.name != manifest.MANIFEST)
    line = manifest.summary(data)
    assert "`results/smoke/cifar10`: 4 runs (4 finished)" in line
    assert line in (out / "nb201.md").read_text()
    assert f"% {line}" in (out / "harness.tex").read_text()
    assert "results: `results/smoke/cifar10`" in (out / "report.md").read_text()
    assert "results" not in (out / "nb201.csv").read_text().splitlines()[0]  # CSV stays plain


def test_a_changed_run_file_changes_the_results_digest(tree: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tree / "results", tmp_path / "results"))
    before = manifest.run_digest(copy / GROUP / "da2s" / "seed-0")
    (copy / GROUP / "da2s" / "seed-0" / results.CONFIG).write_text("{}\n")
    assert manifest.run_digest(copy / GROUP / "da2s" / "seed-0") != before


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("nb201.csv", "90.625", "90.626"),
        ("nb201.md", "90.62 ± 0.88", "90.63 ± 0.88"),
        ("nb201.tex", r"90.62 $\pm$ 0.88", r"90.63 $\pm$ 0.88"),
        ("harness.md", "| da2s |", "| da2s* |"),
        ("manifest.json", '"finished": 4', '"finished": 5'),
    ],
)
def test_a_hand_edited_cell_is_caught(committed: Path, tree: Path, name: str, old: str, new: str):
    path = committed / GROUP / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {name}: the synthetic numbers changed"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = report_check.compare_reports(committed, tree / "again")
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: line ") and new in problems[0], problems


def test_plots_are_compared_by_presence_and_size(committed: Path, tree: Path) -> None:
    group = committed / GROUP
    with (group / "c10_test.png").open("ab") as handle:  # a font change: a few bytes more
        handle.write(b"\0" * 64)
    assert report_check.compare_reports(committed, tree / "again") == []
    (group / "gap_acc.pdf").write_bytes((group / "gap_acc.pdf").read_bytes()[:100])
    (group / "alpha_darts.png").unlink()
    problems = report_check.compare_reports(committed, tree / "again")
    assert [p.split(": ", 1)[0] for p in problems] == [
        str(group / "alpha_darts.png"),
        str(group / "gap_acc.pdf"),
    ]
    assert "missing" in problems[0] and "beyond ±50%" in problems[1]


def test_a_stale_file_and_a_report_without_results_are_caught(committed: Path, tree: Path) -> None:
    (committed / GROUP / "alpha_rdarts.png").write_bytes(b"old plot")
    orphan = committed / "proxy" / "cifar10"
    orphan.mkdir(parents=True)
    (orphan / "nb201.md").write_text("| darts | 93.00 |\n")
    problems = report_check.compare_reports(committed, tree / "again")
    assert problems == [
        f"{orphan}: no results behind it (regenerating wrote no proxy/cifar10); "
        "commit its results or remove the report",
        f"{committed / GROUP / 'alpha_rdarts.png'}: not written by a regeneration (stale)",
    ]
    shutil.rmtree(committed / "smoke")
    problems = report_check.compare_reports(committed, tree / "again")
    assert any(
        p.startswith(f"{committed / GROUP}: missing, but the results give one") for p in problems
    )


def test_regenerating_removes_what_the_last_report_wrote_and_nothing_else(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method whose runs were removed loses its plots on the next ``report``; a file
    the user put beside the report stays."""
    shutil.copytree(tree / "results", tmp_path / "results")
    shutil.copytree(tree / "reports", tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    out = Path("reports") / GROUP
    (out / "notes.txt").write_text("mine\n")
    shutil.rmtree(Path("results") / GROUP / "da2s")
    report(Path("results"), Path("reports"), tmp_path / "no-table")
    assert not (out / "alpha_da2s.png").exists() and not (out / "alpha_da2s.pdf").exists()
    assert (out / "alpha_darts.png").exists()
    assert (out / "notes.txt").read_text() == "mine\n"
    assert json.loads((out / manifest.MANIFEST).read_text())["runs"]["total"] == 2
    assert len(load_runs(Path("results"))) == 2


def test_an_unreadable_run_is_counted_and_named_by_its_relative_path(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tree / "results", tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    (Path("results") / GROUP / "darts" / "seed-1" / results.FINAL).write_text("{garbled")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "skipping unreadable run")
        report(tmp_path / "results", Path("reports"), tmp_path / "no-table")  # absolute
    out = Path("reports") / GROUP
    data = json.loads((out / manifest.MANIFEST).read_text())
    assert data["runs"]["total"] == 3 and data["runs"]["unreadable"] == 1
    assert data["unreadable"] == ["darts/seed-1"]
    assert data["results"] == "results/smoke/cifar10"  # inside the working directory
    assert (
        "WARNING: unreadable run skipped: results/smoke/cifar10/darts/seed-1 ("
        in (out / "nb201.md").read_text()
    )
    assert "(3 finished, 1 unreadable)" in manifest.summary(data)


def test_cli_report_check(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    shutil.copytree(tree / "results", tmp_path / "results")
    shutil.copytree(tree / "reports", tmp_path / "reports")
    monkeypatch.chdir(tmp_path)
    argv = ["report", "--results", "results", "--out", "reports", "--check"]
    argv += ["--data-dir", str(tmp_path / "no-table")]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no space-optimum row")
        assert main(argv) == 0
        assert "ok: 1 report(s) under reports regenerate from results" in capsys.readouterr().out
        csv = Path("reports") / GROUP / "harness.csv"
        csv.write_text(csv.read_text().replace("da2s", "da2s ", 1))
        assert main(argv) == 1
    out = capsys.readouterr().out
    assert (
        f"differs: {csv}: line 2 column 5 differs" in out
        and "FAIL: reports does not regenerate" in out
    )
    assert sorted(p.name for p in (Path("reports") / GROUP).iterdir()) == sorted(
        p.name for p in (tree / "reports" / GROUP).iterdir()
    )  # --check wrote nothing beside the reports
