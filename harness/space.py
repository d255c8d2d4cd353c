"""The NAS-Bench-201 cell space: operations, edges, cells and their string forms.

A cell is a DAG on 4 nodes (0 = input, 3 = output); every pair j < i is an edge
carrying one of five operations. The official string lists the edges grouped by
their target node: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

The NAS-Bench-201 *index* of a cell is not computable from the cell: it is the
row order of the benchmark file, so :mod:`harness.benchmark` owns that mapping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from harness.errors import UsageError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Candidate operations, in the NAS-Bench-201 order (the α column order)."""

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""Edges as (target, source), in the order of the official string (the α row order)."""

NUM_NODES = 4
NUM_OPS = len(OPS)
NUM_EDGES = len(EDGES)
PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3"})
NUM_CELLS = NUM_OPS**NUM_EDGES


class ArchStringError(UsageError, ValueError):
    """A malformed NAS-Bench-201 architecture string."""


@dataclass(frozen=True, order=True)
class Cell:
    """One cell of the space: an operation name per edge, in :data:`EDGES` order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != NUM_EDGES:
            raise ValueError(f"a cell has {NUM_EDGES} edges, got {len(self.ops)} operations")
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; known: {', '.join(OPS)}")

    # --- conversions -------------------------------------------------------
    @classmethod
    def from_indices(cls, indices: tuple[int, ...] | list[int]) -> Cell:
        """Build a cell from one operation index (into :data:`OPS`) per edge."""
        return cls(tuple(OPS[int(i)] for i in indices))

    @property
    def op_indices(self) -> tuple[int, ...]:
        return tuple(OPS.index(op) for op in self.ops)

    @property
    def code(self) -> int:
        """A dense base-5 code in [0, 15625): edge 0 is the most significant digit."""
        value = 0
        for i in self.op_indices:
            value = value * NUM_OPS + i
        return value

    @classmethod
    def from_code(cls, code: int) -> Cell:
        if not 0 <= code < NUM_CELLS:
            raise ValueError(f"cell code must be in [0, {NUM_CELLS}), got {code}")
        digits = []
        for _ in range(NUM_EDGES):
            code, digit = divmod(code, NUM_OPS)
            digits.append(digit)
        return cls.from_indices(digits[::-1])

    def to_arch_str(self) -> str:
        groups = []
        for target in range(1, NUM_NODES):
            parts = [
                f"{op}~{source}"
                for (t, source), op in zip(EDGES, self.ops, strict=True)
                if t == target
            ]
            groups.append("|" + "|".join(parts) + "|")
        return "+".join(groups)

    @classmethod
    def from_arch_str(cls, arch: str) -> Cell:
        """Parse an official string; raise :class:`ArchStringError` naming the problem."""
        return cls(parse_arch_str(arch))

    def __str__(self) -> str:
        return self.to_arch_str()

    # --- structure ---------------------------------------------------------
    def parameter_free_edges(self) -> int:
        return sum(op in PARAMETER_FREE for op in self.ops)

    def canonical(self) -> Cell:
        """The representative of all cells computing the same function.

        An edge does not matter when its source node is identically zero (every
        path into it is ``none``) or when its target cannot reach the output;
        such edges are set to ``none``. When the edge 1→2 is ``none``, nodes 1
        and 2 are interchangeable, so the form with the smaller :attr:`code` is
        kept. Two cells are equivalent when their canonical forms are equal
        (8,765 classes over the 15,625 cells).
        """
        pruned = self._without_dead_edges()
        if pruned.ops[2] != "none":
            return pruned
        a, b, c, d, e, f = pruned.ops
        swapped = Cell((b, a, c, d, f, e))._without_dead_edges()
        return min(pruned, swapped, key=lambda cell: cell.code)

    def _without_dead_edges(self) -> Cell:
        ops = list(self.ops)
        while True:
            live_in = _nodes_with_input(ops)
            reaches_out = _nodes_reaching_output(ops)
            changed = False
            for k, (target, source) in enumerate(EDGES):
                dead = source not in live_in or target not in reaches_out
                if dead and ops[k] != "none":
                    ops[k] = "none"
                    changed = True
            if not changed:
                return Cell(tuple(ops))

    def equivalent(self, other: Cell) -> bool:
        return self.canonical() == other.canonical()


def _nodes_with_input(ops: list[str]) -> set[int]:
    """Nodes whose value is not identically zero."""
    alive = {0}
    for node in range(1, NUM_NODES):
        if any(
            t == node and s in alive and op != "none" for (t, s), op in zip(EDGES, ops, strict=True)
        ):
            alive.add(node)
    return alive


def _nodes_reaching_output(ops: list[str]) -> set[int]:
    """Nodes with a path of non-``none`` edges to the output node."""
    reach = {NUM_NODES - 1}
    for node in range(NUM_NODES - 2, -1, -1):
        if any(
            s == node and t in reach and op != "none" for (t, s), op in zip(EDGES, ops, strict=True)
        ):
            reach.add(node)
    return reach


def parse_arch_str(arch: str) -> tuple[str, ...]:
    """Operation names per edge from an official arch string, with precise errors."""
    if not isinstance(arch, str) or not arch.strip():
        raise ArchStringError("empty architecture string; expected |op~0|+|op~0|op~1|+|...|")
    groups = arch.strip().split("+")
    if len(groups) != NUM_NODES - 1:
        raise ArchStringError(
            f"architecture string {arch!r} has {len(groups)} node group(s) separated by '+', "
            f"expected {NUM_NODES - 1}"
        )
    ops: list[str] = []
    for target, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ArchStringError(f"node group {target} {group!r} must start and end with '|'")
        items = group[1:-1].split("|")
        if len(items) != target:
            raise ArchStringError(
                f"node {target} must have {target} incoming edge(s), got {len(items)} in {group!r}"
            )
        for expected_source, item in enumerate(items):
            op, sep, source = item.partition("~")
            if not sep:
                raise ArchStringError(f"edge {item!r} must be written op~source")
            if op not in OPS:
                raise ArchStringError(f"unknown operation {op!r}; known: {', '.join(OPS)}")
            if source != str(expected_source):
                raise ArchStringError(
                    f"edge {item!r} into node {target} must come from node {expected_source}"
                )
            ops.append(op)
    return tuple(ops)


def all_cells() -> Iterator[Cell]:
    """Every cell of the space, in code order."""
    for indices in itertools.product(range(NUM_OPS), repeat=NUM_EDGES):
        yield Cell.from_indices(indices)
