"""The Python API: what the command line does, as functions (``docs/api.md``).

``harness.lookup``, ``harness.search`` and the rest are these functions; the CLI is a
thin layer over them. Each imports what it needs when called, so a lookup never
imports torch and only a search does. Bad input raises
:class:`~harness.errors.UsageError` with the message the command line prints, checked
before anything is written.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import paths
from harness.errors import RunFailed, UsageError
from harness.space import NUM_CELLS, Cell

if TYPE_CHECKING:
    import pandas as pd

    from harness.backends import Backend
    from harness.benchmark import Benchmark
    from harness.jobs import Job

PathLike = str | os.PathLike[str]
Arch = str | int | Cell
"""A cell as the API takes it: an official string, a :class:`Cell`, or an NB201 index."""
RESULTS, REPORTS = paths.RESULTS, paths.REPORTS
"""The default results and report directories, as in the command line (``out/``, which
git ignores: never the committed ``results/`` and ``reports/``)."""


# --- the table ------------------------------------------------------------------------
def load_benchmark(data_dir: PathLike | None = None) -> Benchmark:
    """The validated NB201 table, loaded once per process and file: for many lookups.

    ``data_dir`` holds ``nb201/``; without it, ``$HARNESS_DATA`` then pyproject's
    ``data_dirs`` are tried, as ``--data-dir`` is.
    """
    from harness.benchmark import Benchmark

    return Benchmark.load(_given("--data-dir", data_dir))


def lookup(arch: Arch, data_dir: PathLike | None = None) -> dict[str, dict[str, float]]:
    """A cell's true NB201 accuracies, ``{dataset: {"valid": %, "test": %}}`` for cifar10,
    cifar100 and imagenet16; ``arch`` is an official string, a :class:`Cell` or an index."""
    benchmark = load_benchmark(data_dir)
    return benchmark.lookup(cell_of(arch, benchmark))


def cell_of(arch: Arch, benchmark: Benchmark) -> Cell:
    """The cell ``arch`` names. Text is an official string or an index's digits (as
    ``lookup ARCH`` reads it); ``-1`` and ``3.0`` are refused as indices, not read as
    malformed strings."""
    if isinstance(arch, Cell):
        return arch
    if not isinstance(arch, str):
        return benchmark.cell_at(arch)  # refuses non-integers and indices out of range
    text = arch.strip()
    if text.startswith("|"):
        return Cell.from_arch_str(text)
    try:
        index = int(text)
    except ValueError:
        if _is_number(text):
            raise UsageError(
                f"NB201 index {text} is not an integer: expected 0..{NUM_CELLS - 1}"
            ) from None
        return Cell.from_arch_str(text)
    return benchmark.cell_at(index)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- searching ----------------------------------------------------------------------------
def search(
    method: str,
    seed: int = 0,
    preset: str | None = None,
    results: PathLike | None = None,
    *,
    data_dir: PathLike | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One search run, in this process; returns what its ``final.json`` holds.

    ``preset`` defaults to ``paper`` with CUDA, else ``proxy``; ``results`` to
    ``out/results``. ``overrides`` are config fields (``epochs=1``) and the method's options
    as a dict (``cdao={"mu": 0.1}``), checked as ``--set`` is. A finished run is not
    redone, an unfinished one resumes. Raises :class:`UsageError` on bad input and
    :class:`RunFailed` when the run raised or another process holds it.
    """
    from harness import results as results_files

    prepared = prepare_sweep([method], [seed], preset, results, 1, data_dir, overrides=overrides)
    (outcome,) = run_prepared(prepared)
    if outcome["status"] in ("failed", "locked"):
        raise RunFailed(outcome)
    return results_files.read_final(prepared.jobs[0].directory)


