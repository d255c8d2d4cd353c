"""NAS-Bench-201 table: cold load time and 10,000 random lookups.

Cold load = :meth:`harness.benchmark.Benchmark.load` with the per-process cache
emptied first (read, hash, parse, validate, index). Lookups: a Python loop of
:meth:`Benchmark.lookup` over 10,000 random cells (all datasets, valid + test),
and one vectorised :meth:`Benchmark.accuracy` call on the same cells' codes.
Targets: load < 0.2 s, 10k lookups < 0.1 s.

    python benchmarks/bench_table.py [--json] [--repeats N] [--lookups K]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from bench_supernet import apply_threads, base_parser, emit, interleaved, median

from harness import benchmark as nb201
from harness.benchmark import Benchmark
from harness.paths import find_data_dir
from harness.space import NUM_CELLS, Cell

LOAD_TARGET_S = 0.2
LOOKUP_TARGET_S = 0.1


def cold_load(data_dir: str) -> Callable[[], None]:
    def load() -> None:
        nb201._CACHE.clear()
        Benchmark.load(data_dir)

    return load


def lookups(table: Benchmark, cells: list[Cell]) -> Callable[[], None]:
    def loop() -> None:
        for cell in cells:
            table.lookup(cell)

    return loop


def vectorised(table: Benchmark, codes: np.ndarray) -> Callable[[], None]:
    def call() -> None:
        for dataset in ("cifar10", "cifar100", "imagenet16"):
            for split in ("valid", "test"):
                table.accuracy(codes, dataset, split)

    return call


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument("--lookups", type=int, default=10_000, help="random cells per timing")
    args = parser.parse_args()
    apply_threads(args.threads)
    data_dir = str(find_data_dir())
    table = Benchmark.load(data_dir)
    codes = np.random.default_rng(0).integers(0, NUM_CELLS, size=args.lookups)
    cells = [Cell.from_code(int(code)) for code in codes]
    times = interleaved(
        {
            "load": cold_load(data_dir),
            "lookup": lookups(table, cells),
            "accuracy": vectorised(table, codes),
        },
        args.repeats,
    )
    load_s, lookup_s, vector_s = (median(times[k]) for k in ("load", "lookup", "accuracy"))
    payload = {
        "lookups": args.lookups,
        "repeats": args.repeats,
        "table": table.info(),
        "load_s": load_s,
        "lookup_loop_s": lookup_s,
        "accuracy_vectorised_s": vector_s,
        "load_target_s": LOAD_TARGET_S,
        "lookup_target_s": LOOKUP_TARGET_S,
        "ratio_load_target": LOAD_TARGET_S / load_s,
        "ratio_lookup_target": LOOKUP_TARGET_S / lookup_s,
        "ratio_accuracy_target": LOOKUP_TARGET_S / vector_s,
    }
    header = ["what", "seconds", "target s", "target / measured"]
    rows = [
        ["cold load", load_s, LOAD_TARGET_S, LOAD_TARGET_S / load_s],
        [f"{args.lookups} lookup() calls", lookup_s, LOOKUP_TARGET_S, LOOKUP_TARGET_S / lookup_s],
        [
            f"accuracy() on {args.lookups} codes x 6 columns",
            vector_s,
            LOOKUP_TARGET_S,
            LOOKUP_TARGET_S / vector_s,
        ],
    ]
    emit("bench_table: NB201 table load and lookups", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
