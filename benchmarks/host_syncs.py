"""Host syncs per search step, counted on the CPU, per method.

On a GPU a step must never wait for the device: every read of a device value on the
host (``float(t)``, ``bool(t)``, ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``)
and every blocking host→device copy (``.to(device)`` from pageable memory, an index
built from a Python list) stalls the host until the GPU's queue drains. A CPU cannot
see those stalls, but it runs the same Python, so this counts the calls that would be
one on CUDA:

* ``read``: ``aten._local_scalar_dense`` (``item``, ``float``, ``bool``, ``int``), and
  ``tolist``/``cpu``/``numpy`` — of tensors that live on the device. A tensor counts
  as a host tensor (no sync to read) when it came from ``.cpu()``, ``.numpy()`` /
  ``torch.from_numpy``, a factory without tensor inputs (the CPU draws of the sampling
  methods; a factory given ``device=`` is a device tensor on CUDA, which a CPU cannot
  tell apart — no step creates one), or was computed from host tensors only: the
  ``active`` masks the supernet reads on the host are such tensors;
* ``copy``: ``Tensor.to(device)`` of a host tensor without ``non_blocking=True``
  (from a pinned buffer a copy is queued, not waited for);
* ``list_index``: ``aten.index`` / ``index_put_`` outside a backward — on CUDA an index
  from a Python list is a blocking host→device copy (the supernet's
  ``weights[list(SLOT_EDGES)]``); a backward reuses the forward's device index.

Each is attributed to the innermost ``harness/`` line that made it. ``ops`` counts the
operations on device tensors other than views and other than ops that produce no
element (the empty reserve tensor of a CPU batch norm, profiler markers): roughly the
kernels a step launches on CUDA (the CPU kernels of an op and its CUDA kernels need not
be one to one). They are split into forward (``fwd``, everything outside autograd's
backward and the optimizers), backward (``bwd``) and the optimizers' steps (``optim``).
On the CPU torch's SGD and Adam loop over the parameters (a handful of ops each); on
CUDA they default to ``foreach`` kernels, a few launches for all parameters together,
so ``optim`` overstates CUDA's launches and ``fwd + bwd`` is the supernet's and the
method's share. ``--top K`` lists the K most frequent ops of each method (where the
launches come from). Counts are per search step (a weight step plus the method's α
step), averaged over ``--steps`` steps after one warm-up step, on the ``smoke`` shape
(the counts do not depend on the shape: N, C and the batch change no Python path
except the supernet's per-cell loop, which scales with N; ``--preset paper`` counts at
N = 5).

    python benchmarks/host_syncs.py [--methods darts,gdas] [--steps 3] [--top 15] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's harness, not another
aten = torch.ops.aten
SCALAR_READS = {aten._local_scalar_dense.default}
KINDS = ("read", "copy", "list_index")
"""What a sync is counted as; ``torch_cpu`` reads (see :data:`SYNC_FREE_ON_CUDA`) are not."""
INDEX_OPS = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default}
PHASES = ("fwd", "bwd", "optim")
"""Where a counted op runs: forward (and the rest of the step), backward, optimizer step."""


class HostSyncCounter(TorchDispatchMode):
    """Counts what would be a host sync on CUDA, by kind and call site (see module)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._host: dict[int, weakref.ref] = {}
        self.cpu_only = 0  # > 0 inside a torch call whose reads happen on the CPU only
        self.in_optimizer = 0  # > 0 inside an optimizer's step
        self.ops: collections.Counter[tuple[str, str]] = collections.Counter()  # (phase, op)

    @property
    def device_ops(self) -> int:
        """Ops on device tensors other than views and empty outputs (≈ kernels)."""
        return sum(self.ops.values())

    def phase(self) -> str:
        if self.in_optimizer:
            return "optim"
        return "bwd" if torch._C._current_graph_task_id() != -1 else "fwd"

    # --- which tensors live on the host -------------------------------------------
    def mark_host(self, tensor: Any) -> Any:
        if isinstance(tensor, torch.Tensor):
            self._host[id(tensor)] = weakref.ref(tensor)
        return tensor

    def forget(self, tensor: torch.Tensor) -> None:
        self._host.pop(id(tensor), None)

    def is_host(self, tensor: torch.Tensor) -> bool:
        ref = self._host.get(id(tensor))
        return ref is not None and ref() is tensor

    # --- counting -----------------------------------------------------------------
    def record(self, kind: str) -> None:
        site, via = _call_site()
        self.counts[("torch_cpu" if self.cpu_only else via or kind, site)] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        host_inputs = all(self.is_host(t) for t in tensors)  # a factory: made on the host
        if func in INDEX_OPS:  # a Python-list index is made outside the dispatcher
            host_inputs = self.is_host(args[0])
        launches = not func.is_view and not host_inputs
        if func in SCALAR_READS and not host_inputs:
            self.record("read")
        if func in INDEX_OPS and not host_inputs and torch._C._current_graph_task_id() == -1:
            self.record("list_index")  # in a backward the index is the forward's, on the device
        out = func(*args, **kwargs)
        if launches and _writes_elements(out):
            self.ops[(self.phase(), str(func))] += 1  # roughly one kernel launch on CUDA
        for t in tree_flatten(out)[0]:  # in-place ops return an input: re-decide it too
            if host_inputs:
                self.mark_host(t)
            elif isinstance(t, torch.Tensor):
                self.forget(t)
        return out

    def total(self, kind: str | None = None) -> int:
        return sum(n for (k, _), n in self.counts.items() if kind in (None, k))


