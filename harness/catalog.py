"""The registered methods by name, module and summary, readable without importing torch.

``python -m harness methods`` lists methods from here, so it answers at once; importing
:mod:`harness.methods` (the registry itself) imports torch and every method. Nothing
here is kept by hand: each method module is parsed (not imported) and every class
decorated with ``@register`` gives its ``name`` and ``summary``, the same two class
attributes the registry reads. ``tests/test_api.py`` holds this table equal to the
registry, so a declaration the parser cannot read (not a plain string) fails the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

METHODS_DIR = Path(__file__).parent / "methods"
NOT_METHODS = {"__init__", "base"}
"""Modules of ``harness/methods/`` that register no method (``parts/`` is a package)."""


def _string_attributes(node: ast.ClassDef) -> dict[str, str]:
    """The class body's plain ``NAME = "text"`` assignments."""
    found = {}
    for statement in node.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str)
        ):
            found[statement.targets[0].id] = statement.value.value
    return found


def _is_registered(node: ast.ClassDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)


def _declared(path: Path) -> list[tuple[str, str]]:
    """``(name, summary)`` of each registered class in one method module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _is_registered(node):
            attributes = _string_attributes(node)
            found.append((attributes.get("name", ""), attributes.get("summary", "")))
    return found


def _read_methods() -> dict[str, tuple[str, str]]:
    table = {}
    for path in sorted(METHODS_DIR.glob("*.py")):
        if path.stem in NOT_METHODS:
            continue
        for name, summary in _declared(path):
            table[name] = (f"harness.methods.{path.stem}", summary)
    return dict(sorted(table.items()))


METHODS: dict[str, tuple[str, str]] = _read_methods()
"""Method name → (the module that registers it, its one-line summary), sorted by name."""


def method_lines() -> list[str]:
    """``methods``' output: one ``name  summary`` line per method."""
    return [f"{name:<12} {summary}" for name, (_, summary) in METHODS.items()]
