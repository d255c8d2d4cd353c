"""Run configuration: one flat dataclass, three presets, and ``--set`` overrides.

A run's behaviour is fully described by its resolved :class:`Config` (written to
``config.json``), so a result can always be traced to what produced it.
Method hyper-parameters live in each method's own options dataclass and are
overridden as ``--set METHOD.FIELD=VALUE``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import UsageError

SEARCH_DATASETS = ("cifar10",)
DTYPES = ("float32", "float64")


@dataclass
class Config:
    """Everything a search run depends on. Defaults are the NB201 paper protocol."""

    dataset: str = "cifar10"
    # supernet shape
    C: int = 16
    N: int = 5
    # the search protocol (methods-spec §2.3, AutoDL column)
    epochs: int = 50
    batch_size: int = 64
    train_size: int = 0  # images of the 25k search-train split to use; 0 = all
    valid_size: int = 0  # images of the 25k search-valid split to use; 0 = all
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_nesterov: bool = True
    w_weight_decay: float = 5e-4
    grad_clip: float = 5.0
    a_lr: float = 3e-4
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_weight_decay: float = 1e-3
    a_init_std: float = 1e-3
    track_running_stats: bool = False  # candidate-op BN: batch statistics always
    # measurement
    gap_eval_size: int = 1024  # fixed subset of search-valid for the discretization gap
    gap_eval_batch: int = 256
    rank_samples: int = 100  # cells scored for the ranking correlation at the end
    rank_eval_size: int = 0  # eval images per scored cell; 0 = the whole gap eval subset
    # execution
    impl: str = "fused"  # "fused" or "reference" supernet
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    deterministic: bool = True
    dtype: str = "float32"  # "float32" or "float64" (the ci gate: ISA-independent numerics)
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    method: str = "darts"
    preset: str = "paper"
    method_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The NAS-Bench-201 protocol, for a GPU.
    "paper": {},
    # Same protocol, scaled to a 2-core CPU; see docs/presets.md for the calibration.
    "proxy": {
        "C": 8,
        "N": 1,
        "epochs": 10,
        "train_size": 1024,
        "valid_size": 1024,
        "a_lr": 3e-2,
        "gap_eval_size": 512,
        "gap_eval_batch": 256,
        "rank_samples": 100,
        "rank_eval_size": 256,
    },
    # Seconds per run: tests and the CI gate. Deterministic on CPU.
    "smoke": {
        "C": 4,
        "N": 1,
        "epochs": 3,
        "batch_size": 32,
        "train_size": 256,
        "valid_size": 256,
        "a_lr": 3e-2,
        "gap_eval_size": 128,
        "gap_eval_batch": 128,
        "rank_samples": 20,
        "threads": 1,
    },
    # The CI gate on the discretization gap: deterministic, a few seconds per method, and
    # trained long enough that α moves and a broken method shows (docs/ci-check.md).
    "ci": {
        "C": 4,
        "N": 1,
        "epochs": 4,
        "batch_size": 32,
        "train_size": 512,
        "valid_size": 512,
        "a_lr": 3e-2,
        "gap_eval_size": 256,
        "gap_eval_batch": 256,
        "rank_samples": 0,
        "threads": 1,
        "dtype": "float64",  # chaos amplifies float32 rounding across CPUs; see ci-check.md
    },
}


def default_preset(cuda_available: bool) -> str:
    return "paper" if cuda_available else "proxy"


def config_keys() -> list[str]:
    return [f.name for f in fields(Config) if f.name not in ("method_options", "method", "preset")]


def parse_value(key: str, text: str, kind: Any) -> Any:
    """Convert ``text`` to the type of a config field, with a clear error."""
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError:
        raise UsageError(f"--set {key}={text}: expected a value of type {kind.__name__}") from None


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "cdao.mu=0.1"]`` → ``{"a": "1", "cdao.mu": "0.1"}``."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=10")
        result[key.strip()] = value.strip()
    return result


def _unknown_key(key: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UsageError(f"unknown --set key {key!r}{hint}; valid keys: {', '.join(valid)}")


def resolve(
    preset: str,
    method: str,
    overrides: dict[str, str],
    method_options_type: type | None,
    seed: int = 0,
    all_method_keys: list[str] | None = None,
) -> Config:
    """The full config for one (method, seed): preset, then overrides.

    ``METHOD.FIELD`` keys for other methods are accepted and ignored here, so one
    ``--set`` list can serve a multi-method sweep; ``all_method_keys`` lists every
    valid such key for the error message.
    """
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown preset {preset!r}{hint}; known presets: {', '.join(PRESETS)}")
    config = Config(**PRESETS[preset])
    config.preset, config.method, config.seed = preset, method, seed
    options = method_options_type() if method_options_type else None
    types = {f.name: f.type for f in fields(Config)}
    valid = config_keys() + list(all_method_keys or [])
    for key, text in overrides.items():
        if "." in key:
            owner, _, name = key.partition(".")
            if key not in valid:
                raise _unknown_key(key, valid)
            if owner == method and options is not None:
                option_types = {f.name: f.type for f in fields(options)}
                setattr(options, name, parse_value(key, text, option_types[name]))
            continue
        if key not in config_keys():
            raise _unknown_key(key, valid)
        setattr(config, key, parse_value(key, text, types[key]))
    if config.dataset not in SEARCH_DATASETS:
        raise UsageError(
            f"dataset {config.dataset!r} is not supported for search; use one of {SEARCH_DATASETS}"
        )
    if config.impl not in ("fused", "reference"):
        raise UsageError(f"impl must be 'fused' or 'reference', got {config.impl!r}")
    if config.dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError("epochs and batch_size must be at least 1")
    config.method_options = dataclasses.asdict(options) if options is not None else {}
    return config
