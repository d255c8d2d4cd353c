"""The report of issue 29 on synthetic runs: the summary leads, one seed shows no spread,
rows that read the same supernets are paired and labelled, and ``load_runs`` has the
``select`` column the documented recipe groups by."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_committed_reports import synthetic_run

import harness
from harness import results
from harness.benchmark import seed_spread
from harness.report import write_reports

FIRST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|"
ARGMAX = FIRST + "skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
PT = FIRST + "nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def nb201(c10: float) -> dict[str, dict[str, float]]:
    return {
        "cifar10": {"valid": c10 - 3.0, "test": c10},
        "cifar100": {"valid": c10 - 25.0, "test": c10 - 25.5},
        "imagenet16": {"valid": c10 - 50.0, "test": c10 - 50.25},
    }


def with_pt(directory: Path, seed: int) -> None:
    """Make a synthetic run a ``select=pt`` run: argmax's and PT's cells recorded, PT's
    the headline; PT is better by about one point on every seed, while the seeds spread
    over ten."""
    final = results.read_final(directory)
    argmax = {"arch": ARGMAX, "nb201_index": 1, "nb201": nb201(80.0 + 2 * seed)}
    pt = {"arch": PT, "nb201_index": 2, "nb201": nb201(81.0 + 2.1 * seed)}
    final.update(arch=PT, nb201=pt["nb201"], nb201_index=2, selection="pt")
    final["selections"] = {"argmax": argmax, "pt": pt}
    final["config"] = {**final["config"], "select": "pt"}
    results.write_final(directory / results.FINAL, final)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stats")
    for seed in range(6):
        with_pt(synthetic_run(root / "results", "darts", seed, 80.0), seed)
    synthetic_run(root / "results", "snas", 0, 89.61)
    return root


@pytest.fixture(scope="module")
def page(tree: Path, data_dir: Path) -> Path:
    write_reports(tree / "results", tree / "reports", data_dir)
    return tree / "reports" / "smoke" / "cifar10"


def test_the_summary_leads_and_the_all_pairs_tests_have_their_own_file(page: Path) -> None:
    text = (page / "report.md").read_text()
    assert text.index("### Summary") < text.index("**Reading**") < text.index("### NAS-Bench-201")
    assert "All pairs of rows" not in text and "(pairwise.md)" in text
    assert "All pairs of rows" in (page / "pairwise.md").read_text()
    assert "**What this preset measures on**" in text


def test_one_seed_shows_its_value_without_a_spread(page: Path) -> None:
    summary = pd.read_csv(page / "summary.csv").set_index("method")
    snas = summary.loc["snas [select=argmax]"]
    assert snas["c10_test_mean"] == pytest.approx(89.61)
    assert pd.isna(snas["c10_test_std"]) and pd.isna(snas["c10_test_ci_low"])
    line = next(row for row in (page / "summary.md").read_text().splitlines() if "snas" in row)
    assert "| 89.61 |" in line and "±" not in line and "0.00]" not in line
    nb201 = next(row for row in (page / "nb201.md").read_text().splitlines() if "snas" in row)
    assert "89.61 |" in nb201 and "± 0.00" not in nb201 and "| 10 |" in nb201


def test_rows_reading_the_same_runs_are_paired_and_labelled(page: Path) -> None:
    """argmax against PT on the same six supernets: a one-point gain on every seed is
    significant paired (p = 2/64) though the seeds spread over ten points; the supernet
    statistics (gap, α-τ) are not tested between them, since they are the same numbers."""
    tests = pd.read_csv(page / "comparisons.csv")
    twin = tests[
        (tests["method_a"] == "darts [select=argmax]") & (tests["method_b"] == "darts [select=pt]")
    ]
    assert twin["metric"].tolist() == ["c10_test"]
    row = twin.iloc[0]
    assert row["test"] == "Wilcoxon signed-rank (paired)" and row["p"] == pytest.approx(2 / 64)
    assert row["shift"] == pytest.approx(-1.25)
    assert (tests["p"] >= tests["smallest_p"] - 1e-12).all()
    assert (tests["p_holm"] >= tests["p"]).all()
    assert "darts [select=pt] *" in (page / "summary.md").read_text()
    assert not (page / "alpha_darts_select=pt.png").exists()
    assert (page / "alpha_darts_select=argmax.png").exists() and (page / "c10_seeds.png").exists()


def test_discretization_is_judged_by_the_table(page: Path, data_dir: Path) -> None:
    """Each run's cell beside the benchmark's own seed spread of that cell (looked up by
    its NB201 index); α-τ and edge decisions from its last α and cell."""
    runs = pd.read_csv(page / "runs.csv")
    assert runs["alpha_tau"].between(-1, 1).all() and runs["edges_right"].between(0, 1).all()
    spread = seed_spread(data_dir)
    pt = runs[runs["method"] == "darts [select=pt]"]
    assert pt["bench_seed_std"].tolist() == pytest.approx([spread.loc[2, "std"]] * len(pt))
    assert (pt["bench_seed_n"] == spread.loc[2, "n"]).all()
    assert runs.loc[runs["method"].str.startswith("snas"), "bench_seed_n"].isna().all()


def test_load_runs_has_the_select_column_the_documented_recipe_groups_by(tree: Path) -> None:
    runs = harness.load_runs(tree / "results")
    finished = runs[runs["status"] == "finished"]
    means = finished.groupby(["method", "select"])["c10_test"].mean()
    assert means[("darts", "argmax")] == pytest.approx(85.0)  # 80 + 2·mean(seed)
    assert means[("darts", "pt")] == pytest.approx(86.25)
    assert means[("snas", "argmax")] == pytest.approx(89.61)
    assert json.dumps(sorted(set(finished["select"]))) == '["argmax", "pt"]'


def test_a_search_time_interval_never_reaches_below_zero_seconds() -> None:
    """Two seeds' search times far apart give a t-interval below zero; the summary clips
    it at 0 s as it clips accuracies at 100 % (the upper end stays the t-interval's)."""
    import pandas as pd

    from harness.report import tables

    row = tables._mean_std_columns(pd.DataFrame({"search_s": [600.0, 1400.0]}), ["search_s"])
    assert row["search_s_ci_low"] == 0.0 and row["search_s_ci_high"] > 5000
    assert row["search_s_mean"] == 1000.0
