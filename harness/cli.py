"""Command line: argument parsing and friendly errors, nothing else.

Every bad input ends in one line on stderr and exit code 2, before anything is
written.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from harness import config as cfg
from harness.errors import UsageError, plain_warnings
from harness.paths import REPORTS, RESULTS, find_data_dir

DATASET_LABELS = (
    ("cifar10", "CIFAR-10"),
    ("cifar100", "CIFAR-100"),
    ("imagenet16", "ImageNet16-120"),
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (like every other input error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"harness: error: {message} (see `{self.prog} --help`)\n")


def text(value: str) -> str:
    """argparse type of every text option: an empty value is refused, never read as
    "the current directory" (``--results ''``) or "the default" (``--preset ''``)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a value, got an empty string")
    return value


def key_value(value: str) -> str:
    """argparse type of ``--set``: ``KEY=VALUE`` or ``METHOD.FIELD=VALUE``."""
    key, sep, _ = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected KEY=VALUE or METHOD.FIELD=VALUE, e.g. epochs=10 or cdao.mu=0.1"
        )
    return value


def tolerance(value: str) -> str:
    """argparse type of ``check --tolerance``: ``METRIC=VALUE``, VALUE a number >= 0."""
    key, sep, number = value.partition("=")
    try:
        ok = bool(sep and key.strip()) and math.isfinite(float(number)) and float(number) >= 0
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected METRIC=VALUE with VALUE a number >= 0, e.g. gap_acc=2.0"
        )
    return value


DATA_DIR_HELP = "holds nb201/ and cifar10/ (default: $HARNESS_DATA, then pyproject's data_dirs)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="harness", description="Discretization-aware differentiable NAS on NAS-Bench-201."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="search: every method × seed, looked up in NAS-Bench-201")
    run.add_argument(
        "--methods", type=text, default="darts", help="comma-separated (default: %(default)s)"
    )
    run.add_argument(
        "--seeds",
        type=text,
        default="1",
        help="a count (5 → seeds 0..4) or a list (0,3,7; 0, is seed 0 alone); each seed "
        "once (default: %(default)s)",
    )
    run.add_argument(
        "--preset",
        type=text,
        help=f"one of {', '.join(cfg.PRESETS)} (default: paper on CUDA, else proxy)",
    )
    run.add_argument("--data-dir", type=text, help=DATA_DIR_HELP)
    run.add_argument(
        "--results",
        type=text,
        default=RESULTS,
        help="results directory (default: %(default)s, ignored by git; the committed runs "
        "are in results/)",
    )
    run.add_argument(
        "--set",
        action="append",
        type=key_value,
        metavar="KEY=VALUE",
        help="override a config field (harness/config.py, e.g. epochs=10) or a method's "
        "option as METHOD.FIELD=VALUE (e.g. cdao.mu=0.1); repeatable (default: the preset's)",
    )
    run.add_argument(
        "--jobs", type=int, help="runs at a time (default: one per GPU, else one per CPU core)"
    )
    add_backend_arguments(run)

    lookup = sub.add_parser("lookup", help="a cell's true NAS-Bench-201 accuracies")
    lookup.add_argument(
        "arch", type=text, help="official arch string |op~0|+|op~0|op~1|+|...| or an index"
    )
    lookup.add_argument("--json", action="store_true", help="print JSON")
    lookup.add_argument("--data-dir", type=text, help=DATA_DIR_HELP)

    bench = sub.add_parser("benchmark", help="benchmark-table tools")
    bench_sub = bench.add_subparsers(dest="benchmark_command", required=True)
    convert = bench_sub.add_parser("convert", help="official .pth / NATS-Bench files → table CSV")
    convert.add_argument(
        "src", type=text, help="a NAS-Bench-201 .pth file or a NATS-Bench tss directory"
    )
    convert.add_argument("--out", type=text, required=True, help="CSV to write")
    convert.add_argument("--force", action="store_true", help="replace --out if it exists")

    sub.add_parser("methods", help="list the registered methods")

    check = sub.add_parser("check", help="CI gate: did the discretization gap get worse?")
    check.add_argument(
        "--methods", type=text, help="comma-separated subset of the baseline's methods"
    )
    check.add_argument(
        "--baseline", type=text, help="baseline JSON (default: benchmarks/gap_baseline.json)"
    )
    check.add_argument(
        "--tolerance",
        action="append",
        type=tolerance,
        metavar="METRIC=VALUE",
        help="allowed growth of a metric, e.g. gap_acc=2.0 (defaults: docs/ci-check.md)",
    )
    check.add_argument("--update", action="store_true", help="write the baseline from this run")
    check.add_argument(
        "--seeds", type=text, default="0,1", help="seed list for --update (default: %(default)s)"
    )
    check.add_argument(
        "--jobs", type=int, help="worker processes, one torch thread each (default: one per core)"
    )
    check.add_argument(
        "--unpinned",
        action="store_true",
        help="diagnostic: let oneDNN, MKL and ATen pick their instruction sets "
        "(measures how much the gate depends on them; docs/ci-check.md)",
    )
    check.add_argument("--data-dir", type=text, help=DATA_DIR_HELP)
    report = sub.add_parser("report", help="paper-style tables and plots from a results directory")
    report.add_argument(
        "--results",
        type=text,
        default=RESULTS,
        help="results directory, or one <preset> or <preset>/<dataset> of it "
        "(default: %(default)s; the committed runs: results)",
    )
    report.add_argument(
        "--out",
        type=text,
        default=REPORTS,
        help="where to write (default: %(default)s; the committed reports: reports)",
    )
    report.add_argument(
        "--data-dir",
        type=text,
        help="the NB201 table, for the space-optimum row and the discretization judged by it; "
        + DATA_DIR_HELP,
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="write nothing: regenerate into a temporary directory and compare with --out "
        "(tables byte for byte, plots by presence and size); exit 1 naming each difference",
    )
    return parser


