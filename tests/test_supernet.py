"""The fused supernet equals the reference implementation: outputs, gradients, BN state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from harness import supernet
from harness.space import EDGES
from harness.supernet import (
    SLOT,
    SLOT_EDGES,
    SOURCE_SLOTS,
    STACKED,
    AddSkipPool,
    SearchCell,
    SuperNet,
    avg_pool3,
    channel_shuffle,
)


def pair(**kwargs: object) -> tuple[SuperNet, SuperNet]:
    torch.manual_seed(0)
    reference = SuperNet(C=4, N=2, impl="reference", **kwargs).double()
    fused = SuperNet(C=4, N=2, impl="fused", **kwargs).double()
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def grads(model: SuperNet, x: torch.Tensor, alpha: torch.Tensor) -> list[torch.Tensor]:
    out = model(x, alpha.softmax(-1))
    return list(torch.autograd.grad(out.square().sum(), [alpha, *model.parameters()]))


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("node_bn", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (3, 6, 5), (6, 6, 5)])
def test_fused_equals_reference(track: bool, node_bn: bool, shape: tuple[int, ...]) -> None:
    reference, fused = pair(track_running_stats=track, node_bn=node_bn)
    x = torch.randn(6, 3, 16, 16, dtype=torch.double)
    alpha = torch.randn(shape, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(fused(x, alpha.softmax(-1)), reference(x, alpha.softmax(-1)))
    for g_fused, g_ref in zip(grads(fused, x, alpha), grads(reference, x, alpha), strict=True):
        torch.testing.assert_close(g_fused, g_ref)
    for (name, a), b in zip(
        reference.state_dict().items(), fused.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_eval_mode_with_running_stats_matches() -> None:
    reference, fused = pair(track_running_stats=True)
    x = torch.randn(6, 3, 16, 16, dtype=torch.double)
    w = torch.randn(6, 5, dtype=torch.double).softmax(-1)
    reference(x, w), fused(x, w)  # one training pass updates the running statistics
    reference.eval(), fused.eval()
    torch.testing.assert_close(fused(x, w), reference(x, w))


def test_active_mask_skips_zero_ops_exactly() -> None:
    reference, fused = pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    for ops in ([3, 0, 2, 1, 4, 3], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [4, 2, 0, 3, 0, 1]):
        onehot = F.one_hot(torch.tensor(ops), 5).double()
        torch.testing.assert_close(fused(x, onehot, onehot.bool()), reference(x, onehot))


def test_pruned_ops_mask_matches_zeroed_weights() -> None:
    reference, fused = pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    w = torch.rand(6, 5, dtype=torch.double)
    active = torch.rand(6, 5) > 0.4
    w = w * active
    torch.testing.assert_close(fused(x, w, active), reference(x, w))


def test_bad_weight_shape_is_rejected() -> None:
    _, fused = pair()
    with pytest.raises(ValueError, match="edge weights must be"):
        fused(torch.randn(2, 3, 16, 16, dtype=torch.double), torch.ones(4, 6, 5).double())


def test_paper_shape_parameter_count() -> None:
    """C=16, N=5: the NB201 search network's size is fixed by the skeleton."""
    model = SuperNet(C=16, N=5)
    cells = [m for m in model.layers if m.__class__.__name__ == "SearchCell"]
    assert len(cells) == 15
    per_cell_16 = 6 * (16 * 16 * 9 + 16 + 16 * 16 + 16)
    assert sum(p.numel() for p in cells[0].parameters()) == per_cell_16
    logits = model(torch.randn(2, 3, 32, 32), torch.full((6, 5), 0.2))
    assert logits.shape == (2, 10)


def test_storage_rows_group_edges_by_source() -> None:
    """Edges leaving one node are consecutive storage rows, so their kernels are a view."""
    assert sorted(SLOT_EDGES) == list(range(6))
    assert [SLOT_EDGES[SLOT[k]] for k in range(6)] == list(range(6))
    for source, (lo, hi) in enumerate(SOURCE_SLOTS):
        assert [EDGES[SLOT_EDGES[s]][1] for s in range(lo, hi)] == [source] * (hi - lo)


