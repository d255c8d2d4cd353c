"""A parallel smoke sweep, its report, and a sweep in which one job fails."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import config as cfg
from harness import report, results, sweep
from harness.cli import main, summary_table
from harness.report import split_by_config, write_reports
from harness.rundir import RunDir
from harness.runs import load_runs

METHODS = ("darts", "darts2")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two methods × two seeds of the smoke preset, two jobs at a time, through the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    argv = ["run", "--methods", ",".join(METHODS), "--seeds", "2", "--preset", "smoke"]
    assert main([*argv, "--results", str(root), "--jobs", "2"]) == 0
    return root


@pytest.fixture(scope="module")
def report_dir(sweep_dir: Path) -> Path:
    out = sweep_dir.parent / "reports"
    assert main(["report", "--results", str(sweep_dir), "--out", str(out)]) == 0
    return out / "smoke" / "cifar10"


def finals(sweep_dir: Path, method: str) -> list[dict]:
    paths = sorted((sweep_dir / "smoke" / "cifar10" / method).glob("seed-*/final.json"))
    return [json.loads(p.read_text()) for p in paths]


def test_sweep_finished_every_run_with_ranking(sweep_dir: Path) -> None:
    for method in METHODS:
        runs = finals(sweep_dir, method)
        assert [f["seed"] for f in runs] == [0, 1]
        for final in runs:
            assert final["status"] == "finished"
            assert final["ranking"]["samples"] == 20
            assert len(final["ranking"]["cells"]["scores"]) == 20
            assert -1.0 <= final["ranking"]["kendall_tau"] <= 1.0
            expected = final["gap"]["onehot_valid_acc"] - final["nb201"]["cifar10"]["valid"]
            assert final["gap"]["gap_to_nb201"] == pytest.approx(expected)


def test_report_files_exist(report_dir: Path) -> None:
    for table in ("nb201", "harness", "pairwise"):
        for ext in ("csv", "md", "tex"):
            assert (report_dir / f"{table}.{ext}").stat().st_size > 0
    plots = ["c10_test", "gap_acc", "ranking", *(f"alpha_{m}" for m in METHODS)]
    for plot in plots:
        for ext in ("png", "pdf"):
            assert (report_dir / f"{plot}.{ext}").stat().st_size > 0
    assert "![ranking](ranking.png)" in (report_dir / "report.md").read_text()


def test_the_smoke_report_says_it_is_at_test_fixture_scale(report_dir: Path) -> None:
    """Issue 29: the smoke preset ranks 20 cells on 128 images; the page says so and marks
    the τ over 20 (and, for top-20 %, 4) cells as below a meaningful size."""
    page = (report_dir / "report.md").read_text()
    resolution = page[page.index("**What this preset measures on**") : page.index("### Summary")]
    assert "the gap: 128 images" in resolution and "20 cells on 128 images" in resolution
    assert "a τ over 4 cells; **below a meaningful size**" in resolution
    assert "split-half τ: none (needs >= 2 eval batches)" in resolution


def test_tables_hold_methods_and_reference_rows(report_dir: Path) -> None:
    markdown = (report_dir / "nb201.md").read_text()
    latex = (report_dir / "nb201.tex").read_text()
    for text in (markdown, latex):
        assert "darts2" in text and "Optimum of the space" in text
        assert "published, not run here" in text and "GDAS" in text and "54.30" in text
    assert r"\toprule" in latex and r"$\pm$" in latex
    # each published row shows its provenance tag, in both renderings
    assert any(
        line.startswith("| DARTS-V1 | published, not run here | T |")
        for line in markdown.splitlines()
    )
    assert any(
        line.startswith("| DARTS- | published, not run here | U |")
        for line in markdown.splitlines()
    )
    assert any(
        line.startswith("DARTS-V1 & published, not run here & T &") for line in latex.splitlines()
    )
    assert "94.37" in markdown  # the space optimum, C10 test
    harness_md = (report_dir / "harness.md").read_text()
    assert "Kendall τ" in harness_md and "| darts |" in harness_md
    pairwise = pd.read_csv(report_dir / "pairwise.csv")
    assert set(pairwise["metric"]) == {"c10_test", "gap_acc", "alpha_tau"}
    assert (pairwise[["n_a", "n_b"]] == 2).all().all()


TAGS = {"S", "T", "S+T", "S/U", "U"}
CELL_COLUMNS = {
    "c10": "cifar10",
    "c100": "cifar100",
    "in16": "imagenet16",
}


def test_published_rows_carry_a_tag_and_the_table_checked_ones_match_it(data_dir: Path) -> None:
    """Every row is tagged and, unless fully checked (S, T), says why in its note; the
    rows checked against the table equal the lookup of the cell their note names."""
    from harness.benchmark import Benchmark
    from harness.report import load_published

    published = load_published().set_index("method")
    assert set(published["provenance"]) <= TAGS
    doubtful = published[published["provenance"].isin({"S/U", "U"})]
    assert doubtful["note"].str.len().gt(0).all()
    table = Benchmark.load(data_dir)
    cells = {"DARTS-V1": 1835, "DARTS-V2": 1835, "DrNAS": 9930, "β-DARTS": 9930}
    for method, index in cells.items():
        truth = table.lookup(table.cell_at(index))
        for short, dataset in CELL_COLUMNS.items():
            for split in ("valid", "test"):
                value = published.loc[method, f"{short}_{split}_mean"]
                assert value == pytest.approx(truth[dataset][split], abs=0.005), (method, short)
    optimum = table.optimum()
    assert published.loc["Optimal", "in16_valid_mean"] > optimum["imagenet16"]["valid"]
    assert "46.73" in published.loc["Optimal", "note"]  # the mismatch is said, not hidden
    assert "GDAS (DrNAS-style table)" not in published.index  # no source; C100 24.05 (issue 30)


def test_the_nb201_table_says_why_the_published_optimum_is_above_this_tables() -> None:
    """The note shown under the NB201 table names both IN16 valid values and the reason."""
    from harness.report import load_published, nb201_table

    frame = pd.DataFrame({"method": pd.Series(dtype=str)})
    notes = nb201_table(frame, None, load_published()).notes
    assert any("46.77" in n and "46.73" in n and "2·valtest − test" in n for n in notes)


def test_csv_numbers_are_means_of_final_json(sweep_dir: Path, report_dir: Path) -> None:
    nb201 = pd.read_csv(report_dir / "nb201.csv").set_index("method")
    harness = pd.read_csv(report_dir / "harness.csv").set_index("method")
    for method in METHODS:
        runs = finals(sweep_dir, method)
        mean = sum(f["nb201"]["cifar10"]["test"] for f in runs) / len(runs)
        assert nb201.loc[method, "c10_test_mean"] == pytest.approx(mean)
        mean = sum(f["nb201"]["imagenet16"]["valid"] for f in runs) / len(runs)
        assert nb201.loc[method, "in16_valid_mean"] == pytest.approx(mean)
        mean = sum(f["gap"]["gap_acc"] for f in runs) / len(runs)
        assert harness.loc[method, "gap_acc_mean"] == pytest.approx(mean)
        mean = sum(f["ranking"]["kendall_tau"] for f in runs) / len(runs)
        assert harness.loc[method, "rank_kendall_tau_mean"] == pytest.approx(mean)
        assert nb201.loc[method, "seeds"] == 2 and nb201.loc[method, "failed"] == 0
    assert nb201.loc["Optimum of the space", "c10_test_mean"] == pytest.approx(94.37, abs=0.01)
    published = nb201[nb201["kind"] == "published, not run here"]
    assert published.loc["DARTS-V1", "c10_test_mean"] == pytest.approx(54.30)


def test_failing_job_is_recorded_and_the_others_finish(tmp_path: Path, data_dir: Path) -> None:
    jobs = sweep.plan(["darts"], [0, 1], "smoke", {"epochs": "1"}, tmp_path)
    bad = dataclasses.replace(jobs[1].config, train_size=10**9)  # raises inside the job
    jobs[1] = dataclasses.replace(jobs[1], config=bad)
    outcomes = sweep.run_jobs(jobs, data_dir, data_dir / "nb201" / "nb201_table.csv", n_jobs=2)

    assert [o["status"] for o in outcomes] == ["finished", "failed"]
    assert "train_size" in outcomes[1]["reason"]
    failed = tmp_path / "smoke" / "cifar10" / "darts" / "seed-1"
    assert not RunDir(failed).finished  # so a rerun retries it
    record = json.loads((failed / results.FAILED).read_text())
    assert record["status"] == "failed" and "UsageError" in record["reason"]
    assert "failed" in summary_table(outcomes)

    out = tmp_path / "reports"
    write_reports(tmp_path, out, data_dir)
    table = pd.read_csv(out / "smoke" / "cifar10" / "nb201.csv").set_index("method")
    # the failed run was made with another config (train_size), so it has a row of its own
    ok, bad = "darts [train_size=256]", "darts [train_size=1000000000]"
    assert table.loc[ok, "seeds"] == 1 and table.loc[ok, "failed"] == 0
    assert table.loc[bad, "seeds"] == 0 and table.loc[bad, "failed"] == 1
    page = (out / "smoke" / "cifar10" / "report.md").read_text()
    assert f"{bad} seed 1: failed" in page


def test_unreadable_run_is_skipped_with_a_warning(tmp_path: Path) -> None:
    broken = results.run_dir(tmp_path, "smoke", "cifar10", "darts", 0)
    broken.mkdir(parents=True)
    (broken / results.FINAL).write_text("{not json")
    with pytest.warns(UserWarning, match="seed-0"):
        frame = load_runs(tmp_path)
    assert frame.empty


def test_report_names_unreadable_runs_and_table_mismatches(
    sweep_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    root = tmp_path / "results"
    shutil.copytree(sweep_dir, root)
    runs = root / "smoke" / "cifar10"
    (runs / "darts" / "seed-1" / results.FINAL).write_text('{"status": "fini')  # truncated
    foreign = runs / "darts2" / "seed-0" / results.FINAL
    final = json.loads(foreign.read_text())
    final["table"]["version"] = "nb201-table@000000000000"
    results.write_final(foreign, final)

    out = tmp_path / "reports"
    with pytest.warns(UserWarning, match=r"unreadable run .*darts/seed-1"):
        write_reports(root, out, data_dir)
    group = out / "smoke" / "cifar10"
    page = (group / "report.md").read_text()
    assert f"unreadable run skipped: {runs / 'darts' / 'seed-1'}" in page
    assert "table mismatch: 1 run(s) used nb201-table@000000000000" in page
    assert "WARNING: unreadable run skipped" in (group / "nb201.md").read_text()
    assert "WARNING: table mismatch" in (group / "harness.md").read_text()
    table = pd.read_csv(group / "nb201.csv").set_index("method")
    assert table.loc["darts", "seeds"] == 1 and table.loc["darts2", "seeds"] == 2


def test_clean_report_has_no_warnings(report_dir: Path) -> None:
    assert "Warnings" not in (report_dir / "report.md").read_text()
    assert "WARNING" not in (report_dir / "nb201.md").read_text()


# --- issue 14: rows never pool different configs; a bad group never stops the others ----
def _frame(rows: list[tuple[str, dict | None]]) -> pd.DataFrame:
    """A minimal runs frame: method and recorded config per run."""
    base = cfg.resolve("smoke", "darts", {}, None).to_dict()
    records = []
    for seed, (method, change) in enumerate(rows):
        config = None if change is None else {**base, "method": method, "seed": seed, **change}
        records.append({"method": method, "seed": seed, "config": config})
    return pd.DataFrame(records)


def test_split_by_config_names_what_differs_and_ignores_seed_and_execution_fields() -> None:
    same = _frame([("darts", {"threads": 1}), ("darts", {"threads": 2, "device": "cpu"})])
    frame, note = split_by_config(same)
    assert list(frame["method"]) == ["darts", "darts"] and note == ""

    runs = [
        ("darts", {"epochs": 3}),
        ("darts", {"epochs": 1}),
        ("darts", None),  # killed before config.json: cannot be placed
        ("cdao", {"epochs": 3, "method_options": {"mu": 0.0}}),
        ("cdao", {"epochs": 3, "method_options": {"mu": 1.0}}),
    ]
    frame, note = split_by_config(_frame(runs))
    assert list(frame["method"]) == [
        "darts [epochs=3]",
        "darts [epochs=1]",
        "darts [config unknown]",
        "cdao [epochs=3, cdao.mu=0.0]",
        "cdao [epochs=3, cdao.mu=1.0]",
    ]
    assert list(frame["base_method"]) == ["darts"] * 3 + ["cdao"] * 2
    assert "split by epochs, cdao.mu" in note

    frame, _ = split_by_config(_frame([("darts", {"epochs": 3}), ("darts", None)]))
    assert list(frame["method"]) == ["darts", "darts"]  # one config: the unknown joins it


def test_a_run_from_before_a_field_pools_with_runs_that_behave_the_same() -> None:
    """A config.json without ``select`` or ``resolution`` (written before those fields)
    is argmax's at 32 px: it pools with runs recording those values, and is told
    apart from a run recording another."""
    frame = _frame([("darts", {}), ("darts", {"select": "argmax", "resolution": 32})])
    for field in ("select", "resolution"):
        del frame.loc[0, "config"][field]
    split, note = split_by_config(frame)
    assert list(split["method"]) == ["darts", "darts"] and note == ""

    frame.loc[1, "config"]["resolution"] = 16
    split, note = split_by_config(frame)
    assert list(split["method"]) == ["darts [resolution=32]", "darts [resolution=16]"]
    assert "rows are split by resolution " in note


def test_an_argmax_row_is_not_split_by_fields_only_pt_reads() -> None:
    """An argmax run recorded before DARTS-PT's fields existed (they read as the old PT)
    pools with one recording today's PT defaults: argmax never reads them. The PT rows
    of those runs are still told apart."""
    frame = _frame([("darts", {}), ("darts", {"pt_tune": "code", "pt_alpha": "step"})])
    for field in ("pt_tune", "pt_alpha", "pt_eval"):
        frame.loc[0, "config"].pop(field, None)
    split, note = split_by_config(frame)
    assert list(split["method"]) == ["darts", "darts"] and note == ""

    for config in frame["config"]:
        config["select"] = "pt"
    split, note = split_by_config(frame)
    assert split["method"].iloc[0] != split["method"].iloc[1]
    assert "pt_alpha" in note


def test_report_splits_rows_of_runs_made_with_different_configs(
    sweep_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    """Seed 0 as the sweep made it, seed 1 with one epoch more: two rows, never pooled."""
    root = tmp_path / "results"
    shutil.copytree(sweep_dir / "smoke" / "cifar10" / "darts", root / "smoke/cifar10/darts")
    run = root / "smoke" / "cifar10" / "darts" / "seed-1"
    final = json.loads((run / results.FINAL).read_text())
    final["config"]["epochs"] += 1
    results.write_final(run / results.FINAL, final)

    out = tmp_path / "reports"
    write_reports(root, out, data_dir)
    table = pd.read_csv(out / "smoke" / "cifar10" / "nb201.csv").set_index("method")
    assert table.loc["darts [epochs=3]", "seeds"] == 1
    assert table.loc["darts [epochs=4]", "seeds"] == 1
    assert "darts" not in table.index
    page = (out / "smoke" / "cifar10" / "report.md").read_text()
    assert "never pooled: rows are split by epochs" in page
    assert (out / "smoke" / "cifar10" / "alpha_darts_epochs=4.png").is_file()


def test_group_without_a_finished_run_is_reported_and_the_others_too(
    sweep_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    root = tmp_path / "results"
    shutil.copytree(sweep_dir, root)
    (root / "ci" / "cifar10" / "darts" / "seed-0").mkdir(parents=True)  # unfinished
    failed = root / "ci" / "cifar10" / "cdao" / "seed-1"
    failed.mkdir(parents=True)
    results.write_json(failed / results.FAILED, {"status": "failed", "reason": "OSError: x"})

    out = tmp_path / "reports"
    assert main(["report", "--results", str(root), "--out", str(out)]) == 0
    ci = out / "ci" / "cifar10"
    table = pd.read_csv(ci / "nb201.csv").set_index("method")
    assert table.loc["darts", "unfinished"] == 1 and table.loc["cdao", "failed"] == 1
    assert table.loc["darts", "seeds"] == 0
    assert "No run of this group finished" in (ci / "nb201.md").read_text()
    page = (ci / "report.md").read_text()
    assert "cdao seed 1: failed (OSError: x)" in page and "darts seed 0: unfinished" in page
    assert not (ci / "c10_test.png").exists()
    assert (out / "smoke" / "cifar10" / "c10_test.png").is_file()


def test_a_failing_group_does_not_stop_the_others(
    sweep_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "results"
    shutil.copytree(sweep_dir / "smoke", root / "aaa")  # reported first, and it fails
    shutil.copytree(sweep_dir / "smoke", root / "smoke")
    original = report.write_plots

    def broken_for_aaa(frame: pd.DataFrame, out: Path) -> list[Path]:
        if "aaa" in out.parts:
            raise TypeError("a bug in one group")
        return original(frame, out)

    monkeypatch.setattr(report, "write_plots", broken_for_aaa)
    out = tmp_path / "reports"
    assert main(["report", "--results", str(root), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == "harness: error: report of aaa/cifar10: TypeError: a bug in one group\n"
    assert (out / "smoke" / "cifar10" / "report.md").is_file()