def add_backend_arguments(run: argparse.ArgumentParser) -> None:
    """Where the runs execute (docs/scaling.md); validated in harness.backends."""
    run.add_argument(
        "--backend", type=text, default="local", help="local, dask, ray or slurm (default: local)"
    )
    run.add_argument(
        "--address", type=text, help="dask scheduler / ray cluster address (default: local)"
    )
    slurm = run.add_argument_group("--backend slurm (submitit)")
    slurm.add_argument("--slurm-partition", type=text, help="partition to submit to")
    slurm.add_argument("--slurm-time", type=int, metavar="MINUTES", help="per job (default 1440)")
    slurm.add_argument("--slurm-mem", type=int, metavar="GB", help="memory per job")
    slurm.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per job (default 4)")
    slurm.add_argument("--gpus-per-job", type=int, metavar="N", help="default: 1 if runs use CUDA")
    slurm.add_argument(
        "--slurm-logs", type=text, metavar="DIR", help="submitit logs (default: slurm-logs)"
    )
    slurm.add_argument(
        "--slurm-executor",
        type=text,
        default="slurm",
        help="slurm, or local to test without a cluster (default: slurm)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt(), plain_warnings():
            return COMMANDS[args.command](args)
    except UsageError as error:
        print(f"harness: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that both stop the
    workers and end with the same message (exit 143 instead of 130)."""


def _terminated(signum: int, frame: Any) -> None:
    del signum, frame
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- commands ------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from harness import api, backends

    overrides = cfg.parse_overrides(args.set)
    backend = backends.Backend(
        name=args.backend,
        address=args.address,
        slurm_executor=args.slurm_executor,
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        mem_gb=args.slurm_mem,
        cpus=args.slurm_cpus,
        gpus=args.gpus_per_job,
        logs=args.slurm_logs,
    )
    prepared = api.prepare_sweep(
        args.methods,
        args.seeds,
        args.preset,
        args.results,
        args.jobs,
        args.data_dir,
        backend,
        overrides=overrides,
    )
    how = "given" if prepared.preset_given else "default for this machine"
    where = prepared.results.resolve()
    print(f"preset {prepared.preset} ({how}); {len(prepared.jobs)} run(s) → {where}")
    finals = api.run_prepared(prepared)
    print(summary_table(finals))
    failed = [f for f in finals if f["status"] == "failed"]
    for final in failed:
        print(f"failed: {final['method']} seed {final['seed']}: {final['reason']}", file=sys.stderr)
    locked = [f for f in finals if f["status"] == "locked"]
    for final in locked:
        where = f"{final['method']} seed {final['seed']}: {final['reason']}"
        print(f"locked: {where}; rerun later to collect it", file=sys.stderr)
    return 1 if failed else EXIT_LOCKED if locked else 0


EXIT_LOCKED = 3
"""``run``'s exit code when nothing failed but some runs were left to another process."""


def cmd_check(args: argparse.Namespace) -> int:
    from harness import check, methods, results, sweep
    from harness.jobs import log_line

    baseline_path = Path(args.baseline) if args.baseline else check.DEFAULT_BASELINE
    tolerance = check.parse_tolerance(args.tolerance)
    requested = sweep.parse_methods(args.methods) if args.methods else None
    data_dir = find_data_dir(args.data_dir)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    options = {"jobs": args.jobs, "pin": not args.unpinned, "log": log_line}
    started = time.perf_counter()
    if args.update:
        names = requested or list(methods.registry())
        seeds = check.parse_seed_list(args.seeds)
        if baseline_path.is_dir():
            raise UsageError(f"--baseline {baseline_path} is a directory; give the JSON file")
        results.check_writable(baseline_path.parent, "--baseline")  # before minutes of runs
        measured = check.measure(names, seeds, data_dir, **options)
        document = check.baseline_document(measured, seeds, data_dir, pin=options["pin"])
        results.write_json(baseline_path, document)
        print(f"wrote {baseline_path} ({len(names)} method(s), seeds {seeds})")
        return 0
    baseline = check.load_baseline(baseline_path, data_dir)
    names = check.select_methods(baseline, requested)
    seeds = [int(s) for s in baseline["seeds"]]
    print(f"check: preset {check.PRESET}, seeds {seeds}, baseline {baseline_path}", flush=True)
    measured = check.measure(names, seeds, data_dir, **options)
    verdicts = check.compare(baseline, measured, tolerance)
    print(check.format_table(verdicts))
    print(check.exact_match(baseline, measured))
    print(f"check took {time.perf_counter() - started:.0f} s")
    worse = sorted({v.method for v in verdicts if not v.ok})
    if worse:
        print(f"FAIL: discretization gap grew beyond tolerance for: {', '.join(worse)}")
        return 1
    print(f"ok: {len(names)} method(s) within tolerance {tolerance}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness import api
    from harness.report import ReportFailed

    if args.check:
        return check_reports(args)
    failures: list[str] = []
    try:
        written = api.report(args.results, args.out, data_dir=args.data_dir)
    except ReportFailed as failed:
        written, failures = failed.written, failed.failures
    print(f"wrote {len(written)} files (tables as md/tex/csv, plots as png/pdf); start at:")
    for path in written:
        if path.name == "report.md":
            print(f"  {path}")
    for failure in failures:
        print(f"harness: error: report of {failure}", file=sys.stderr)
    return 1 if failures else 0


def check_reports(args: argparse.Namespace) -> int:
    """``report --check``: do the reports under --out regenerate from --results?"""
    from harness import committed, layout

    problems = committed.check_reports(Path(args.results), Path(args.out), args.data_dir)
    for problem in problems:
        print(f"differs: {problem}")
    if problems:
        print(
            f"FAIL: {args.out} does not regenerate from {args.results} ({len(problems)} "
            f"difference(s)); run `python -m harness report --results {args.results} "
            f"--out {args.out}` and commit the result"
        )
        return 1
    groups = committed.report_groups(Path(args.out), layout.scope(Path(args.results)))
    print(f"ok: {len(groups)} report(s) under {args.out} regenerate from {args.results}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from harness import api

    benchmark = api.load_benchmark(args.data_dir)
    cell = api.cell_of(args.arch, benchmark)
    accuracies = benchmark.lookup(cell)
    if args.json:
        payload = {
            "arch": cell.to_arch_str(),
            "index": benchmark.index_of(cell),
            "nb201": accuracies,
            "table": benchmark.info()["version"],
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{cell.to_arch_str()}  (NB201 index {benchmark.index_of(cell)})")
    for key, label in DATASET_LABELS:
        acc = accuracies[key]
        print(f"  {label:<15} valid {acc['valid']:6.2f}   test {acc['test']:6.2f}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from harness.convert import check_output, convert_benchmark
    from harness.space import NUM_CELLS

    out = Path(args.out)
    check_output(out, args.force)
    frame = convert_benchmark(Path(args.src), out)
    print(f"wrote {len(frame)} cells to {args.out}")
    if len(frame) < NUM_CELLS:
        print(
            f"harness: warning: {args.src} holds {len(frame):,} of the {NUM_CELLS:,} cells; "
            "the harness loads only a complete table",
            file=sys.stderr,
        )
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """From the static catalog (no torch); tests/test_api.py checks it against the registry."""
    del args
    from harness.catalog import method_lines

    print("\n".join(method_lines()))
    return 0


def summary_table(finals: list[dict[str, Any]]) -> str:
    header = (
        f"{'method':<12}{'seed':>5}  {'status':<9}{'C10 valid':>10}{'C10 test':>9}"
        f"{'C100 test':>10}{'IN16 test':>10}{'gap acc':>9}{'wall s':>8}  arch"
    )
    lines = [header, "-" * len(header)]
    for final in finals:
        nb = final.get("nb201") or {}
        cells = [
            _number(nb.get(d, {}).get(s), w, ".2f")
            for d, s, w in (
                ("cifar10", "valid", 10),
                ("cifar10", "test", 9),
                ("cifar100", "test", 10),
                ("imagenet16", "test", 10),
            )
        ]
        gap = _number((final.get("gap") or {}).get("gap_acc"), 9, ".2f")
        wall = _number(final.get("wall_s"), 8, ".0f")
        arch = final.get("arch") or final.get("reason") or ""
        lines.append(
            f"{final['method']:<12}{final['seed']:>5}  {final['status']:<9}"
            f"{''.join(cells)}{gap}{wall}  {arch}"
        )
    return "\n".join(lines)


def _number(value: Any, width: int, spec: str) -> str:
    """A right-aligned number, or '-' where a run (failed, diverged) has none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:{width}{spec}}"
    return f"{'-':>{width}}"


COMMANDS = {
    "run": cmd_run,
    "lookup": cmd_lookup,
    "benchmark": cmd_convert,
    "methods": cmd_methods,
    "report": cmd_report,
    "check": cmd_check,
}
