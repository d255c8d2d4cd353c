"""Method registry: a method is one module in this package, registered by name."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from typing import Any

import torch

from harness.config import Config
from harness.errors import UsageError
from harness.methods.base import Method
from harness.supernet import SuperNet

_REGISTRY: dict[str, type[Method]] = {}
_DISCOVERED = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    """Import every method module once (importing one registers only that one)."""
    global _DISCOVERED
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _DISCOVERED = True


def registry() -> dict[str, type[Method]]:
    if not _DISCOVERED:
        _discover()
    return dict(sorted(_REGISTRY.items()))


def method_class(name: str) -> type[Method]:
    methods = registry()
    if name not in methods:
        close = difflib.get_close_matches(name, list(methods), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown method {name!r}{hint}; known methods: {', '.join(methods)}")
    return methods[name]


def option_keys() -> list[str]:
    """Every ``METHOD.FIELD`` key that ``--set`` accepts."""
    return [
        f"{name}.{field.name}"
        for name, cls in registry().items()
        for field in dataclasses.fields(cls.Options)
    ]


def options_for(config: Config) -> Any:
    return method_class(config.method).Options(**config.method_options)


def create(model: SuperNet, config: Config, device: torch.device) -> Method:
    return method_class(config.method)(model, config, options_for(config), device)