def test_edge_kernel_lives_in_its_slot() -> None:
    """Storage row SLOT[k] is edge k's 3×3 kernel, in both forward paths."""
    torch.manual_seed(0)
    cell = SearchCell(4, track_running_stats=False).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.double)
    to_output = {1: 4, 2: 5}  # skip from node 1 / node 2 on to node 3 (α rows 4, 5)
    for k, (target, _) in enumerate(EDGES):
        only_k = torch.zeros(6, 5, dtype=torch.double)
        only_k[k, 3] = 1.0
        if target in to_output:
            only_k[to_output[target], 1] = 1.0
        rest = torch.full((6, 5), 0.2, dtype=torch.double)
        rest[k, 3] = 0.0
        before = [cell.forward_reference(x, w) for w in (only_k, rest)]
        with torch.no_grad():
            cell.conv3_weight[SLOT[k]].mul_(-1.0)
        for forward in (cell.forward_reference, lambda h, w: cell.forward_fused(h, w, None)):
            torch.testing.assert_close(forward(x, only_k), -before[0])
            torch.testing.assert_close(forward(x, rest), before[1])
        with torch.no_grad():
            cell.conv3_weight[SLOT[k]].mul_(-1.0)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 5), (8, 8), (32, 32)])
def test_avg_pool3_equals_avg_pool2d(size: tuple[int, int]) -> None:
    x = torch.randn(3, 4, *size, dtype=torch.double, requires_grad=True)
    expected = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    torch.testing.assert_close(avg_pool3(x), expected)
    g = torch.randn_like(expected)
    (mine,) = torch.autograd.grad(avg_pool3(x), x, g)
    (theirs,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("channels_last", [False, True])
def test_add_skip_pool_gradients(channels_last: bool) -> None:
    """The hand-written backward (GEMM or plain reductions) against finite differences."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    b, e, c, h, w = 2, 3, 2, 3, 3

    def build(*shape: int) -> torch.Tensor:
        t = torch.randn(*shape, dtype=torch.double)
        if len(shape) == 4:
            t = t.contiguous(memory_format=layout)
        return t.requires_grad_()

    y, src, pooled = build(b, e * c, h, w), build(b, c, h, w), build(b, c, h, w)
    w_skip, w_pool = build(e), build(e)

    def mixed(y: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return AddSkipPool.apply(y.view(b, e, c, h, w) * 1.0, *rest)

    assert torch.autograd.gradcheck(mixed, (y, src, pooled, w_skip, w_pool))


def test_channels_last_fused_equals_reference() -> None:
    """Channels_last model and images: same outputs and gradients as the NCHW reference.

    Also guards the one-edge source (node 2), whose BN scale was a stride-0 view that
    the CPU channels_last BN backward read wrongly."""
    reference, fused = pair()
    fused.to_channels_last()
    x = torch.randn(6, 3, 16, 16, dtype=torch.double)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    alpha = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(fused(x_cl, alpha.softmax(-1)), reference(x, alpha.softmax(-1)))
    mine = torch.autograd.grad(
        fused(x_cl, alpha.softmax(-1)).square().sum(), [alpha, *fused.parameters()]
    )
    theirs = grads(reference, x, alpha)
    for g_fused, g_ref in zip(mine, theirs, strict=True):
        torch.testing.assert_close(g_fused, g_ref)
    onehot = F.one_hot(torch.tensor([3, 0, 2, 1, 4, 3]), 5).double()
    torch.testing.assert_close(fused(x_cl, onehot, onehot.bool()), reference(x, onehot))


def test_bf16_autocast_stays_close() -> None:
    """Under bfloat16 autocast the fused supernet runs and stays near fp32 (loose bound)."""
    torch.manual_seed(0)
    model = SuperNet(C=4, N=1)
    x = torch.randn(8, 3, 16, 16)
    w = torch.randn(6, 5).softmax(-1)
    exact = model(x, w)
    with torch.autocast("cpu", torch.bfloat16):
        low = model(x, w)
    assert low.dtype == torch.bfloat16
    assert (low.float() - exact).abs().max() < 0.05 * exact.abs().max() + 0.05


def test_state_dict_in_alpha_row_order_is_permuted_on_load() -> None:
    """A state dict without ``edge_rows`` (saved before the source-grouped layout, rows
    in α order) loads into the right edges instead of being misread."""
    reference, _ = pair(track_running_stats=True)
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    w = torch.randn(6, 5, dtype=torch.double).softmax(-1)
    reference(x, w)  # moves the running statistics off their initial values
    old_layout = {}
    for key, value in reference.state_dict().items():
        if key.endswith("edge_rows"):
            continue
        stacked = key.rsplit(".", 1)[-1] in STACKED
        old_layout[key] = value[list(SLOT)] if stacked else value  # row k = edge k
    _, loaded = pair(track_running_stats=True)
    loaded.load_state_dict(old_layout)
    for (name, a), b in zip(
        reference.state_dict().items(), loaded.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_add_skip_pool_channels_last_backward_is_the_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels_last per-edge gradients stay channels_last and take the GEMM backward,
    with the same gradients as NCHW ones (which take the NCHW GEMM)."""
    b, e, c, h, w = 2, 3, 4, 5, 5
    cl = torch.channels_last
    torch.manual_seed(0)

    def leaf(*shape: int) -> torch.Tensor:
        t = torch.randn(*shape, dtype=torch.double)
        return (t.contiguous(memory_format=cl) if len(shape) == 4 else t).requires_grad_()

    inputs = [leaf(b, e * c, h, w), leaf(b, c, h, w), leaf(b, c, h, w), leaf(e), leaf(e)]
    grads = [torch.randn(b, c, h, w, dtype=torch.double) for _ in range(e)]
    calls: list[str] = []
    for name in ("_source_grad_cl", "_weight_grad_cl"):
        original = getattr(supernet, name)
        monkeypatch.setattr(
            supernet, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a)
        )

    def backward(layout: torch.memory_format) -> tuple[torch.Tensor, ...]:
        y, *rest = inputs
        outs = AddSkipPool.apply(y.view(b, e, c, h, w), *rest)
        given = [g.contiguous(memory_format=layout) for g in grads]
        return torch.autograd.grad(outs, inputs, given)

    nchw = backward(torch.contiguous_format)
    assert calls == []
    channels_last = backward(cl)
    assert sorted(set(calls)) == ["_source_grad_cl", "_weight_grad_cl"]
    assert channels_last[0].is_contiguous(memory_format=cl)
    for mine, theirs in zip(channels_last, nchw, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


# --- partial channels (PC-DARTS) and the straight-through hard forward (GDAS) ----------------
def pc_pair(k: int, **kwargs: object) -> tuple[SuperNet, SuperNet]:
    """Reference and fused supernets at C = 8 with partial channels K = ``k``."""
    torch.manual_seed(0)
    reference = SuperNet(C=8, N=1, impl="reference", partial_channels=k, **kwargs).double()
    fused = SuperNet(C=8, N=1, impl="fused", partial_channels=k, **kwargs).double()
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def test_channel_shuffle_is_the_pc_darts_permutation() -> None:
    """Channel g·(C/K) + j of the input becomes channel j·K + g (groups K = 4, C = 8)."""
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 3, 3).contiguous()
    shuffled = channel_shuffle(x, 4)
    assert shuffled[0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
    assert torch.equal(channel_shuffle(x, 1), x)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("node_bn", [False, True])
def test_partial_channels_fused_equals_reference(k: int, track: bool, node_bn: bool) -> None:
    reference, fused = pc_pair(k, track_running_stats=track, node_bn=node_bn)
    x = torch.randn(4, 3, 8, 8, dtype=torch.double)
    alpha = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(fused(x, alpha.softmax(-1)), reference(x, alpha.softmax(-1)))
    for g_fused, g_ref in zip(grads(fused, x, alpha), grads(reference, x, alpha), strict=True):
        torch.testing.assert_close(g_fused, g_ref)
    for (name, a), b in zip(
        reference.state_dict().items(), fused.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    onehot = F.one_hot(torch.tensor([3, 0, 2, 1, 4, 3]), 5).double()  # sparse path, `none`
    torch.testing.assert_close(fused(x, onehot, onehot.bool()), reference(x, onehot))


def pc_cell_by_hand(cell: SearchCell, x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """PC-DARTS's partial mixed op written out from primitives (methods-spec §9; DrNAS's
    ``NAS201SearchCell_PartialChannel.MixedOp``): ops on x[:, :C/K] with the top-left
    C/K × C/K block of each kernel, bypass x[:, C/K:], cat, shuffle; nodes sum edges."""
    c = cell.channels // k

    def conv_bn(h: torch.Tensor, kind: str, edge: int) -> torch.Tensor:
        weight = getattr(cell, f"{kind}_weight")[SLOT[edge], :c, :c]
        bias = getattr(cell, f"{kind}_bias")[SLOT[edge], :c]
        y = F.conv2d(F.relu(h), weight, bias, padding=weight.shape[-1] // 2)
        return F.batch_norm(y, None, None, training=True)

    nodes = [x]
    for target in (1, 2, 3):
        total = torch.zeros_like(x)
        for edge, (t, source) in enumerate(EDGES):
            if t != target:
                continue
            part, rest = nodes[source][:, :c], nodes[source][:, c:]
            ops = [
                part * 0,
                part,
                conv_bn(part, "conv1", edge),
                conv_bn(part, "conv3", edge),
                F.avg_pool2d(part, 3, 1, 1, count_include_pad=False),
            ]
            mixed = sum(w[edge, o] * ops[o] for o in range(5))
            both = torch.cat([mixed, rest], dim=1)
            b, _, height, width = both.shape
            total = total + both.view(b, k, c, height, width).transpose(1, 2).reshape(both.shape)
        nodes.append(total)
    return nodes[3]


@pytest.mark.parametrize("k", [2, 4])
def test_partial_channel_cell_equals_the_mixed_op_written_out(k: int) -> None:
    torch.manual_seed(0)
    cell = SearchCell(8, track_running_stats=False, partial=k).double()
    x = torch.randn(3, 8, 6, 6, dtype=torch.double)
    w = torch.randn(6, 5, dtype=torch.double).softmax(-1)
    expected = pc_cell_by_hand(cell, x, w, k)
    torch.testing.assert_close(cell.forward_reference(x, w), expected)
    torch.testing.assert_close(cell.forward_fused(x, w, None), expected)
    assert not torch.allclose(SearchCell(8, False).double().forward_reference(x, w), expected)


def test_partial_channels_keep_the_layout_and_can_change() -> None:
    full = SuperNet(C=8, N=1)
    pc = SuperNet(C=8, N=1, partial_channels=4)
    assert [p.shape for p in pc.parameters()] == [p.shape for p in full.parameters()]
    assert pc.partial_channels == 4
    pc.set_partial_channels(2)
    assert pc.partial_channels == 2
    assert all(
        cell.op_channels == cell.channels // 2 for cell in pc.layers if hasattr(cell, "partial")
    )
    with pytest.raises(ValueError, match="must divide"):
        pc.set_partial_channels(3)


def random_onehot(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(0, 5, (6,), generator=generator), 5).bool()


@pytest.mark.parametrize("k", [1, 2])
def test_straight_through_fused_equals_reference(k: int) -> None:
    """Arbitrary (non-zero) weights off the mask: their constants count in both paths."""
    reference, fused = pc_pair(k)
    x = torch.randn(4, 3, 8, 8, dtype=torch.double)
    for seed in range(4):
        active = random_onehot(seed)
        active[seed, 0] = True  # also a selected `none`
        w = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
        outs = [m(x, w, active, straight_through=True) for m in (fused, reference)]
        torch.testing.assert_close(outs[0], outs[1])
        for a, b in zip(
            *(
                used_grads(o, [w, *m.parameters()])
                for o, m in zip(outs, (fused, reference), strict=True)
            ),
            strict=True,
        ):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_the_device_sample_forward_equals_the_straight_through_forward(k: int, impl: str) -> None:
    """GDAS ``sampling=device``: the sample as a device mask (every op runs, nothing read
    on the host) gives the host-mask straight-through forward's logits and gradients (to
    the weights, sampled and not, and to every parameter) in float64."""
    reference, fused = pc_pair(k)
    model = fused if impl == "fused" else reference
    x = torch.randn(4, 3, 8, 8, dtype=torch.double)
    for seed in range(4):
        sample = random_onehot(seed)
        sample[seed, 0] = True  # also a sampled `none`
        w = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
        outs = [model(x, w, sample, straight_through=True), model(x, w, sampled=sample)]
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
        grads = [used_grads(o, [w, *model.parameters()]) for o in outs]
        for a, b in zip(*grads, strict=True):  # a conv bias before a batch-stat BN: ~1e-13
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="sampled replaces"):
        model(x, w, sample, sampled=sample)


def used_grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of Σ out² with zeros for inputs the graph never used (ops not computed)."""
    found = torch.autograd.grad(out.square().sum(), inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, found, strict=True)]


def test_straight_through_weights_keep_the_one_hot_value_and_reach_every_weight() -> None:
    """h − sg(p) + p: the forward equals the one-hot cell's; every op's weight (not only
    the sampled ones) gets a gradient, which a plain active mask would drop."""
    _, fused = pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    active = random_onehot(7)
    logits = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    p = logits.softmax(-1)
    hard = active.double() - p.detach() + p
    onehot = active.double()
    torch.testing.assert_close(
        fused(x, hard, active, straight_through=True),
        fused(x, onehot, active),
        rtol=1e-14,
        atol=1e-14,
    )
    out = fused(x, hard, active, straight_through=True)
    (g_st,) = torch.autograd.grad(out.square().sum(), hard)
    (g_mask,) = torch.autograd.grad(fused(x, hard, active).square().sum(), hard)
    assert bool((g_st[~active] != 0).all())  # the constants carry Σ ∂L/∂node
    assert bool((g_mask[~active] == 0).all())
    torch.testing.assert_close(g_st[active], g_mask[active])
    with pytest.raises(ValueError, match="active mask"):
        fused(x, hard, None, straight_through=True)


class _OpNames(TorchDispatchMode):
    """Every ATen op dispatched inside the block, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("track", [False, True])
def test_the_fused_forward_builds_no_index_and_no_constant_per_call(track: bool) -> None:
    """On CUDA an index built from a Python list is a host-to-device copy and a stream
    sync on every call, and illegal inside a CUDA graph capture; the avg-pool constants
    rebuilt per call are launches for nothing. Dense, one-hot, masked and straight-through
    forwards and their backwards (running statistics on and off) must use slices, integer
    selects and device-resident indices only, and build no constant once warm."""
    torch.manual_seed(0)
    model = SuperNet(C=4, N=1, track_running_stats=track).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.double)
    alpha = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    onehot = F.one_hot(torch.tensor([3, 0, 2, 1, 4, 3]), 5).double()
    mask = torch.tensor(
        [[1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [1, 1, 0, 0, 1], [0, 0, 1, 1, 0], [1, 0, 0, 1, 1]]
        + [[0, 1, 1, 0, 0]]
    ).bool()
    on = onehot.bool()

    def forwards() -> None:
        model(x, alpha.softmax(-1)).sum().backward()
        model(x, onehot, on)
        model(x, alpha.softmax(-1) * mask, mask).sum().backward()
        model(x, alpha.softmax(-1), mask, straight_through=True).sum().backward()
        model(x, alpha.softmax(-1), sampled=on).sum().backward()

    forwards()  # warm: constants and the cached indices are built once here
    with _OpNames() as seen:
        forwards()
    forbidden = ("aten.index.Tensor", "aten.index_put", "aten.lift_fresh", "aten.full.")
    found = sorted({n for n in seen.names if n.startswith(forbidden) or n == "aten.ones.default"})
    assert found == []
    assert "aten.index_select.default" in seen.names  # the row index is really used
