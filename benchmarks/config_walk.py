"""The walk of a run config from the CLI's sweep call to its run directory, traced.

Issue 31 asked who answers "is this run directory finished, trusted, matching, locked?"
and how often the config climbs back up the module stack on its way there. This runs
``api.run_prepared`` on one ``smoke`` darts job whose directory holds a ``config.json``
(so every question is asked: mismatch, trusted final, lock, stray temporaries, resume)
and stops it where training would start (``search.build_state``).

A call is on the walk when it receives the run's :class:`~harness.config.Config`, its
job, its run directory (a path in it, a ``RunDir`` or ``Search`` holding it) or its
recorded identity. Calls into ``config`` (the value itself) and ``errors`` are left out.
Printed: the modules in call order, consecutive repeats merged; the number of hops
between modules; the climbs (a hop to a module higher in :data:`LAYERS` than the one
before it); the distinct calls from one module into another; and the modules that call
into ``results`` (the files) on the walk. Dataclass-generated ``__init__`` s are left out.

    python benchmarks/config_walk.py [-v]   # -v: every call on the walk
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # this checkout's harness, not another

LAYERS = ("api", "sweep", "backends", "jobs", "search", "rundir", "runs", "results")
"""The modules on the walk, top (the API) to bottom (the files)."""
LEFT_OUT = ("harness.config", "harness.errors")
VERBOSE = "-v" in sys.argv[1:]


class Stop(BaseException):
    """Raised where training would begin: the walk has reached the run directory."""


def on_walk(frame: FrameType, run: Path, config: Any) -> bool:
    """Whether this call receives the run's config, job, directory or identity."""
    return any(carries(value, run, config) for value in list(frame.f_locals.values()))


def carries(value: Any, run: Path, config: Any) -> bool:
    """Whether ``value`` is (or holds, or lists) the run's config, directory or identity."""
    if isinstance(value, list | tuple):
        return any(carries(item, run, config) for item in value)
    if hasattr(value, "jobs") and not isinstance(value, type):
        return carries(value.jobs, run, config)
    if value is config or getattr(value, "config", None) is config:
        return True
    directory = getattr(value, "directory", value)
    if isinstance(directory, Path) and (directory == run or run in directory.parents):
        return True
    return isinstance(value, dict) and value.get("method") == config.method and "epochs" in value


def trace(prepared: Any, run: Path) -> tuple[list[str], set[str]]:
    """The modules of the calls on the walk, in order (repeats merged), and the calls
    from one module into another on it (``caller→callee``)."""
    from harness import api, search

    config = prepared.jobs[0].config
    walk: list[str] = []
    edges: set[str] = set()

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("harness.") or module.startswith(LEFT_OUT):
            return
        name = module.removeprefix("harness.")
        if frame.f_code.co_filename == "<string>" or not on_walk(frame, run, config):
            return  # a dataclass's generated __init__ is no module's logic
        if VERBOSE:
            print(f"  {name}.{frame.f_code.co_qualname}")
        if not walk or walk[-1] != name:
            walk.append(name)
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if caller != module and caller.startswith("harness.") and not caller.startswith(LEFT_OUT):
            edges.add(f"{caller.removeprefix('harness.')}→{name}")

    def stop(*_: Any, **__: Any) -> None:
        raise Stop

    search.build_state = stop  # type: ignore[assignment]
    sys.setprofile(profile)
    try:
        api.run_prepared(prepared)
    except Stop:
        pass
    finally:
        sys.setprofile(None)
    return walk, edges


def climbs(walk: list[str]) -> int:
    rank = {name: LAYERS.index(name) if name in LAYERS else len(LAYERS) for name in walk}
    return sum(rank[b] < rank[a] for a, b in zip(walk, walk[1:], strict=False))


def main() -> None:
    from harness import api, sweep
    from harness.benchmark import Benchmark
    from harness.paths import find_data_dir

    data_dir = find_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"epochs": "2", "train_size": "64", "valid_size": "64"}
        jobs = sweep.plan(["darts"], [0], "smoke", overrides, Path(tmp))
        run = jobs[0].directory
        benchmark = Benchmark.load(data_dir)
        run.mkdir(parents=True)
        from harness import rundir

        rundir.RunDir(run, jobs[0].config, benchmark.sha256, print).check_config()
        from harness.backends import Backend

        prepared = api.Prepared(jobs, "smoke", True, Path(tmp), data_dir, benchmark, 1, Backend())
        walk, edges = trace(prepared, run)
    print(" → ".join(walk))
    print(f"{len(walk) - 1} hops, {climbs(walk)} climbs, {len(set(walk))} modules")
    print(f"{len(edges)} module→module calls: {', '.join(sorted(edges))}")
    files = sorted(edge.partition("→")[0] for edge in edges if edge.endswith("→results"))
    print(f"calling into results (the files): {', '.join(files)}")


if __name__ == "__main__":
    main()