def _writes_elements(out: Any) -> bool:
    """False for ops with no element to compute: a kernel launch needs one (profiler
    markers return no tensor; a CPU batch norm allocates an empty reserve tensor)."""
    tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    return any(t.numel() > 0 for t in tensors)


TORCH = Path(torch.__file__).parent
SYNC_FREE_ON_CUDA = (TORCH / "optim", TORCH / "nn" / "utils", TORCH / "utils" / "_foreach_utils.py")
"""torch code whose CPU path reads values its CUDA path keeps on the device
(``clip_grad_norm_``, the optimizers' CPU step counters, foreach grouping): a read
made inside it is counted apart, as ``torch_cpu``, not as a sync of the step."""


def _call_site() -> tuple[str, str]:
    """(``path:line`` of the innermost harness frame, ``"torch_cpu"`` if the call went
    through :data:`SYNC_FREE_ON_CUDA` code after it, else ``""``)."""
    stack = [f for f in traceback.extract_stack() if Path(f.filename) != Path(__file__)]
    for depth in range(len(stack) - 1, -1, -1):
        path = Path(stack[depth].filename)
        if ROOT / "harness" in path.parents:
            below = [Path(f.filename) for f in stack[depth + 1 :]]
            inside = any(r == p or r in p.parents for p in below for r in SYNC_FREE_ON_CUDA)
            return f"{path.relative_to(ROOT)}:{stack[depth].lineno}", "torch_cpu" if inside else ""
    return "(outside harness)", ""


