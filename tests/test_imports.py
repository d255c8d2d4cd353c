"""The package's modules import one another in one direction: no cycle among them.

Imports at module level and inside functions both count: an import put into a function
to dodge a cycle is still a cycle in the design. Only ``if TYPE_CHECKING:`` blocks (type
hints, never run) are left out. The methods registry (``harness.methods``, whose
``__init__`` imports each method's module, which registers itself through it) is set aside.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
SET_ASIDE = "methods"


def modules() -> dict[str, Path]:
    """``{name: path}`` of every module in ``harness/`` and its subpackages (the registry
    aside), named from ``harness``: ``search``, ``report`` (the package's ``__init__``),
    ``report.tables``."""
    found = {path.stem: path for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"}
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        package = init.parent.name
        if package != SET_ASIDE:
            found[package] = init
            found.update({f"{package}.{p.stem}": p for p in sorted(init.parent.glob("[!_]*.py"))})
    return found


def _target(dotted: str, names: set[str]) -> str:
    """The module of ``names`` that an import of ``harness.<dotted>`` runs: the longest
    known prefix (``report.tables.Table`` → ``report.tables``)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in names:
            return ".".join(parts[:end])
    return parts[0]


def _statements(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node that may run: the body and everything nested in it (functions, classes,
    ``if``/``try`` blocks), bar the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found += _statements(node.orelse)
            continue
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                found += _statements([child])
            else:
                found += [n for n in ast.walk(child) if isinstance(n, ast.stmt)]
    return found


def imported(path: Path, names: set[str]) -> set[str]:
    """The package modules (of ``names``) that ``path`` imports, at module level or in a
    function."""
    targets: set[str] = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "harness":
                continue
            inside = ".".join(parts[1:])
            for alias in node.names:  # ``from harness.report import tables``: a module
                targets.add(_target(f"{inside}.{alias.name}".lstrip("."), names))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "harness" and len(parts) > 1:
                    targets.add(_target(".".join(parts[1:]), names))
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
    assert graph["report"] >= {"report.tables", "manifest"}  # and into subpackages
    assert cycles(graph) == []


def test_the_walk_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_an_import_inside_a_function_counts(tmp_path: Path) -> None:
    """The manifest ↔ report cycle was a function-level import; a TYPE_CHECKING one is not."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from harness import search\n"
        "def f():\n    if True:\n        from harness.report import write_reports\n"
    )
    assert imported(module, {"report", "search"}) == {"report"}


def test_search_keeps_only_the_loop() -> None:
    text = (PACKAGE / "search.py").read_text(encoding="utf-8")
    for word in ("BadFile", "set_aside", "_distrust", "_verified_checkpoint", "_sync_epochs"):
        assert word not in text, word


def test_the_selections_and_the_loop_share_the_training_core() -> None:
    """``select`` once typed its state against ``search`` (hidden under TYPE_CHECKING) and
    rebuilt the loop's weight step; both now import the lower ``train``, and nothing of
    ``search`` is visible to ``select``, not even a type hint."""
    text = (PACKAGE / "select.py").read_text(encoding="utf-8")
    every = {
        node.module
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        f"harness.{alias.name}"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ImportFrom) and node.module == "harness"
        for alias in node.names
    }
    assert "harness.train" in every and "harness.search" not in every
    assert "train" in imported(PACKAGE / "search.py", set(modules()))
