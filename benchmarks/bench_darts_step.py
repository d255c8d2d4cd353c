"""A DARTS search step of the fused supernet, this checkout vs another revision.

One step = the α step (softmax weights on a valid batch, gradient to α only) and the
weight step (detached weights on a train batch, backward, SGD with momentum, Nesterov
and weight decay), the first-order DARTS step of the search loop, at a preset's shape
(C, N, resolution; batch 64) or any shape written ``C16N1R16``. ``--baseline-rev R``
builds the supernet of revision R with the same initial values and times both in turn
(A B A B …); the figure is CPU seconds per step (``time.process_time``: what other
processes' load does not inflate), medians, and their ratio (> 1: this checkout is faster).

    python benchmarks/bench_darts_step.py --baseline-rev 3a30a17 [--shapes cpu,C16N1R16]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # this checkout's harness
from bench_supernet import BATCH, apply_threads, base_parser, emit, shape_of, supernet_at  # noqa: E402

from harness.supernet import SuperNet  # noqa: E402


def darts_step(model: torch.nn.Module, batch: int, side: int) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, batch, 3, side, side, generator=generator)
    y = torch.randint(0, 10, (2, batch), generator=generator)
    alpha = (1e-3 * torch.randn(6, 5, generator=generator)).requires_grad_()
    sgd = torch.optim.SGD(
        model.parameters(), lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4
    )

    def step() -> None:
        loss = F.cross_entropy(model(x[1], alpha.softmax(-1)), y[1])
        (grad,) = torch.autograd.grad(loss, [alpha])
        with torch.no_grad():
            alpha.sub_(3e-4 * grad)
        sgd.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[0], alpha.detach().softmax(-1)), y[0]).backward()
        sgd.step()

    return step


def measure(shape: str, baseline: type, repeats: int) -> list[float]:
    """[CPU s per step at the baseline, now, their ratio] at one shape, interleaved."""
    C, N, side = shape_of(shape)
    classes = {"now": SuperNet, "baseline": baseline}
    steps = {}
    for name, cls in classes.items():
        torch.manual_seed(0)  # same initial values
        model = cls(C, N, impl="fused").train()
        steps[name] = darts_step(model, BATCH, side)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 1):  # the first round warms up
        for name, step in steps.items():
            start = time.process_time()
            step()
            if round_:
                seconds[name].append(time.process_time() - start)
    now, before = (statistics.median(seconds[name]) for name in steps)
    return [before, now, before / now]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=30)
    parser.add_argument(
        "--shapes", default="cpu", help="presets or C<c>N<n>R<side>, comma-separated"
    )
    parser.add_argument("--baseline-rev", required=True, help="the revision to compare with")
    args = parser.parse_args()
    apply_threads(args.threads)
    baseline = supernet_at(args.baseline_rev)
    shapes = args.shapes.split(",")
    rows = [[shape, *measure(shape, baseline, args.repeats)] for shape in shapes]
    header = ["shape", f"CPU s at {args.baseline_rev}", "CPU s now", "ratio"]
    payload = {r[0]: {"baseline_s": r[1], "now_s": r[2], "ratio": r[3]} for r in rows}
    emit("bench_darts_step: DARTS search step, CPU seconds", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
