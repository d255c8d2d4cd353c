"""The NAS-Bench-201 search network with externally supplied edge weights.

The skeleton (methods-spec §1.2): stem conv-BN, three stages of N searched
cells at C, 2C, 4C channels separated by residual reduction blocks, then
BN-ReLU-pool-linear. Every searched cell mixes the five candidate operations on
each of its six edges with weights handed to :meth:`SuperNet.forward`, so the
supernet owns no α: a method decides what the weights are (softmax, one-hot,
clamped, per stage).

Two implementations share one parameter layout, so a state dict moves freely
between them:

* ``reference`` — every candidate op of every edge is computed on its own, the
  ``none`` op included (as ``x * 0``), as peer harnesses do;
* ``fused`` — per source node one ReLU, one 3×3 and one 1×1 convolution for all
  its outgoing edges (their kernels are one contiguous slice of the stacked
  parameters: rows are grouped by source node, :data:`SLOT`), each followed by one
  BN whose scale is the ops' mixing weights, one box-sum pool (a depthwise conv
  times a 1/count map), skip and pool mixed in with GEMM gradients
  (:class:`AddSkipPool`), and no work for ``none`` or for any op whose weight the
  caller declares to be exactly zero (``active`` mask).

Candidate-op BN has no affine parameters and its conv carries a bias (AutoDL's
search cells). With ``track_running_stats=False`` (our default) every BN uses
batch statistics, in training and in evaluation alike.

Two general switches serve the sampling and partial-channel baselines, in both paths:

* ``partial_channels=K`` (PC-DARTS, DrNAS progressive): the candidate ops of an edge see
  only the first C/K channels of its source; the other channels bypass the ops and
  the edge output is ``channel_shuffle(cat(mixed, bypass), K)``. Kernels stay stored at
  full C×C size (ops use their top-left block), so the layout, state dicts and
  optimizers do not change with K and K can change during a run
  (:meth:`SuperNet.set_partial_channels`).
* ``forward(..., straight_through=True)`` (GDAS): only the ops in ``active`` are
  computed, and every other op adds its weight itself as a constant to its edge, as
  AutoDL's ``forward_gdas`` does. With straight-through weights ``h − sg(p) + p`` those
  constants are exactly zero in value, yet each carries the gradient Σ ∂L/∂node to its
  op's weight, which a plain ``active`` mask would drop.
* ``forward(..., sampled=mask)`` (GDAS with ``sampling=device``): the same forward with
  the sample left on the device: every op runs, the sampled ones at their weight
  (``weights ⊙ mask``), the others add theirs as the constant (``weights ⊙ ¬mask``). The
  values and gradients are the straight-through forward's up to rounding; nothing is
  read on the host, so it needs no sync and one CUDA graph serves every sample.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.space import EDGES, NUM_EDGES, NUM_OPS, OPS

SKIP, CONV1, CONV3, POOL = (OPS.index(n) for n in OPS[1:])
NONE = OPS.index("none")
OUT_EDGES: tuple[tuple[int, ...], ...] = tuple(
    tuple(k for k, (_, src) in enumerate(EDGES) if src == node) for node in range(3)
)
"""Edge indices leaving nodes 0, 1, 2."""
SLOT_EDGES: tuple[int, ...] = tuple(k for edges in OUT_EDGES for k in edges)
"""The edge stored in each row of a cell's stacked parameters: grouped by source node,
so the kernels of all edges leaving one node are a contiguous slice (a view)."""
SLOT: tuple[int, ...] = tuple(SLOT_EDGES.index(k) for k in range(NUM_EDGES))
"""Edge index (α row) → storage row."""
SOURCE_SLOTS: tuple[tuple[int, int], ...] = tuple(
    (SLOT[edges[0]], SLOT[edges[0]] + len(edges)) for edges in OUT_EDGES
)
"""Storage rows [lo, hi) of the edges leaving nodes 0, 1, 2."""
SOURCE_SIZES: tuple[int, ...] = tuple(len(edges) for edges in OUT_EDGES)
"""How many edges leave nodes 0, 1, 2: the row counts of the per-source pieces."""
LIVE_OPS = (SKIP, CONV1, CONV3, POOL)
STACKED = tuple(
    f"{kind}_{what}"
    for kind in ("conv3", "conv1")
    for what in ("weight", "bias", "running_mean", "running_var")
)
"""A cell's per-edge stacked tensors (rows in :data:`SLOT_EDGES` order)."""


