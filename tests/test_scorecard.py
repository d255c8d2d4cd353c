"""The scorecard judges each published finding by its fixed rule, on constructed sweeps
whose verdict is known, and says "not run" where the sweep has no such runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import report, runs, scorecard

ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
    "|skip_connect~0|skip_connect~1|skip_connect~2|"
)
BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
FOUR_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
    "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
REPO = Path(__file__).resolve().parents[1]


def run(method: str, seed: int, arch: str = BEST, c10: float = 94.0, **extra: object) -> dict:
    row = {
        "method": method,
        "seed": seed,
        "status": "finished",
        "arch": arch,
        "c10_test": c10,
        "config": {"select": extra.pop("select", "argmax")},
        "rank_kendall_tau": float("nan"),
        "ranking_cells": None,
    }
    row.update(extra)
    return row


def verdicts(rows: list[dict]) -> dict[str, str]:
    frame = pd.DataFrame(rows)
    published = report.load_published()
    found = scorecard.scorecard(frame, published, preset="test-preset")
    keys = [f.key for f in scorecard.FINDINGS]
    return dict(zip(keys, (r["verdict"] for r in found), strict=True))


def test_a_sweep_without_the_methods_is_not_run_everywhere() -> None:
    assert set(verdicts([run("cdao", 0)]).values()) == {scorecard.NOT_RUN}


def test_uniform_ranking_needs_the_mean_tau_at_the_rule() -> None:
    taus = {"good": (0.42, 0.45), "bad": (0.2, 0.3)}
    good, bad = (
        [run("rsps", s, rank_kendall_tau=t, rank_samples=200) for s, t in enumerate(taus[k])]
        for k in ("good", "bad")
    )
    assert verdicts(good)["uniform_ranks"] == scorecard.REPRODUCED
    assert verdicts(bad)["uniform_ranks"] == scorecard.NOT_REPRODUCED
    rows = scorecard.scorecard(pd.DataFrame(good), report.load_published(), "test-preset")
    assert "over 200 cells" in rows[0]["this sweep"]


def test_darts_collapse_counts_skip_edges_of_most_seeds() -> None:
    collapsed = [run("darts", 0, ALL_SKIP, 54.3), run("darts", 1, FOUR_SKIP), run("darts", 2)]
    half = [run("darts", 0, ALL_SKIP, 54.3), run("darts", 1), run("darts", 2)]
    assert verdicts(collapsed)["darts_collapses"] == scorecard.REPRODUCED
    assert verdicts(half)["darts_collapses"] == scorecard.NOT_REPRODUCED


def test_high_accuracy_is_judged_per_method_on_its_mean() -> None:
    rows = [run("drnas", s, c10=c) for s, c in enumerate((94.0, 93.5))]
    rows += [run("gdas", s, c10=c) for s, c in enumerate((94.0, 91.0))]
    found = verdicts(rows)
    assert found["drnas_high"] == scorecard.REPRODUCED
    assert found["gdas_high"] == scorecard.NOT_REPRODUCED  # mean 92.5
    assert found["beta_darts_high"] == scorecard.NOT_RUN


def test_pt_is_compared_with_argmax_seed_by_seed() -> None:
    argmax = [run("darts", s, c10=c) for s, c in enumerate((90.0, 91.0, 92.0))]
    better = [run("darts", s, c10=c, select="pt") for s, c in enumerate((91.0, 92.0, 91.5))]
    worse = [run("darts", s, c10=c, select="pt") for s, c in enumerate((89.0, 92.0, 91.0))]
    assert verdicts(argmax + better)["pt_beats_argmax"] == scorecard.REPRODUCED
    assert verdicts(argmax + worse)["pt_beats_argmax"] == scorecard.NOT_REPRODUCED
    # argmax rows alone are no PT comparison, and PT rows never count as argmax rows
    assert verdicts(argmax)["pt_beats_argmax"] == scorecard.NOT_RUN
    assert verdicts(better)["darts_collapses"] == scorecard.NOT_RUN


def test_one_collapsed_darts_minus_cell_is_enough_to_disagree() -> None:
    stable = [run("darts_minus", s) for s in range(3)]
    assert verdicts(stable)["darts_minus_stable"] == scorecard.REPRODUCED
    one = stable + [run("darts_minus", 3, FOUR_SKIP, 85.0)]
    assert verdicts(one)["darts_minus_stable"] == scorecard.NOT_REPRODUCED


def test_unfinished_runs_are_not_judged() -> None:
    rows = [run("drnas", 0, c10=10.0, status="unfinished"), run("drnas", 1, c10=94.0)]
    assert verdicts(rows)["drnas_high"] == scorecard.REPRODUCED


def test_mean_interval_shows_no_interval_for_one_value() -> None:
    assert scorecard.mean_interval([93.0]) == "93.00 (n = 1, no interval)"
    text = scorecard.mean_interval([92.0, 94.0])
    assert text.startswith("93.00 [") and "(n = 2)" in text


def test_published_numbers_are_read_from_the_csv() -> None:
    published = report.load_published()
    drnas = next(f for f in scorecard.FINDINGS if f.key == "drnas_high")
    text = scorecard.published_text(drnas, published)
    assert "{" not in text
    row = published[published["method"] == "DrNAS"].iloc[0]
    assert f"{row['c10_test_mean']:.2f}" in text


@pytest.mark.parametrize("preset", ["cpu"])
def test_every_note_names_a_finding(preset: str) -> None:
    keys = {f.key for f in scorecard.FINDINGS}
    assert set(scorecard.load_notes()[preset]) <= keys


def test_the_committed_cpu_sweep_has_a_verdict_for_every_finding() -> None:
    frame = runs.by_selection(runs.load_runs(REPO / "results"))
    frame = frame[(frame["preset"] == "cpu") & (frame["dataset"] == "cifar10")]
    rows = scorecard.scorecard(frame, report.load_published(), "cpu")
    by_key = dict(zip((f.key for f in scorecard.FINDINGS), rows, strict=True))
    assert by_key["uniform_ranks"]["verdict"] == scorecard.NOT_RUN  # no rsps in that sweep
    assert by_key["pt_beats_argmax"]["verdict"] == scorecard.REPRODUCED  # 4 of 5 seeds
    assert by_key["darts_minus_stable"]["verdict"] == scorecard.NOT_REPRODUCED
    text = scorecard.markdown(rows, "cpu")
    assert text.startswith("## Published findings at this scale")
    assert "DARTS-'s auxiliary skip weight" in text  # the preset's note is shown


def test_intervals_stay_inside_what_the_quantity_can_be() -> None:
    """Two seeds far apart give a t-interval past 100 % (or past τ = ±1): the scorecard
    shows it clipped, as the report's summary does, never an accuracy above 100."""
    assert scorecard.mean_interval([94.36, 90.38]) == "92.37 [67.08, 100.00] (n = 2)"
    assert scorecard.mean_interval([-0.18, 0.08], scorecard.TAU) == "-0.05 [-1.00, 1.00] (n = 2)"
