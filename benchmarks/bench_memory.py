"""Peak memory of one short search run (default: darts, ``proxy`` preset, 1 epoch).

The run happens in a fresh child process (:class:`harness.search.Search`, results
in a temporary directory), which reports its own peak resident set size
(``resource.getrusage``), the RSS right after importing torch and the harness
(the floor), and the CUDA allocator's peak when the run used a GPU.

    python benchmarks/bench_memory.py [--json] [--method darts] [--preset proxy]
                                      [--set epochs=1 ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from bench_supernet import base_parser, emit

CHILD = textwrap.dedent(
    """
    import json, resource, sys, tempfile
    from pathlib import Path
    import torch
    from harness import config as cfg, methods
    from harness.benchmark import Benchmark
    from harness.paths import find_data_dir
    from harness.search import Search, select_device

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    floor = rss_mb()
    method, preset, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    options = methods.method_class(method).Options
    config = cfg.resolve(preset, method, overrides, options, 0, methods.option_keys())
    data_dir = find_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        final = Search(config, Path(tmp), data_dir, Benchmark.load(data_dir), lambda _: None).run()
    device = select_device(config.device)
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    print(json.dumps({"floor_rss_mb": floor, "peak_rss_mb": rss_mb(), "cuda_peak_mb": cuda,
                      "device": device.type, "status": final["status"],
                      "wall_s": final["wall_s"], "config": config.to_dict()}))
    """
)


def run_child(method: str, preset: str, overrides: dict[str, str]) -> dict:
    args = [sys.executable, "-c", CHILD, method, preset, json.dumps(overrides)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("--method", default="darts")
    parser.add_argument("--preset", default="proxy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {"epochs": "1"}
    if args.threads:
        overrides["threads"] = str(args.threads)
    overrides.update(item.split("=", 1) for item in args.set)
    result = run_child(args.method, args.preset, overrides)
    payload = {"method": args.method, "preset": args.preset, "overrides": overrides, **result}
    payload.pop("config")
    header = ["run", "device", "floor RSS MB", "peak RSS MB", "CUDA peak MB", "run s"]
    label = f"{args.method} {args.preset} " + " ".join(f"{k}={v}" for k, v in overrides.items())
    cuda = result["cuda_peak_mb"] if result["cuda_peak_mb"] is not None else "-"
    rows = [
        [
            label,
            result["device"],
            result["floor_rss_mb"],
            result["peak_rss_mb"],
            cuda,
            result["wall_s"],
        ]
    ]
    emit("bench_memory: peak memory of one short run", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
