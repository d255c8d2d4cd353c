"""Supernet training step against xautodl's ``TinyNetworkDarts`` (AutoDL, NB201's own code).

One step = forward with softmax edge weights + cross-entropy + backward, train mode,
batch 64 images of the preset's size (32×32; 16×16 for ``cpu``). xautodl's network is
built as AutoDL builds it for DARTS (affine-free op BN, batch statistics) and ours is
loaded with its weights, so every variant computes the same function. Variants:
xautodl fp32 (the unit) and under bf16 + channels_last, our ``reference`` path in
fp32, the ``fused`` path in fp32 and under each switch (``bf16`` autocast,
``channels_last``, both), and with ``--baseline-rev R`` the fused path of
``harness/supernet.py`` at git revision R under the same four settings (``fused@R``).
All variants alternate in one process (A B C ... A B C ...); ratios are xautodl fp32
median / variant median. ``--variants`` picks some (the unit is always timed).

    python benchmarks/bench_xautodl.py [--json] [--repeats N] [--threads T]
                                       [--shapes paper,proxy,cpu] [--baseline-rev R]
                                       [--variants "fused fp32,fused bf16"]

Shapes are preset names of :data:`harness.config.PRESETS` (their C, N and image size) or
any shape written ``C16N1R16`` (width C, N cells per stage, R × R images), e.g.
``--shapes cpu,C16N1R16,C16N2R16``. Needs ``pip install --no-deps xautodl==1.0.0``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from bench_supernet import (
    BATCH,
    apply_threads,
    base_parser,
    emit,
    interleaved,
    median,
    shape_of,
    supernet_at,
)
from torch import nn

from harness.space import EDGES
from harness.supernet import SLOT, SuperNet

TARGETS = {"fused": 3.0, "fastest switch": 5.0}
"""Paper shape, vs xautodl fp32 in the same run (issue 16)."""
CONV = {2: "conv1", 3: "conv3"}  # NB201 op index → our stacked kernels
UNIT = "xautodl fp32"
SWITCHES = (
    ("fp32", False, False),
    ("bf16", False, True),
    ("channels_last", True, False),
    ("bf16+channels_last", True, True),
)
"""(name, channels_last, bf16) of each setting of the fused path."""


def xautodl_net(C: int, N: int) -> nn.Module:
    from xautodl.models.cell_operations import NAS_BENCH_201
    from xautodl.models.cell_searchs.search_model_darts import TinyNetworkDarts

    return TinyNetworkDarts(C, N, 4, 10, NAS_BENCH_201, False, False)


def load_from_xautodl(theirs: nn.Module, ours: nn.Module) -> None:
    """Copy every weight of xautodl's network into ours (names mapped, edge rows by SLOT)."""
    mine = dict(ours.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            if name == "arch_parameters":
                continue
            parts = name.split(".")
            if parts[0] == "cells" and parts[2] == "edges":  # cells.i.edges.t<-s.op.op.1.w
                target, source = (int(n) for n in parts[3].split("<-"))
                key = f"layers.{parts[1]}.{CONV[int(parts[4])]}_{parts[-1]}"
                mine[key][SLOT[EDGES.index((target, source))]].copy_(param)
            else:
                key = name.replace("cells.", "layers.").replace(".op.", ".")
                key = key.replace("downsample.", "shortcut.").replace("lastact.0.", "head_bn.")
                mine[key].copy_(param)
            copied += param.numel()
    if copied != sum(p.numel() for p in ours.parameters()):
        raise RuntimeError("xautodl's weights do not cover ours exactly")


def step_fn(
    forward: Callable[[torch.Tensor], torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bf16: bool,
) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            logits = forward(x)
        F.cross_entropy(logits.float(), y).backward()

    return step


def variants(
    C: int, N: int, side: int, baseline: str, wanted: set[str]
) -> dict[str, Callable[[], None]]:
    """The timed steps (``wanted`` ones, all when empty; always the unit), keyed by
    name; every model holds xautodl's weights."""
    torch.manual_seed(0)
    theirs = xautodl_net(C, N).train()
    theirs_cl = xautodl_net(C, N).train()
    theirs_cl.load_state_dict(theirs.state_dict())
    theirs_cl.to(memory_format=torch.channels_last)
    alpha = theirs.arch_parameters.detach()
    w = alpha.softmax(-1)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, side, side, generator=generator)
    y = torch.randint(0, 10, (BATCH,), generator=generator)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def ours(impl: str, cls: type = SuperNet, channels_last: bool = False) -> nn.Module:
        net = cls(C, N, 10, impl).train()
        load_from_xautodl(theirs, net)
        return net.to_channels_last() if channels_last else net

    def xautodl_logits(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: net(images)[1]

    def our_logits(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda images: net(images, w)

    steps: dict[str, Callable[[], None]] = {
        UNIT: step_fn(xautodl_logits(theirs), theirs, x, y, False),
        "xautodl bf16+channels_last": step_fn(xautodl_logits(theirs_cl), theirs_cl, x_cl, y, True),
    }
    reference = ours("reference")
    steps["reference fp32"] = step_fn(our_logits(reference), reference, x, y, False)
    classes = {
        "fused": SuperNet,
        **({f"fused@{baseline}": supernet_at(baseline)} if baseline else {}),
    }
    for prefix, cls in classes.items():
        for switch, cl, bf16 in SWITCHES:
            name = f"{prefix} {switch}"
            if wanted and name not in wanted:
                continue
            net = ours("fused", cls, channels_last=cl)
            steps[name] = step_fn(our_logits(net), net, x_cl if cl else x, y, bf16)
    return {k: v for k, v in steps.items() if not wanted or k in wanted or k == UNIT}
    return steps


def measure(shape: str, repeats: int, baseline: str, wanted: set[str]) -> dict[str, Any]:
    C, N, side = shape_of(shape)
    times = interleaved(variants(C, N, side, baseline, wanted), repeats)
    unit = median(times[UNIT])
    rows = {
        name: {"s": median(t), "img_s": BATCH / median(t), "ratio": unit / median(t)}
        for name, t in times.items()
    }
    return {
        "shape": shape,
        "C": C,
        "N": N,
        "side": side,
        "batch": BATCH,
        "repeats": repeats,
        "variants": rows,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=0)
    parser.add_argument(
        "--shapes", default="paper,proxy", help="comma-separated presets or C<c>N<n>R<side> shapes"
    )
    parser.add_argument("--baseline-rev", default="", help="also time the fused path at this rev")
    parser.add_argument("--variants", default="", help="comma-separated names; default all")
    args = parser.parse_args()
    wanted = {v.strip() for v in args.variants.split(",") if v.strip()}
    apply_threads(args.threads)
    results = [
        measure(shape, args.repeats or (5 if shape == "paper" else 15), args.baseline_rev, wanted)
        for shape in args.shapes.split(",")
    ]
    rows = [
        [r["shape"], name, v["s"], v["img_s"], v["ratio"]]
        for r in results
        for name, v in r["variants"].items()
    ]
    payload: dict[str, Any] = {"results": results, "targets_paper": TARGETS}
    for r in results:
        for name, v in r["variants"].items():
            key = name.replace("@", "_at_").replace("+", "_").replace(" ", "_")
            payload[f"ratio_{r['shape']}_{key}"] = v["ratio"]
    header = ["shape", "variant", "s/step", "img/s", "vs xautodl fp32"]
    emit(
        "bench_xautodl: training step vs xautodl TinyNetworkDarts", header, rows, payload, args.json
    )


if __name__ == "__main__":
    main()
