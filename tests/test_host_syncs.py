"""A search step on a GPU must not wait for the GPU, nor launch more than it needs
(issue 28). Both are counted on the CPU with ``benchmarks/host_syncs.py``'s dispatch
mode: reads of device values (``aten._local_scalar_dense`` behind ``item``/``float``/
``bool``, ``tolist``, ``cpu``, ``numpy``), blocking host → device copies and Python-list
indexes, and the ops a step dispatches (≈ CUDA kernel launches)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import make, tiny_state

from harness import methods
from harness.methods.base import StepContext
from harness.train import weight_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import host_syncs  # noqa: E402 - a benchmark script, importable from its folder

HOST_DECISIONS = {
    "gdas": {"read harness/methods/parts/sampling.py": 2},
    "constrained": {"read harness/methods/constrained.py": 1},
}
"""The syncs that are part of a published algorithm (the method's docstring and
``benchmarks/README.md`` say why): GDAS computes only the sampled op of each edge, so
each of its two draws per step is read by the host; the dynamic schedule of
``constrained`` decides on the host, from ‖∇w‖² of the weight step, whether an α step
is computed at all. Anything else is a sync a step does not need. ``gdas.sampling=device``
trades GDAS's two reads for the dense cost (every op computed), and
``constrained.decide=device`` its read for an α step computed on every step: none."""

VARIANTS = [(name, {}) for name in sorted(methods.registry())] + [
    ("constrained", {"schedule": "fixed"}),  # no ‖∇w‖² read without the dynamic schedule
    ("drnas", {"progressive": True}),  # partial channels and the pruning mask
    ("gdas", {"sampling": "device"}),  # the sample stays on the device: every op computed
    ("constrained", {"decide": "device"}),  # F̄ and θ on the device: every α step computed
]


def counted_step(name: str, options: dict[str, Any]) -> host_syncs.HostSyncCounter:
    """The counter after the second loop step of ``name`` on the tiny float64 supernet
    (the first one builds the optimizers' state and the supernet's cached indices)."""
    torch.manual_seed(0)
    state = tiny_state(make(name, epochs=4, **options))
    method = state.method
    train = next(state.data.train.epoch_batches(0))
    valid = next(state.data.valid.epoch_batches(0))

    def step(at: int) -> None:
        ctx = StepContext(state.model, state.w_optimizer, 0, at, 3, 4, state.numerics)
        if method.alpha_first:
            method.arch_step(ctx, train, valid)
        weight_step(state, ctx, train)
        if not method.alpha_first:
            method.arch_step(ctx, train, valid)

    step(0)
    with host_syncs.counting() as counter:
        step(1)
    return counter


def syncs_by_site(counter: host_syncs.HostSyncCounter) -> dict[str, int]:
    """Syncs by kind and file (line numbers left out: they move with edits)."""
    found: dict[str, int] = {}
    for (kind, site), n in counter.counts.items():
        if kind in host_syncs.KINDS:
            place = f"{kind} {site.rsplit(':', 1)[0]}"
            found[place] = found.get(place, 0) + n
    return found


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=lambda v: str(v) if v else "")
def test_a_methods_step_makes_no_host_sync_but_its_published_decisions(
    float64_default: None, name: str, options: dict[str, Any]
) -> None:
    """The whole step (method, loop and supernet alike) reads no device value, copies
    nothing from the host blockingly and builds no index from a Python list, bar
    :data:`HOST_DECISIONS` — exactly those, at those places."""
    expected = {} if options else HOST_DECISIONS.get(name, {})
    assert syncs_by_site(counted_step(name, options)) == expected


DARTS_OPS_CEILING = {"fwd": 300, "bwd": 410}
"""Ops one DARTS step (weight step + α step) dispatches at N = 1, forward and backward:
291 and 392 under torch 2.13 (ba5fad3, before the supernet cut its stacked tensors once
per forward: 315 and 542); the ceiling leaves ~3 % for another torch's decompositions.
Optimizer steps are left out: on the CPU torch's SGD loops over the parameters, on CUDA
it defaults to ``foreach`` kernels."""


def test_a_darts_step_stays_under_its_op_ceiling(float64_default: None) -> None:
    """A regression that re-adds per-call constants (the avg-pool kernels, an index
    built per call), per-slice gradients or per-op casts shows up here as more ops."""
    counter = counted_step("darts", {})
    per_phase = {phase: 0 for phase in host_syncs.PHASES}
    for (phase, _), n in counter.ops.items():
        per_phase[phase] += n
    assert per_phase["fwd"] <= DARTS_OPS_CEILING["fwd"], per_phase
    assert per_phase["bwd"] <= DARTS_OPS_CEILING["bwd"], per_phase
    assert per_phase["optim"] > 0  # the optimizers' steps were seen, and kept apart
