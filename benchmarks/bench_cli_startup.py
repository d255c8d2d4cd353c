"""Whole-process time of the commands that need no torch: ``lookup`` and ``methods``.

Each variant is a fresh ``python -m harness ...`` (or ``python -c``) process, started
in turn (A B A B ...) and timed from start to exit; the table shows medians. The
children import this checkout (``PYTHONPATH``) and read the data this process finds.
Targets: ``lookup 1835`` and ``methods`` under 1 s each.

    python benchmarks/bench_cli_startup.py [--json] [--repeats N] [--baseline-rev R]

``--baseline-rev R`` also times the same commands at git revision R (a ``git archive``
copy in a temporary directory), to show what a change did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench_supernet import base_parser, emit, interleaved, median

from harness.paths import PROJECT_ROOT, find_data_dir

TARGET_S = 1.0
COMMANDS: dict[str, list[str]] = {
    "lookup 1835": ["-m", "harness", "lookup", "1835"],
    "methods": ["-m", "harness", "methods"],
    "import harness": ["-c", "import harness"],
    "python (no harness)": ["-c", "pass"],
}
TARGETS = ("lookup 1835", "methods")


def process(arguments: list[str], checkout: Path, data_dir: Path) -> Callable[[], None]:
    """A call that runs ``python ARGUMENTS`` against ``checkout`` and waits for it."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "HARNESS_DATA": str(data_dir)}
    command = [sys.executable, *arguments]

    def run() -> None:
        subprocess.run(command, env=env, cwd=checkout, capture_output=True, check=True)

    return run


def checkout_at(rev: str, into: Path) -> Path:
    """The tracked files of ``rev``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", rev],
        capture_output=True,
        check=True,
    ).stdout
    target = into / rev.replace("/", "_")
    target.mkdir(parents=True)
    tar_path = into / "rev.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    return target


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument("--baseline-rev", default="", help="also time these commands at rev R")
    args = parser.parse_args()
    data_dir = find_data_dir()
    with tempfile.TemporaryDirectory() as scratch:
        checkouts = {"": PROJECT_ROOT}
        if args.baseline_rev:
            checkouts[f"@{args.baseline_rev}"] = checkout_at(args.baseline_rev, Path(scratch))
        variants = {
            f"{name}{suffix}": process(arguments, checkout, data_dir)
            for name, arguments in COMMANDS.items()
            for suffix, checkout in checkouts.items()
            if not (suffix and name == "python (no harness)")
        }
        times = interleaved(variants, args.repeats)
    medians = {name: median(values) for name, values in times.items()}
    rows = [[name, medians[name], min(times[name])] for name in variants]
    payload = {
        "median_s": medians,
        "min_s": {name: min(values) for name, values in times.items()},
        "target_s": TARGET_S,
        "met": {name: medians[name] < TARGET_S for name in TARGETS},
        "load_average": os.getloadavg(),
    }
    title = f"CLI start-up, whole process ({args.repeats} runs each, interleaved)"
    emit(title, ["command", "median s", "min s"], rows, payload, args.json)


if __name__ == "__main__":
    main()