def _bn(x: Tensor, mean: Tensor | None, var: Tensor | None, training: bool) -> Tensor:
    use_batch = training or mean is None
    return F.batch_norm(x, mean, var, None, None, use_batch, 0.1, 1e-5)


def box_kernel(channels: int, like: Tensor) -> Tensor:
    """Depthwise 3×3 all-ones kernel: a 3×3 sum per channel as one convolution (built
    once per channels, dtype and device: no per-call fill, nothing to copy in a graph)."""
    return _box_kernel(channels, like.dtype, like.device)


def inverse_counts(height: int, width: int, like: Tensor) -> Tensor:
    """[1, 1, H, W]: 1 / the number of in-image pixels under each 3×3 window (cached)."""
    return _inverse_counts(height, width, like.dtype, like.device)


@functools.cache
def _box_kernel(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return torch.ones(channels, 1, 3, 3, dtype=dtype, device=device)


@functools.cache
def _inverse_counts(height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():
        rows = torch.full((height,), 3.0, dtype=dtype, device=device)
        cols = torch.full((width,), 3.0, dtype=dtype, device=device)
        rows[0] -= 1
        rows[-1] -= 1
        cols[0] -= 1
        cols[-1] -= 1
        return (rows[:, None] * cols[None, :]).reciprocal().view(1, 1, height, width)


def avg_pool3(x: Tensor) -> Tensor:
    """``avg_pool2d(x, 3, 1, 1, count_include_pad=False)`` as a depthwise box sum times
    a per-pixel 1/count map: the same values up to rounding, several times faster on CPU."""
    box = F.conv2d(x, box_kernel(x.shape[1], x), padding=1, groups=x.shape[1])
    return box * inverse_counts(x.shape[-2], x.shape[-1], box)


class AddSkipPool(torch.autograd.Function):
    """``y + w_skip ⊗ h + w_pool ⊗ pooled`` for y [B, E, C, H, W], h and pooled
    [B, C, H, W], weights [E]; returned as E tensors [B, C, H, W] (one per edge).

    The per-edge split is part of the Function so that the stacked gradient keeps the
    layout of the per-edge gradients (autograd's ``unbind`` backward stacks
    channels_last gradients into a plain NCHW tensor).

    Autograd's own broadcasting backward reduces ``grad · h`` through a full-size
    temporary; for contiguous (NCHW) tensors every gradient here is one batched
    matrix product instead, and for packed channels_last tensors one plain matrix product
    over all pixels; other layouts take the plain reductions.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, y: Tensor, h: Tensor, pooled: Tensor, w_skip: Tensor, w_pool: Tensor
    ) -> Tensor:
        ctx.save_for_backward(h, pooled, w_skip, w_pool)
        out = torch.addcmul(y, h.unsqueeze(1), w_skip.view(1, -1, 1, 1, 1))
        return out.addcmul_(pooled.unsqueeze(1), w_pool.view(1, -1, 1, 1, 1)).unbind(1)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, pooled, w_skip, w_pool = ctx.saved_tensors
        grad = _stack_edges(grads)
        need = ctx.needs_input_grad
        if grad.is_contiguous() and h.is_contiguous() and pooled.is_contiguous():
            source_grad, weight_grad = _source_grad_gemm, _weight_grad_gemm
        elif _channels_last_5d(grad) and all(_packed_channels_last(t) for t in (h, pooled)):
            source_grad, weight_grad = _source_grad_cl, _weight_grad_cl
        else:
            source_grad, weight_grad = _source_grad_plain, _weight_grad_plain
        return (
            grad,
            source_grad(grad, w_skip) if need[1] else None,
            source_grad(grad, w_pool) if need[2] else None,
            weight_grad(grad, h) if need[3] else None,
            weight_grad(grad, pooled) if need[4] else None,
        )


def _source_grad_gemm(grad: Tensor, weight: Tensor) -> Tensor:
    """Σ_e weight[e] · grad[:, e] as one batched product: [B, 1, E] @ [B, E, n]."""
    b, e = grad.shape[:2]
    mix = weight.view(1, 1, e).expand(b, 1, e).contiguous()
    return torch.bmm(mix, grad.view(b, e, -1)).view(b, *grad.shape[2:])


def _weight_grad_gemm(grad: Tensor, source: Tensor) -> Tensor:
    """Σ_{b,c,h,w} grad[:, e] · source for every e: [B, E, n] @ [B, n, 1], summed over B."""
    b, e = grad.shape[:2]
    return torch.bmm(grad.view(b, e, -1), source.view(b, -1, 1)).sum(0).view(e)


def _stack_edges(grads: tuple[Tensor, ...]) -> Tensor:
    """[B, E, C, H, W] from E gradients [B, C, H, W]: NCHW stacked, channels_last
    concatenated along channels (memory [B, H, W, E, C], so the GEMM backward applies)."""
    if all(_packed_channels_last(g) and not g.is_contiguous() for g in grads):
        b, c, height, width = grads[0].shape
        return torch.cat(grads, dim=1).view(b, len(grads), c, height, width)
    return torch.stack(grads, dim=1)


def _channels_last_5d(grad: Tensor) -> bool:
    """[B, E, C, H, W] viewing a packed channels_last [B, E·C, H, W]: memory [B, H, W, E, C]."""
    b, e, c, height, width = grad.shape
    return grad.stride() == (height * width * e * c, c, 1, width * e * c, e * c)


def _packed_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last)


def _source_grad_cl(grad: Tensor, weight: Tensor) -> Tensor:
    """Channels_last Σ_e weight[e] · grad[:, e]: one GEMM [BHW, E·C] @ [E·C, C]."""
    b, e, c, height, width = grad.shape
    mix = torch.kron(weight.view(e, 1), torch.eye(c, dtype=grad.dtype, device=grad.device))
    rows = grad.permute(0, 3, 4, 1, 2).reshape(-1, e * c)  # a view: memory is [B, H, W, E, C]
    out = (rows @ mix).view(b, height, width, c)
    return out.permute(0, 3, 1, 2)  # [B, C, H, W] in channels_last


def _weight_grad_cl(grad: Tensor, source: Tensor) -> Tensor:
    """Channels_last Σ_{b,c,h,w} grad[:, e] · source: the C×C diagonal blocks of one
    GEMM [E·C, BHW] @ [BHW, C], traced."""
    b, e, c, height, width = grad.shape
    rows = grad.permute(0, 3, 4, 1, 2).reshape(-1, e * c)
    cols = source.permute(0, 2, 3, 1).reshape(-1, c)
    blocks = (rows.t() @ cols).view(e, c, c)
    return blocks.diagonal(dim1=1, dim2=2).sum(1)


def _source_grad_plain(grad: Tensor, weight: Tensor) -> Tensor:
    return (grad * weight.view(1, -1, 1, 1, 1)).sum(1)


def _weight_grad_plain(grad: Tensor, source: Tensor) -> Tensor:
    return (grad * source.unsqueeze(1)).sum((0, 2, 3, 4))


def _is_channels_last(x: Tensor) -> bool:
    """Channels innermost: a (possibly gapped) channels_last layout."""
    return x.dim() == 4 and x.stride(1) == 1 and x.shape[1] > 1


def _dense(x: Tensor) -> Tensor:
    """``x`` without gaps, keeping its layout (NCHW or channels_last)."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    return x.contiguous(memory_format=layout)


class EdgeGroup(NamedTuple):
    """The edges leaving one source node, as the dense path reads them: views of the
    cell's stacked tensors (see :meth:`SearchCell._edge_groups`)."""

    slots: list[int]  # their storage rows
    convs: dict[str, tuple[Tensor, Tensor, Tensor]]  # kind → kernels, biases, BN scale [n·c]
    skip: Tensor  # [n] skip weights
    pool: Tensor  # [n] pool weights


class SearchCell(nn.Module):
    """One searched cell: parameters of all candidate convolutions on its 6 edges.

    The stacked parameters hold edge ``k`` in row ``SLOT[k]`` (edges grouped by
    source node, see :data:`SLOT_EDGES`); both forward paths use that mapping.
    """

    def __init__(
        self, channels: int, track_running_stats: bool, node_bn: bool = False, partial: int = 1
    ) -> None:
        super().__init__()
        c = channels
        self.channels = c
        self.partial = 1
        self.set_partial(partial)
        self.node_norms = (
            nn.ModuleList(
                nn.BatchNorm2d(c, affine=False, track_running_stats=track_running_stats)
                for _ in range(3)
            )
            if node_bn
            else None
        )
        self.conv3_weight = nn.Parameter(torch.empty(NUM_EDGES, c, c, 3, 3))
        self.conv3_bias = nn.Parameter(torch.empty(NUM_EDGES, c))
        self.conv1_weight = nn.Parameter(torch.empty(NUM_EDGES, c, c, 1, 1))
        self.conv1_bias = nn.Parameter(torch.empty(NUM_EDGES, c))
        self.track_running_stats = track_running_stats
        if track_running_stats:
            for kind in ("conv3", "conv1"):
                self.register_buffer(f"{kind}_running_mean", torch.zeros(NUM_EDGES, c))
                self.register_buffer(f"{kind}_running_var", torch.ones(NUM_EDGES, c))
        # Which edge each stacked row holds, saved with the weights so a state dict in
        # another row order (α order, before this layout) is permuted, never misread.
        self.register_buffer("edge_rows", torch.tensor(SLOT_EDGES))
        self.reset_parameters()

    def set_partial(self, k: int) -> None:
        """Candidate ops see the first ``channels // k`` channels (PC-DARTS's 1/K)."""
        if k < 1 or self.channels % k:
            raise ValueError(f"partial channels K={k} must divide the {self.channels} channels")
        self.partial = k

    @property
    def op_channels(self) -> int:
        """Channels the candidate ops see: C, or C/K with partial channels."""
        return self.channels // self.partial

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        """(the ops' channels, the bypassed ones); no bypass without partial channels."""
        if self.partial == 1:
            return h, None
        c = self.op_channels
        return _dense(h[:, :c]), h[:, c:]

    def _merge(self, mixed: Tensor, bypass: Tensor | None) -> Tensor:
        """PC-DARTS's edge output: the mixed channels, the bypassed ones, then a shuffle."""
        if bypass is None:
            return mixed
        return channel_shuffle(torch.cat([mixed, bypass.to(mixed.dtype)], dim=1), self.partial)

    def _kernel(self, kind: str, slots: list[int]) -> tuple[Tensor, Tensor]:
        """Conv kernels [n, c, c, k, k] and biases [n, c] of ``slots`` for the op channels."""
        c = self.op_channels
        weight = _rows(getattr(self, f"{kind}_weight"), slots)
        bias = _rows(getattr(self, f"{kind}_bias"), slots)
        if c == self.channels:
            return weight, bias
        return weight[:, :c, :c], bias[:, :c]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        rows = state_dict.get(prefix + "edge_rows")
        stored = list(range(NUM_EDGES)) if rows is None else [int(r) for r in rows]
        if stored != list(SLOT_EDGES):
            order = [stored.index(k) for k in SLOT_EDGES]
            for name in STACKED:
                if prefix + name in state_dict:
                    state_dict[prefix + name] = state_dict[prefix + name][order]
        state_dict[prefix + "edge_rows"] = torch.tensor(SLOT_EDGES)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def reset_parameters(self) -> None:
        """PyTorch's default Conv2d initialisation, edge by edge in α-row order."""
        for weight, bias in (
            (self.conv3_weight, self.conv3_bias),
            (self.conv1_weight, self.conv1_bias),
        ):
            for k in range(NUM_EDGES):
                nn.init.kaiming_uniform_(weight.data[SLOT[k]], a=math.sqrt(5))
                fan_in = weight.shape[2] * weight.shape[3] * weight.shape[4]
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(bias.data[SLOT[k]], -bound, bound)

    def _stats(self, kind: str, slots: list[int]) -> tuple[Tensor | None, Tensor | None]:
        if not self.track_running_stats:
            return None, None
        c = self.op_channels
        mean = _rows(getattr(self, f"{kind}_running_mean"), slots)[:, :c].reshape(-1)
        var = _rows(getattr(self, f"{kind}_running_var"), slots)[:, :c].reshape(-1)
        return mean.clone(), var.clone()

    def _store_stats(self, kind: str, slots: list[int], mean: Tensor, var: Tensor) -> None:
        """Write the updated running statistics back: one slice copy for consecutive
        slots (every dense source), else row by row (no index tensor either way)."""
        c = self.op_channels
        with torch.no_grad():
            for name, value in (("running_mean", mean), ("running_var", var)):
                stored, rows = getattr(self, f"{kind}_{name}"), value.view(len(slots), c)
                if _consecutive(slots):
                    stored[slots[0] : slots[0] + len(slots), :c].copy_(rows)
                    continue
                for row, slot in enumerate(slots):
                    stored[slot, :c].copy_(rows[row])

    # ------------------------------------------------------------------ reference
    def _conv_op(self, x: Tensor, kind: str, edge: int) -> Tensor:
        slot = SLOT[edge]
        weights, biases = self._kernel(kind, [slot])
        weight, bias = weights[0], biases[0]
        y = F.conv2d(F.relu(x), weight, bias, padding=weight.shape[-1] // 2)
        mean, var = self._stats(kind, [slot])
        y = _bn(y, mean, var, self.training)
        if mean is not None and self.training:
            self._store_stats(kind, [slot], mean, var)
        return y

    def forward_reference(
        self,
        x: Tensor,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        constants: Tensor | None = None,
    ) -> Tensor:
        """Every op of every edge on its own; ``active`` matters only with
        ``straight_through`` (ops outside it then add their weight, not their output).
        ``constants`` ([6], device): added to each edge's mix (:meth:`forward_sampled`)."""
        if straight_through and active is None:
            raise ValueError("straight_through needs the active mask of the computed ops")
        nodes = [x]
        for target in range(1, 4):
            total = None
            for k, (t, source) in enumerate(EDGES):
                if t != target:
                    continue
                h, bypass = self._split(nodes[source])
                outputs = (
                    h.mul(0.0),
                    h,
                    self._conv_op(h, "conv1", k),
                    self._conv_op(h, "conv3", k),
                    F.avg_pool2d(h, 3, 1, 1, count_include_pad=False),
                )
                if straight_through:
                    assert active is not None
                    terms = [
                        weights[k, o] * outputs[o] if bool(active[k, o]) else weights[k, o]
                        for o in range(NUM_OPS)
                    ]
                else:
                    terms = [weights[k, o] * outputs[o] for o in range(NUM_OPS)]
                if constants is not None:
                    terms.append(constants[k])
                mixed = self._merge(sum(terms), bypass)
                total = mixed if total is None else total + mixed
            nodes.append(self._node_output(target, total))
        return nodes[3]

    def _node_output(self, target: int, total: Tensor) -> Tensor:
        """Node value; with ``node_bn`` normalised after the sum (Maile et al.'s CRB)."""
        return total if self.node_norms is None else self.node_norms[target - 1](total)

    def forward_sampled(self, x: Tensor, weights: Tensor, sampled: Tensor, fused: bool) -> Tensor:
        """The straight-through forward with the sample ``sampled`` (bool [6, 5]) on the
        device: every op runs with weight ``weights ⊙ sampled`` (the unsampled ones at an
        exact zero: no output, no weight gradient), and each edge adds the weights of its
        unsampled ops as a constant, which carries Σ ∂L/∂node to them as AutoDL's
        ``forward_gdas`` does. No host read: the dense cost instead of the sample's."""
        on = sampled.to(weights.dtype)
        constants = (weights * (1 - on)).sum(-1)
        if fused:
            return self.forward_fused(x, weights * on, None, constants=constants)
        return self.forward_reference(x, weights * on, constants=constants)

    # ---------------------------------------------------------------------- fused
    def forward_fused(
        self,
        x: Tensor,
        weights: Tensor,
        active: Tensor | None,
        straight_through: bool = False,
        constants: Tensor | None = None,
    ) -> Tensor:
        """``active`` (bool [6, 5] on the host) marks ops with non-zero weight; None = all.
        With ``straight_through`` the ops outside ``active`` add their weight instead.
        ``constants`` ([6], device): added to each edge's mix (:meth:`forward_sampled`)."""
        if straight_through and active is None:
            raise ValueError("straight_through needs the active mask of the computed ops")
        on = _active_lists(active)
        # α rows in storage order (slices per source), gathered with the device-resident
        # row index: a Python-list index would copy it to the device on every call
        stored = weights.index_select(0, self.edge_rows)
        dense = [_all_live(OUT_EDGES[source], on) for source in range(3)]
        groups = self._edge_groups(stored) if any(dense) else None
        partial: list[Tensor | None] = [None, None, None, None]
        bypass: list[Tensor | None] = [None, None, None, None]
        if straight_through:
            partial = _constant_terms(weights, active)
        elif constants is not None:
            partial = _node_sums(constants)
        nodes = [x]
        for source in range(3):
            h, rest = self._split(nodes[source])
            if dense[source]:
                assert groups is not None
                terms = self._dense_edges(h, groups[source])
                edges = zip(OUT_EDGES[source], terms, strict=True)
                contributions = [(EDGES[k][0], term) for k, term in edges]
            else:
                contributions = self._sparse_edges(h, stored, list(OUT_EDGES[source]), on)
            for target, term in contributions:
                partial[target] = term if partial[target] is None else partial[target] + term
            if rest is not None:  # shuffle is linear: add the bypasses, shuffle once per node
                for k in OUT_EDGES[source]:
                    target = EDGES[k][0]
                    bypass[target] = rest if bypass[target] is None else bypass[target] + rest
            nxt, rest_in = partial[source + 1], bypass[source + 1]
            if nxt is None and rest_in is None:
                nodes.append(torch.zeros_like(x))
                continue
            if nxt is None or nxt.dim() == 0:  # no op output reached the node
                zeros = torch.zeros_like(h)
                nxt = zeros if nxt is None else zeros + nxt
            nodes.append(_dense(self._node_output(source + 1, self._merge(nxt, rest_in))))
        return nodes[3]

    def _edge_groups(self, stored: Tensor) -> tuple[EdgeGroup, ...]:
        """Per source node, the views its dense edges read, cut from the cell's stacked
        tensors with one ``split`` each: in backward every stacked tensor then gets one
        concatenated gradient, not one zero-filled full-size gradient per slice (and per
        select of α) plus the additions that sum them."""
        c = self.op_channels
        kernels = {}
        for kind in ("conv3", "conv1"):
            weights = getattr(self, f"{kind}_weight").split(SOURCE_SIZES)
            biases = getattr(self, f"{kind}_bias").split(SOURCE_SIZES)
            if c != self.channels:
                weights = tuple(w[:, :c, :c] for w in weights)
                biases = tuple(b[:, :c] for b in biases)
            kernels[kind] = tuple(zip(weights, biases, strict=True))
        columns = stored.unbind(1)  # one weight per edge and op, storage order
        scales = {
            kind: columns[op][:, None]
            .expand(NUM_EDGES, c)
            .contiguous()  # see _conv_bn: the BN kernel needs a packed scale
            .view(-1)
            .split([n * c for n in SOURCE_SIZES])
            for kind, op in (("conv3", CONV3), ("conv1", CONV1))
        }
        skip, pool = columns[SKIP].split(SOURCE_SIZES), columns[POOL].split(SOURCE_SIZES)
        return tuple(
            EdgeGroup(
                list(range(*SOURCE_SLOTS[source])),
                {kind: (*kernels[kind][source], scales[kind][source]) for kind in kernels},
                skip[source],
                pool[source],
            )
            for source in range(3)
        )

    def _dense_edges(self, h: Tensor, group: EdgeGroup) -> tuple[Tensor, ...]:
        """All four live ops on the edges of ``group``, one [B, C, H, W] each.

        The mixing weight of a conv op is applied as the scale of its (otherwise
        affine-free) BN, so it costs no extra pass over the activations; skip and
        pool are added by :class:`AddSkipPool`, whose gradients are GEMMs.
        """
        b, c, height, width = h.shape
        r = F.relu(h)
        y = self._conv_bn(r, group.slots, "conv3", *group.convs["conv3"])
        y = y.add_(self._conv_bn(r, group.slots, "conv1", *group.convs["conv1"]))
        dtype = y.dtype
        return AddSkipPool.apply(
            y.view(b, len(group.slots), c, height, width),
            h.to(dtype),
            avg_pool3(h).to(dtype),
            group.skip.to(dtype),
            group.pool.to(dtype),
        )

    def _sparse_edges(
        self, h: Tensor, stored: Tensor, edges: list[int], on: list[list[bool]]
    ) -> list[tuple[int, Tensor]]:
        """Only the ops marked active: one-hot cells, pruned ops."""
        conv3 = [SLOT[k] for k in edges if on[k][CONV3]]
        conv1 = [SLOT[k] for k in edges if on[k][CONV1]]
        r = F.relu(h) if conv3 or conv1 else h
        terms: dict[int, list[Tensor]] = {SLOT[k]: [] for k in edges}
        for kind, chosen in (("conv3", conv3), ("conv1", conv1)):
            if chosen:
                op = CONV3 if kind == "conv3" else CONV1
                scale = _rows(stored, chosen)[:, op, None].expand(len(chosen), self.op_channels)
                # contiguous: for one edge the expand is a stride-0 view, and the CPU
                # channels_last BN kernel reads the scale as if packed (wrong results)
                y = self._conv_bn(
                    r, chosen, kind, *self._kernel(kind, chosen), scale.contiguous().view(-1)
                )
                for slot, part in zip(chosen, y.split(self.op_channels, dim=1), strict=True):
                    terms[slot].append(part)
        if any(on[k][POOL] for k in edges):
            pooled = avg_pool3(h)
            for k in edges:
                if on[k][POOL]:
                    terms[SLOT[k]].append(stored[SLOT[k], POOL] * pooled)
        for k in edges:
            if on[k][SKIP]:
                terms[SLOT[k]].append(stored[SLOT[k], SKIP] * h)
        return [(EDGES[k][0], _sum(terms[SLOT[k]])) for k in edges if terms[SLOT[k]]]

    def _conv_bn(
        self, r: Tensor, slots: list[int], kind: str, weight: Tensor, bias: Tensor, scale: Tensor
    ) -> Tensor:
        """One convolution with the kernels [n, c, c, k, k] and biases [n, c] of the edges
        in storage ``slots``, then one BN scaled by their op weights ``scale`` [n·c]."""
        kernels = weight.reshape(-1, *weight.shape[2:])
        y = F.conv2d(r, kernels, bias.reshape(-1), padding=weight.shape[-1] // 2)
        mean, var = self._stats(kind, slots)
        use_batch = self.training or mean is None
        y = F.batch_norm(y, mean, var, scale.to(y.dtype), None, use_batch, 0.1, 1e-5)
        if mean is not None and self.training:
            self._store_stats(kind, slots, mean, var)
        return y


def _consecutive(slots: list[int]) -> bool:
    return slots == list(range(slots[0], slots[0] + len(slots)))


def _rows(tensor: Tensor, slots: list[int]) -> Tensor:
    """``tensor[slots]``: a view when the slots are consecutive, else one gather with a
    cached device index (no index built from the list per call: no host-to-device copy)."""
    if _consecutive(slots):
        return tensor[slots[0] : slots[0] + len(slots)]
    return tensor.index_select(0, _slot_index(tuple(slots), tensor.device))


@functools.cache
def _slot_index(slots: tuple[int, ...], device: torch.device) -> Tensor:
    """A device-resident index (storage rows, or ops of an edge), built once per index set
    and device (at most 2^6 sets): gathering with it copies nothing from the host after
    its first use."""
    with torch.inference_mode(False):
        return torch.tensor(slots, device=device)


def _sum(terms: list[Tensor]) -> Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """PC-DARTS's shuffle: channel g·(C/groups) + j moves to j·groups + g."""
    b, c, height, width = x.shape
    return (
        x.view(b, groups, c // groups, height, width).transpose(1, 2).reshape(b, c, height, width)
    )


def _constant_terms(weights: Tensor, active: Tensor | None) -> list[Tensor | None]:
    """Per node, the sum of the weights of the ops outside ``active`` on its incoming
    edges (0-dim tensors): the constants of the straight-through forward."""
    assert active is not None
    rows = active.tolist()  # on the host: no device sync per edge
    totals: list[Tensor | None] = [None, None, None, None]
    for k, (target, _) in enumerate(EDGES):
        off = [o for o in range(NUM_OPS) if not rows[k][o]]
        if off:
            term = weights[k].index_select(0, _slot_index(tuple(off), weights.device)).sum()
            totals[target] = term if totals[target] is None else totals[target] + term
    return totals


def _node_sums(per_edge: Tensor) -> list[Tensor | None]:
    """Per node, the sum of ``per_edge`` ([6], device) over its incoming edges, as
    :func:`_constant_terms` returns it (0-dim tensors; views and adds, no host read)."""
    values = per_edge.unbind(0)
    totals: list[Tensor | None] = [None, None, None, None]
    for k, (target, _) in enumerate(EDGES):
        totals[target] = values[k] if totals[target] is None else totals[target] + values[k]
    return totals


def _all_live(edges: tuple[int, ...], on: list[list[bool]]) -> bool:
    """Whether every op but ``none`` runs on all of ``edges`` (the dense path)."""
    return all(on[k][o] for k in edges for o in LIVE_OPS)


def _active_lists(active: Tensor | None) -> list[list[bool]]:
    if active is None:
        return [[o != NONE for o in range(NUM_OPS)] for _ in range(NUM_EDGES)]
    rows = active.tolist()
    return [[bool(v) and o != NONE for o, v in enumerate(row)] for row in rows]


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int, track: bool) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out, track_running_stats=track),
        )


class ResidualReduction(nn.Module):
    """ResNet basic block, stride 2, between stages (fixed, not searched)."""

    def __init__(self, c_in: int, c_out: int, track: bool) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 2, track)
        self.conv_b = ReLUConvBN(c_out, c_out, 1, track)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class SuperNet(nn.Module):
    """The NB201 supernet: ``forward(x, weights)`` with weights [6,5], [3,6,5] or [3N,6,5]."""

    def __init__(
        self,
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        impl: str = "fused",
        track_running_stats: bool = False,
        node_bn: bool = False,
        partial_channels: int = 1,
    ) -> None:
        super().__init__()
        if impl not in ("fused", "reference"):
            raise ValueError(f"impl must be 'fused' or 'reference', got {impl!r}")
        self.impl, self.N = impl, N
        track = track_running_stats
        self.stem = nn.Sequential(
            nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C, track_running_stats=track)
        )
        layers: list[nn.Module] = []
        for stage, channels in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResidualReduction(channels // 2, channels, track))
            layers.extend(SearchCell(channels, track, node_bn, partial_channels) for _ in range(N))
        self.layers = nn.ModuleList(layers)
        self.head_bn = nn.BatchNorm2d(4 * C, track_running_stats=track)
        self.classifier = nn.Linear(4 * C, num_classes)

    @property
    def num_cells(self) -> int:
        return 3 * self.N

    def cell_weights(self, weights: Tensor) -> list[Tensor]:
        """Expand [6,5] (shared), [3,6,5] (per stage) or [3N,6,5] (per cell) to one per cell."""
        if weights.dim() == 2:
            return [weights] * self.num_cells
        if weights.shape[0] == 3:
            return [weights[i // self.N] for i in range(self.num_cells)]
        if weights.shape[0] == self.num_cells:
            return list(weights.unbind(0))
        raise ValueError(
            f"edge weights must be [6,5], [3,6,5] or [{self.num_cells},6,5]; "
            f"got {list(weights.shape)}"
        )

    @property
    def partial_channels(self) -> int:
        """PC-DARTS's K: candidate ops see 1/K of each cell's channels (1 = all)."""
        return next(layer.partial for layer in self.layers if isinstance(layer, SearchCell))

    def set_partial_channels(self, k: int) -> None:
        """Change K in every searched cell (DrNAS's progressive stages); the parameters
        keep their shapes, the ops then read a larger or smaller block of them."""
        for layer in self.layers:
            if isinstance(layer, SearchCell):
                layer.set_partial(k)

    def forward(
        self,
        x: Tensor,
        weights: Tensor,
        active: Tensor | None = None,
        straight_through: bool = False,
        sampled: Tensor | None = None,
    ) -> Tensor:
        """Logits for images ``x``; ``active`` (host bool, same leading shape as ``weights``)
        lets the fused path skip ops whose weight is exactly zero. ``straight_through``
        computes only the ``active`` ops and adds the other ops' weights as constants
        (GDAS's hard forward: the value of the one-hot cell, the gradient to every weight).
        ``sampled`` (bool on the weights' device, same leading shape) is that forward with
        the sample never read on the host (:meth:`SearchCell.forward_sampled`)."""
        if sampled is not None and (active is not None or straight_through):
            raise ValueError("sampled replaces active and straight_through: pass one of them")
        per_cell = self.cell_weights(weights)
        per_cell_active = self.cell_weights(active) if active is not None else None
        per_cell_sampled = self.cell_weights(sampled) if sampled is not None else None
        h = self.stem(x)
        cell_index = 0
        for layer in self.layers:
            if isinstance(layer, SearchCell):
                w = per_cell[cell_index]
                if per_cell_sampled is not None:
                    fused = self.impl != "reference"
                    h = layer.forward_sampled(h, w, per_cell_sampled[cell_index], fused)
                else:
                    a = per_cell_active[cell_index] if per_cell_active is not None else None
                    h = self._cell_forward(layer, h, w, a, straight_through)
                cell_index += 1
            else:
                h = layer(h)
        h = F.relu(self.head_bn(h))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.classifier(h)

    def _cell_forward(
        self, cell: SearchCell, h: Tensor, w: Tensor, a: Tensor | None, straight_through: bool
    ) -> Tensor:
        if self.impl == "reference":
            return cell.forward_reference(h, w, a, straight_through)
        return cell.forward_fused(h, w, a, straight_through)

    def to_channels_last(self) -> SuperNet:
        """Put every 4-D parameter (stem, reductions) in channels_last memory format.

        Fed channels_last images, every activation then stays channels_last: the
        fused path keeps layouts and its views split the channel dimension only.
        The stacked 5-D cell kernels are reshaped per call and keep their layout.
        """
        with torch.no_grad():
            for param in self.parameters():
                if param.dim() == 4:
                    param.data = param.data.contiguous(memory_format=torch.channels_last)
        return self
