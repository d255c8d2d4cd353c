"""The package's modules import one another in one direction: no cycle among them.

Only imports at module level count (those run on import; a function's own imports and
``if TYPE_CHECKING:`` blocks do not). The methods registry (``harness.methods``, whose
``__init__`` imports each method's module, which registers itself through it) is set aside.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
SET_ASIDE = "methods"


def modules() -> dict[str, Path]:
    """``{name: path}`` of every module directly in ``harness/`` (the registry aside)."""
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"}


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run on import: the body, into ``if``/``try`` blocks, bar TYPE_CHECKING."""
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                found += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
        else:
            found.append(node)
    return found


def imported(path: Path, names: set[str]) -> set[str]:
    """The package modules (of ``names``) that ``path`` imports at module level."""
    targets: set[str] = set()
    for node in _top_level(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "harness":
                continue
            if len(parts) > 1:
                targets.add(parts[1])
            else:
                targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "harness" and len(parts) > 1:
                    targets.add(parts[1])
    return (targets & names) - {SET_ASIDE}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_inside_the_package() -> None:
    found = modules()
    graph = {name: imported(path, set(found)) for name, path in found.items()}
    assert graph["sweep"] >= {"backends", "jobs"}  # the walk sees real imports
    assert cycles(graph) == []


def test_the_walk_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_search_keeps_only_the_loop() -> None:
    text = (PACKAGE / "search.py").read_text(encoding="utf-8")
    for word in ("BadFile", "set_aside", "_distrust", "_verified_checkpoint", "_sync_epochs"):
        assert word not in text, word