def sweep(
    methods: str | Sequence[str],
    seeds: int | str | Iterable[int],
    preset: str | None = None,
    results: PathLike | None = None,
    jobs: int | None = None,
    *,
    data_dir: PathLike | None = None,
    backend: Backend | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Every method × seed, as ``run`` does: finished runs skipped, unfinished resumed,
    ``jobs`` at a time (default: one per core, or per GPU). Returns each run's outcome
    in plan order: its ``final.json`` content, or a ``failed`` / ``locked`` record.

    ``methods``: names, or ``"darts,cdao"``; ``seeds``: a count (5 → 0..4) or a list.
    ``backend`` (:class:`harness.backends.Backend`) runs the jobs on a cluster.
    """
    prepared = prepare_sweep(
        methods, seeds, preset, results, jobs, data_dir, backend, overrides=overrides
    )
    return run_prepared(prepared)


@dataclass(frozen=True)
class Prepared:
    """A sweep whose input is checked and whose data is found; nothing written yet."""

    jobs: list[Job]
    preset: str
    preset_given: bool
    results: Path
    data_dir: Path
    benchmark: Benchmark
    n_jobs: int | None
    backend: Backend


def prepare_sweep(
    methods: str | Sequence[str],
    seeds: int | str | Iterable[int],
    preset: str | None = None,
    results: PathLike | None = None,
    jobs: int | None = None,
    data_dir: PathLike | None = None,
    backend: Backend | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Prepared:
    """Check every input, in the command line's order, before anything is written:
    methods, seeds, preset, overrides, jobs, backend, every job's config, devices, data,
    and that ``results`` is writable."""
    import torch

    from harness import backends, board
    from harness import config as cfg
    from harness import sweep as sweeps
    from harness.benchmark import Benchmark
    from harness.data import check_search_files
    from harness.paths import find_data_dir
    from harness.results import check_writable

    names = method_names(methods)
    seed_values = seed_list(seeds)
    preset_name = _given("--preset", preset) or cfg.default_preset(torch.cuda.is_available())
    settings = override_texts(overrides or {})
    _check_jobs(jobs)
    backend = backend or backends.Backend()
    backends.check(backend)
    results_dir = Path(_given("--results", results) or RESULTS)
    planned = sweeps.plan(names, seed_values, preset_name, settings, results_dir)
    if backends.runs_here(backend):
        with cfg.named_as_set(settings):
            for device in sorted({job.config.device for job in planned}):
                cfg.check_device_here(device)
            for job in planned:
                cfg.check_switches_here(job.config)
    if any(job.config.tensorboard for job in planned):
        board.require()
    found = find_data_dir(_given("--data-dir", data_dir))
    benchmark = Benchmark.load(found)
    check_search_files(found)
    check_writable(results_dir)
    return Prepared(
        planned, preset_name, preset is not None, results_dir, found, benchmark, jobs, backend
    )


def run_prepared(prepared: Prepared) -> list[dict[str, Any]]:
    """Run a prepared sweep; each run's outcome, in plan order."""
    from harness import sweep as sweeps

    return sweeps.run_jobs(
        prepared.jobs, prepared.data_dir, prepared.benchmark, prepared.n_jobs, prepared.backend
    )


def method_names(methods: str | Sequence[str]) -> list[str]:
    """``"darts,cdao"`` or ``["darts", "cdao"]`` → registered names, each once."""
    from harness import sweep as sweeps

    if isinstance(methods, str):
        return sweeps.parse_methods(methods)
    return sweeps.method_list(methods)


def seed_list(seeds: int | str | Iterable[int]) -> list[int]:
    """A count (``5`` → 0..4), ``--seeds`` text (``"0,3,7"``), or seeds (a list, a
    range, an array) → the seeds."""
    from harness import sweep as sweeps

    if isinstance(seeds, str):
        return sweeps.parse_seeds(seeds)
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return sweeps.parse_seeds(str(int(seeds)))
    if isinstance(seeds, Iterable):
        return sweeps.seed_list(list(seeds))
    return sweeps.seed_list([seeds])  # neither a count nor seeds: refused as --seeds is


def override_texts(overrides: Mapping[str, Any]) -> dict[str, str]:
    """Overrides as the ``--set`` texts they stand for, so that the same parsing and
    rules apply: ``epochs=1`` → ``{"epochs": "1"}``, ``cdao={"mu": 0.1}`` →
    ``{"cdao.mu": "0.1"}``, ``True`` → ``"true"``."""
    texts: dict[str, str] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            items = [(f"{key}.{name}", option) for name, option in value.items()]
        else:
            items = [(key, value)]
        for name, option in items:
            text = _as_text(option)
            if texts.get(name, text) != text:
                raise UsageError(f"{name} given twice ({texts[name]} and {text}); give it once")
            texts[name] = text
    return texts


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_jobs(jobs: Any) -> None:
    if jobs is None:
        return
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise UsageError(f"argument --jobs: invalid int value: {jobs!r}")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: expected at least 1")


def _given(flag: str, value: PathLike | None) -> str | None:
    """A text option as given, None if not; an empty one is refused as the CLI does."""
    if value is None:
        return None
    text = os.fspath(value)
    if not text.strip():
        raise UsageError(f"argument {flag}: expected a value, got an empty string")
    return text


# --- reading results ------------------------------------------------------------------------
def load_runs(results: PathLike = RESULTS) -> pd.DataFrame:
    """Every run under ``results``, one row per run and selection (finished, diverged,
    failed or unfinished), with the columns the report uses (``docs/api.md`` lists them):
    a ``select=pt`` run is two rows, ``select`` ``argmax`` and ``pt``, as in the report.

    Unreadable runs are skipped with a warning and listed in
    ``frame.attrs["unreadable"]``. An empty directory gives an empty frame.
    """
    from harness import report as reports
    from harness import runs

    frame = runs.load_runs(_results_dir(results))
    return frame if frame.empty else reports.add_run_statistics(runs.by_selection(frame))


def load_epochs(results: PathLike = RESULTS) -> pd.DataFrame:
    """Per-epoch trajectories: one row per (run, epoch) of every run under ``results``.

    Columns: the run's ``preset``, ``dataset``, ``method``, ``seed``, ``status``; the
    epoch record's numbers as they are (``epoch``, ``train_loss``, ``gap_acc``, ...),
    ``arch``, ``alpha`` (6 × 5 op probabilities), the derived cell's NB201 accuracies as
    ``c10_valid`` … ``in16_test``, and the method's telemetry as ``telemetry_<key>``.
    """
    from harness import runs

    return runs.load_epochs(_results_dir(results))


def report(
    results: PathLike = RESULTS, out: PathLike = REPORTS, *, data_dir: PathLike | None = None
) -> list[Path]:
    """Tables and plots of every (preset, dataset) under ``results``, written under
    ``out`` with a ``manifest.json`` naming the runs they come from (``docs/reports.md``);
    the paths written. Raises
    :class:`harness.report.ReportFailed` (with ``.written`` and ``.failures``) when
    some groups could not be reported; the others are written."""
    from harness import report as reports

    results_dir = Path(_given("--results", results) or RESULTS)
    out_dir = Path(_given("--out", out) or REPORTS)
    return reports.write_reports(results_dir, out_dir, _given("--data-dir", data_dir))


def _results_dir(results: PathLike) -> Path:
    """An existing results directory; a missing one is a UsageError (likely a typo)."""
    path = Path(_given("--results", results) or RESULTS)
    if not path.is_dir():
        raise UsageError(f"--results {results}: no such directory")
    return path


__all__ = [
    "RunFailed",
    "UsageError",
    "load_benchmark",
    "load_epochs",
    "load_runs",
    "lookup",
    "report",
    "search",
    "sweep",
]
