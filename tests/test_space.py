"""The NB201 cell space: string ↔ cell ↔ code, precise parse errors, canonical forms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.space import (
    NUM_CELLS,
    OPS,
    ArchStringError,
    Cell,
    all_cells,
    parse_arch_str,
)

VALID = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)


@pytest.fixture(scope="module")
def table_arch_strs(data_dir: Path) -> list[str]:
    frame = pd.read_csv(data_dir / "nb201" / "nb201_table.csv", usecols=["index", "arch_str"])
    return frame.sort_values("index")["arch_str"].astype(str).tolist()


def test_round_trip_every_table_row(table_arch_strs: list[str]) -> None:
    assert len(table_arch_strs) == NUM_CELLS
    codes = set()
    for arch in table_arch_strs:
        cell = Cell.from_arch_str(arch)
        assert cell.to_arch_str() == arch
        assert str(cell) == arch
        assert Cell.from_code(cell.code) == cell
        assert Cell.from_indices(cell.op_indices) == cell
        codes.add(cell.code)
    assert codes == set(range(NUM_CELLS)), "the table must cover every code exactly once"


def test_all_cells_enumerates_codes_in_order() -> None:
    assert [cell.code for cell in all_cells()] == list(range(NUM_CELLS))


def test_code_digits_edge_zero_most_significant() -> None:
    assert Cell(("none",) * 6).code == 0
    assert Cell(("skip_connect",) + ("none",) * 5).code == 5**5
    assert Cell(("none",) * 5 + ("avg_pool_3x3",)).code == 4
    assert Cell.from_code(NUM_CELLS - 1) == Cell(("avg_pool_3x3",) * 6)


@pytest.mark.parametrize("code", [-1, NUM_CELLS])
def test_code_out_of_range(code: int) -> None:
    with pytest.raises(ValueError, match="cell code must be in"):
        Cell.from_code(code)


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        ("|none~0|+|none~0|none~1|", r"2 node group\(s\)"),
        (VALID + "+|none~0|", r"4 node group\(s\)"),
        (VALID.replace("nor_conv_1x1~2", "conv_5x5~2"), "unknown operation 'conv_5x5'"),
        (VALID.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~1|+", 1), "must come from node 0"),
        (VALID.replace("skip_connect~0", "skip_connect~2"), "must come from node 0"),
        (VALID.replace("nor_conv_1x1~2", "nor_conv_1x12"), "must be written op~source"),
        ("", "empty architecture string"),
        ("   ", "empty architecture string"),
        (VALID.replace("|nor_conv_3x3~0|nor_conv_3x3~1|+", "|nor_conv_3x3~0|+"), "2 incoming"),
        (VALID[1:], "must start and end with '|'"),
    ],
)
def test_malformed_strings_name_the_problem(arch: str, problem: str) -> None:
    with pytest.raises(ArchStringError, match=problem):
        Cell.from_arch_str(arch)


def test_arch_string_error_is_a_value_error() -> None:
    assert issubclass(ArchStringError, ValueError)
    with pytest.raises(ValueError):
        parse_arch_str("nonsense")


def test_cell_rejects_wrong_length_and_unknown_ops() -> None:
    with pytest.raises(ValueError, match="6 edges"):
        Cell(("none",) * 5)
    with pytest.raises(ValueError, match="unknown operation"):
        Cell(("none",) * 5 + ("conv_7x7",))


# --- canonical form -------------------------------------------------------------
def test_unreachable_node_edges_are_pruned() -> None:
    # edge 1<-0 is none, so node 1 is identically zero: its outgoing edges do not matter
    cell = Cell(
        ("none", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1")
    )
    pruned = Cell(("none", "nor_conv_3x3", "none", "skip_connect", "none", "nor_conv_1x1"))
    assert cell != pruned
    assert cell.canonical() == pruned
    assert pruned.canonical() == pruned
    assert cell.equivalent(pruned)


def test_node_not_reaching_output_is_pruned() -> None:
    # edge 3<-2 is none and nothing else reads node 2: the edges into node 2 are dead
    cell = Cell(
        ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "none")
    )
    pruned = Cell(("nor_conv_3x3", "none", "none", "skip_connect", "nor_conv_3x3", "none"))
    assert cell.equivalent(pruned)
    assert cell.canonical() == pruned.canonical()
    assert cell.canonical().canonical() == cell.canonical()


def test_live_edges_are_not_pruned() -> None:
    cell = Cell(("nor_conv_3x3",) * 6)
    assert cell.canonical() == cell
    assert not cell.equivalent(Cell(("nor_conv_3x3",) * 5 + ("nor_conv_1x1",)))


def test_nodes_1_and_2_swap_when_edge_1_to_2_is_none() -> None:
    a, b, d, e, f = "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"
    cell = Cell((a, b, "none", d, e, f))
    swapped = Cell((b, a, "none", d, f, e))
    assert cell != swapped
    assert cell.equivalent(swapped)
    assert cell.canonical() == swapped.canonical()
    assert cell.canonical().code == min(cell.code, swapped.code)


def test_no_swap_when_edge_1_to_2_is_live() -> None:
    a, b, d, e, f = "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"
    cell = Cell((a, b, "skip_connect", d, e, f))
    swapped = Cell((b, a, "skip_connect", d, f, e))
    assert not cell.equivalent(swapped)


def test_number_of_canonical_classes() -> None:
    assert len({cell.canonical() for cell in all_cells()}) == 8765


def test_all_none_cells_collapse_to_one_class() -> None:
    # any cell with no live path from input to output computes zero
    zero = Cell(("none",) * 6)
    dead = Cell(("nor_conv_3x3", "none", "skip_connect", "none", "none", "none"))
    assert dead.canonical() == zero


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        (("none",) * 6, 6),
        (("nor_conv_3x3",) * 6, 0),
        (("nor_conv_1x1",) * 6, 0),
        (
            (
                "skip_connect",
                "nor_conv_1x1",
                "avg_pool_3x3",
                "none",
                "nor_conv_3x3",
                "skip_connect",
            ),
            4,
        ),
    ],
)
def test_parameter_free_edges(ops: tuple[str, ...], expected: int) -> None:
    assert Cell(ops).parameter_free_edges() == expected


def test_ops_order_is_the_nb201_order() -> None:
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
