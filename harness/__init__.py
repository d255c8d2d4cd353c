"""harness: discretization-aware differentiable NAS on NAS-Bench-201.

The Python API (``docs/api.md``)::

    harness.lookup(arch)                  # a cell's true NB201 accuracies
    harness.load_benchmark(data_dir=None) # the NB201 table, for many lookups
    harness.search(method, seed=0, preset=None, results=None, **overrides)
    harness.sweep(methods, seeds, preset=None, results=None, jobs=None, **overrides)
    harness.load_runs(results)            # one row per run (pandas)
    harness.load_epochs(results)          # one row per run and epoch (pandas)
    harness.report(results, out)          # tables and plots

Nothing is imported until it is used (PEP 562): ``import harness`` and a lookup never
import torch. ``harness.search``, ``harness.sweep`` and ``harness.report`` are also the
modules of those names (``from harness import sweep`` gives the module, as it always
did); calling one runs the function of the same name in :mod:`harness.api`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

FUNCTIONS = ("lookup", "load_benchmark", "load_runs", "load_epochs")
"""API functions that are plain attributes (from :mod:`harness.api`)."""
CALLABLE_MODULES = ("search", "sweep", "report")
"""Submodules that are also API functions: calling one calls ``harness.api.<name>``."""
NAMES = {"Cell": "harness.space", "UsageError": "harness.errors", "RunFailed": "harness.errors"}
"""Classes the API's users need, by the module that defines them."""

__all__ = [*FUNCTIONS, *CALLABLE_MODULES, *NAMES]


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (PEP 562)."""
    if name in FUNCTIONS:
        return getattr(importlib.import_module("harness.api"), name)
    if name in CALLABLE_MODULES:
        return importlib.import_module(f"harness.{name}")
    if name in NAMES:
        return getattr(importlib.import_module(NAMES[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API's names, as tab completion should offer them."""
    return sorted([*__all__, "__version__"])


class ApiModule(types.ModuleType):
    """A submodule that is also an API function: ``harness.sweep(...)`` calls
    ``harness.api.sweep``, while ``harness.sweep.plan`` and the rest stay as they are."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> Any:  # what inspect.signature and notebooks show
        import inspect

        return inspect.signature(self._function())

    def _function(self) -> Any:
        api = importlib.import_module("harness.api")
        return getattr(api, self.__name__.rpartition(".")[2])


class Package(types.ModuleType):
    """This package's module type: when the import system binds one of
    :data:`CALLABLE_MODULES` here (whoever imported it first), it becomes an
    :class:`ApiModule`, so ``harness.search`` is the same callable module however it
    was reached."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = ApiModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = Package
