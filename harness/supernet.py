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
* ``fused`` — per source node one ReLU, one convolution producing the 3×3 and
  1×1 outputs of all its outgoing edges (the 1×1 kernel sits at the centre of a
  3×3 one), one average pool, and no work for ``none`` or for any op whose
  weight the caller declares to be exactly zero (``active`` mask).

Candidate-op BN has no affine parameters and its conv carries a bias (AutoDL's
search cells). With ``track_running_stats=False`` (our default) every BN uses
batch statistics, in training and in evaluation alike.
"""

from __future__ import annotations

import math

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


def _bn(x: Tensor, mean: Tensor | None, var: Tensor | None, training: bool) -> Tensor:
    use_batch = training or mean is None
    return F.batch_norm(x, mean, var, None, None, use_batch, 0.1, 1e-5)


class SearchCell(nn.Module):
    """One searched cell: parameters of all candidate convolutions on its 6 edges."""

    def __init__(self, channels: int, track_running_stats: bool, node_bn: bool = False) -> None:
        super().__init__()
        c = channels
        self.channels = c
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default Conv2d initialisation, edge by edge."""
        for weight, bias in (
            (self.conv3_weight, self.conv3_bias),
            (self.conv1_weight, self.conv1_bias),
        ):
            for k in range(NUM_EDGES):
                nn.init.kaiming_uniform_(weight.data[k], a=math.sqrt(5))
                fan_in = weight.shape[2] * weight.shape[3] * weight.shape[4]
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(bias.data[k], -bound, bound)

    def _stats(self, kind: str, edges: list[int]) -> tuple[Tensor | None, Tensor | None]:
        if not self.track_running_stats:
            return None, None
        mean = getattr(self, f"{kind}_running_mean")[edges].reshape(-1)
        var = getattr(self, f"{kind}_running_var")[edges].reshape(-1)
        return mean, var

    def _store_stats(self, kind: str, edges: list[int], mean: Tensor, var: Tensor) -> None:
        c = self.channels
        with torch.no_grad():
            getattr(self, f"{kind}_running_mean")[edges] = mean.view(len(edges), c)
            getattr(self, f"{kind}_running_var")[edges] = var.view(len(edges), c)

    # ------------------------------------------------------------------ reference
    def _conv_op(self, x: Tensor, kind: str, edge: int) -> Tensor:
        weight = getattr(self, f"{kind}_weight")[edge]
        bias = getattr(self, f"{kind}_bias")[edge]
        y = F.conv2d(F.relu(x), weight, bias, padding=weight.shape[-1] // 2)
        mean, var = self._stats(kind, [edge])
        if mean is not None:
            mean, var = mean.clone(), var.clone()
        y = _bn(y, mean, var, self.training)
        if mean is not None and self.training:
            self._store_stats(kind, [edge], mean, var)
        return y

    def forward_reference(self, x: Tensor, weights: Tensor) -> Tensor:
        nodes = [x]
        for target in range(1, 4):
            total = None
            for k, (t, source) in enumerate(EDGES):
                if t != target:
                    continue
                h = nodes[source]
                outputs = (
                    h.mul(0.0),
                    h,
                    self._conv_op(h, "conv1", k),
                    self._conv_op(h, "conv3", k),
                    F.avg_pool2d(h, 3, 1, 1, count_include_pad=False),
                )
                mixed = sum(weights[k, o] * outputs[o] for o in range(NUM_OPS))
                total = mixed if total is None else total + mixed
            nodes.append(self._node_output(target, total))
        return nodes[3]

    def _node_output(self, target: int, total: Tensor) -> Tensor:
        """Node value; with ``node_bn`` normalised after the sum (Maile et al.'s CRB)."""
        return total if self.node_norms is None else self.node_norms[target - 1](total)

    # ---------------------------------------------------------------------- fused
    def forward_fused(self, x: Tensor, weights: Tensor, active: Tensor | None) -> Tensor:
        """``active`` (bool [6, 5] on the host) marks ops with non-zero weight; None = all."""
        on = _active_lists(active)
        partial: list[Tensor | None] = [None, None, None, None]
        nodes = [x]
        for source in range(3):
            h = nodes[source]
            for target, term in self._edges_from(source, h, weights, on):
                partial[target] = term if partial[target] is None else partial[target] + term
            nxt = partial[source + 1]
            if nxt is None:
                nodes.append(torch.zeros_like(x))
            else:
                nodes.append(self._node_output(source + 1, nxt))
        return nodes[3]

    def _edges_from(
        self, source: int, h: Tensor, weights: Tensor, on: list[list[bool]]
    ) -> list[tuple[int, Tensor]]:
        """Contributions of the edges leaving ``source``, as (target, tensor)."""
        edges = list(OUT_EDGES[source])
        if all(all(on[k][o] for o in (SKIP, CONV1, CONV3, POOL)) for k in edges):
            stacked = self._dense_edges(h, weights, edges)
            return [(EDGES[k][0], stacked[:, i]) for i, k in enumerate(edges)]
        return self._sparse_edges(h, weights, edges, on)

    def _dense_edges(self, h: Tensor, weights: Tensor, edges: list[int]) -> Tensor:
        """All four live ops on every edge: [B, len(edges), C, H, W] in a handful of kernels.

        The mixing weight of a conv op is applied as the scale of its (otherwise
        affine-free) BN, so it costs no extra pass over the activations.
        """
        b, c, height, width = h.shape
        r = F.relu(h)
        y = self._conv_bn(r, weights, edges, "conv3") + self._conv_bn(r, weights, edges, "conv1")
        y = y.view(b, len(edges), c, height, width)
        pooled = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
        w_skip = weights[edges, SKIP].view(1, -1, 1, 1, 1)
        w_pool = weights[edges, POOL].view(1, -1, 1, 1, 1)
        y = torch.addcmul(y, h.unsqueeze(1), w_skip)
        return torch.addcmul(y, pooled.unsqueeze(1), w_pool)

    def _sparse_edges(
        self, h: Tensor, weights: Tensor, edges: list[int], on: list[list[bool]]
    ) -> list[tuple[int, Tensor]]:
        """Only the ops marked active: one-hot cells, pruned ops."""
        conv3 = [k for k in edges if on[k][CONV3]]
        conv1 = [k for k in edges if on[k][CONV1]]
        r = F.relu(h) if conv3 or conv1 else h
        terms: dict[int, list[Tensor]] = {k: [] for k in edges}
        for kind, chosen in (("conv3", conv3), ("conv1", conv1)):
            if chosen:
                y = self._conv_bn(r, weights, chosen, kind)
                for k, part in zip(chosen, y.split(self.channels, dim=1), strict=True):
                    terms[k].append(part)
        if any(on[k][POOL] for k in edges):
            pooled = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False)
            for k in edges:
                if on[k][POOL]:
                    terms[k].append(weights[k, POOL] * pooled)
        for k in edges:
            if on[k][SKIP]:
                terms[k].append(weights[k, SKIP] * h)
        return [(EDGES[k][0], _sum(terms[k])) for k in edges if terms[k]]

    def _conv_bn(self, r: Tensor, weights: Tensor, edges: list[int], kind: str) -> Tensor:
        """One convolution for ``kind`` on all ``edges``, BN scaled by the edges' op weights."""
        c = self.channels
        weight = getattr(self, f"{kind}_weight")[edges]
        bias = getattr(self, f"{kind}_bias")[edges].reshape(-1)
        y = F.conv2d(r, weight.reshape(-1, *weight.shape[2:]), bias, padding=weight.shape[-1] // 2)
        op = CONV3 if kind == "conv3" else CONV1
        scale = weights[edges, op].repeat_interleave(c)
        mean, var = self._stats(kind, edges)
        y = F.batch_norm(y, mean, var, scale, None, self.training or mean is None, 0.1, 1e-5)
        if mean is not None and self.training:
            self._store_stats(kind, edges, mean, var)
        return y


def _sum(terms: list[Tensor]) -> Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


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
            layers.extend(SearchCell(channels, track, node_bn) for _ in range(N))
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

    def forward(self, x: Tensor, weights: Tensor, active: Tensor | None = None) -> Tensor:
        """Logits for images ``x``; ``active`` (host bool, same leading shape as ``weights``)
        lets the fused path skip ops whose weight is exactly zero."""
        per_cell = self.cell_weights(weights)
        per_cell_active = self.cell_weights(active) if active is not None else None
        h = self.stem(x)
        cell_index = 0
        for layer in self.layers:
            if isinstance(layer, SearchCell):
                w = per_cell[cell_index]
                a = per_cell_active[cell_index] if per_cell_active is not None else None
                h = self._cell_forward(layer, h, w, a)
                cell_index += 1
            else:
                h = layer(h)
        h = F.relu(self.head_bn(h))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.classifier(h)

    def _cell_forward(self, cell: SearchCell, h: Tensor, w: Tensor, a: Tensor | None) -> Tensor:
        if self.impl == "reference":
            return cell.forward_reference(h, w)
        return cell.forward_fused(h, w, a)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())
