"""The opt-in switches ``bf16``, ``channels_last`` and ``compile``: speed vs the default.

Each variant is a search state built by :func:`harness.search.build_state` with
one switch on (fused supernet, DARTS, ``proxy`` preset unless ``--shape paper``);
one step is the loop's weight step plus DARTS' α step on fixed batches, exactly
as :mod:`bench_search_step` times it. All variants alternate in one process and
ratios are default / variant (> 1 = the switch is faster). ``compile`` reports
its one-off compilation time separately (the first call, not in the medians).
What each switch does to the search result is tested in ``tests/test_switches.py``.

    python benchmarks/bench_switches.py [--json] [--repeats N] [--shape proxy|paper]
                                        [--switches bf16,channels_last,compile]
"""

from __future__ import annotations

import time

import torch
from bench_search_step import make_state, search_step
from bench_supernet import apply_threads, base_parser, emit, interleaved, median

SHAPES = {"proxy": {}, "paper": {"C": "16", "N": "5"}}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=10)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="proxy")
    parser.add_argument("--switches", default="bf16,channels_last,compile")
    parser.add_argument("--method", default="darts")
    args = parser.parse_args()
    apply_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    switches = [s for s in args.switches.split(",") if s]
    variants, first_call = {}, {}
    for name in ["default", *switches]:
        extra = dict(SHAPES[args.shape]) | ({name: "true"} if name != "default" else {})
        step = search_step(*make_state(args.method, "fused", device, extra))
        start = time.perf_counter()
        step()  # compiles when the switch is compile
        first_call[name] = time.perf_counter() - start
        variants[name] = step
    times = interleaved(variants, args.repeats, warmup=1)
    base = median(times["default"])
    results = [
        {
            "switch": name,
            "s_per_step": median(times[name]),
            "ratio": base / median(times[name]),
            "first_call_s": first_call[name],
        }
        for name in variants
    ]
    payload = {
        "device": device.type,
        "shape": args.shape,
        "method": args.method,
        "repeats": args.repeats,
        "results": results,
        **{f"ratio_{r['switch']}": r["ratio"] for r in results if r["switch"] != "default"},
    }
    header = ["switch", "s/step", "speed vs default", "first call s"]
    rows = [[r["switch"], r["s_per_step"], r["ratio"], r["first_call_s"]] for r in results]
    title = f"bench_switches: {args.method} search step, {args.shape} shape, {device.type}"
    emit(title, header, rows, payload, args.json)


if __name__ == "__main__":
    main()