@contextmanager
def counting() -> Iterator[HostSyncCounter]:
    """A counter active over the block: the dispatch mode plus the Tensor methods that
    read or copy without reaching the dispatcher on a CPU."""
    counter = HostSyncCounter()
    originals: dict[str, Callable[..., Any]] = {}

    def patch(name: str, wrapper: Callable[..., Any]) -> None:
        originals[name] = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, wrapper)

    def reader(name: str) -> Callable[..., Any]:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not counter.is_host(self):
                counter.record("read")
            return counter.mark_host(originals[name](self, *args, **kwargs))

        return read

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """A host tensor sent to a device: a copy, blocking unless ``non_blocking``
        (the harness moves device values to the host with ``.cpu()``, counted above)."""
        target = next((a for a in args if isinstance(a, torch.device | str)), None)
        target = kwargs.get("device", target)
        moved = originals["to"](self, *args, **kwargs)
        if target is not None and counter.is_host(self):
            if not kwargs.get("non_blocking"):
                counter.record("copy")
            if moved is self:  # on the CPU: the host tensor itself ...
                moved = moved.view_as(moved)  # (a view keeps its autograd history)
                counter.forget(moved)  # ... but what the caller holds is a device tensor
        return moved

    def one_hot(*args: Any, **kwargs: Any) -> torch.Tensor:
        """``F.one_hot``: its CPU kernel reads min and max to check the classes; its CUDA
        kernel, given ``num_classes``, does not."""
        counter.cpu_only += 1
        try:
            return original_one_hot(*args, **kwargs)
        finally:
            counter.cpu_only -= 1

    def from_numpy(array: Any) -> torch.Tensor:
        return counter.mark_host(original_from_numpy(array))

    def enter_step(*_: Any) -> None:
        counter.in_optimizer += 1

    def leave_step(*_: Any) -> None:
        counter.in_optimizer -= 1

    for name in ("tolist", "cpu", "numpy"):
        patch(name, reader(name))
    hooks = (
        register_optimizer_step_pre_hook(enter_step),
        register_optimizer_step_post_hook(leave_step),
    )
    patch("to", to)
    original_from_numpy, original_one_hot = torch.from_numpy, F.one_hot
    torch.from_numpy, F.one_hot = from_numpy, one_hot
    try:
        with counter:
            yield counter
    finally:
        for hook in hooks:
            hook.remove()
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        torch.from_numpy, F.one_hot = original_from_numpy, original_one_hot


def method_step_counts(
    method: str, steps: int, preset: str, settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """Mean syncs per search step of ``method`` by kind, and the sites they come from;
    ``settings`` as ``run --set`` takes them (``gdas.sampling``: ``device``)."""
    from bench_search_step import search_step

    from harness import config as cfg
    from harness import methods
    from harness.paths import find_data_dir
    from harness.search import build_state, configure_torch

    overrides = {"device": "cpu", "train_size": "256", "valid_size": "256", **(settings or {})}
    config = cfg.resolve(
        preset, method, overrides, methods.method_class(method).Options, 0, methods.option_keys()
    )
    device = torch.device("cpu")
    configure_torch(config, device)
    state = build_state(config, find_data_dir(), device)
    step = search_step(state, config.epochs)
    step()  # warm-up: first-call paths (optimizer state) are not per-step costs
    with counting() as counter:
        for _ in range(steps):
            step()
    per_step = {kind: counter.total(kind) / steps for kind in KINDS}
    sites = {f"{kind} {site}": n / steps for (kind, site), n in sorted(counter.counts.items())}
    phases = {p: sum(n for (q, _), n in counter.ops.items() if q == p) / steps for p in PHASES}
    by_op: collections.Counter[str] = collections.Counter()
    for (phase, op), n in counter.ops.items():
        by_op[f"{phase} {op}"] += n / steps
    return {
        "per_step": per_step,
        "syncs": sum(per_step.values()),
        "ops": counter.device_ops / steps,
        "ops_by_phase": phases,
        "ops_by_name": dict(by_op.most_common()),
        "sites": sites,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", help="comma-separated; default every registered method")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--preset", default="smoke", help="smoke (N=1) or paper (N=5)")
    parser.add_argument("--top", type=int, default=0, help="list each method's K commonest ops")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="as `run --set`"
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    torch.set_num_threads(1)
    from harness import methods

    names = args.methods.split(",") if args.methods else list(methods.registry())
    result = {name: method_step_counts(name, args.steps, args.preset, settings) for name in names}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{'method':>12} {'read':>6} {'copy':>6} {'index':>6} {'ops':>7} {'fwd':>6} {'bwd':>6}"
        f" {'optim':>6}  (per step, {args.preset})"
    )
    for name, counts in result.items():
        per, phase = counts["per_step"], counts["ops_by_phase"]
        print(
            f"{name:>12} {per['read']:6.1f} {per['copy']:6.1f} {per['list_index']:6.1f} "
            f"{counts['ops']:7.0f} {phase['fwd']:6.0f} {phase['bwd']:6.0f} {phase['optim']:6.0f}"
        )
    for name, counts in result.items() if args.top else ():
        print(f"\n{name}: the {args.top} commonest ops per step")
        for op, n in list(counts["ops_by_name"].items())[: args.top]:
            print(f"  {n:7.1f}  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
