"""Run configuration: one flat dataclass, three presets, and ``--set`` overrides.

A run's behaviour is fully described by its resolved :class:`Config` (written to
``config.json``), so a result can always be traced to what produced it.
Method hyper-parameters live in each method's own options dataclass and are
overridden as ``--set METHOD.FIELD=VALUE``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import UsageError
from harness.selections import NAMES as SELECTIONS

SEARCH_DATASETS = ("cifar10",)
DTYPES = ("float32", "float64")
SEARCH_SPLIT_SIZE = 25_000
"""Images in each half of NB201's CIFAR-10 search split (``data.KNOWN_SPLITS``): the
most ``train_size``, ``valid_size`` and ``gap_eval_size`` can take."""
MAX_SEED = 2**32 - 1
"""The largest seed: numpy, torch and CUDA all accept seeds below 2**32."""
SWEEP_FIELDS = {"seed": "--seeds", "method": "--methods", "preset": "--preset"}
"""Fields the sweep sets for each job, and the flag that sets them: never ``--set``."""


# --- what a field allows -------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """The values a field allows: ``allowed`` says which in words (for the error),
    ``check`` tells whether a value is one of them."""

    allowed: str
    check: Callable[[Any], bool]


def integer(low: int, high: int | None = None, note: str = "") -> Rule:
    """An int in ``low..high`` (no upper bound when ``high`` is None)."""
    span = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    return Rule(span + (f" ({note})" if note else ""), lambda v: _in_range(v, low, high))


def _in_range(value: Any, low: int, high: int | None) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return value >= low and (high is None or value <= high)


def real(
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
    inf: bool = False,
    note: str = "",
) -> Rule:
    """A finite number (``inf`` allows +inf) with optional bounds; ``above`` / ``below``
    make them strict. NaN is never allowed."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if above else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if below else '<='} {high:g}")
    allowed = "a number (inf allowed)" if inf else "a finite number"
    if bounds:
        allowed += " " + " and ".join(bounds)
    if note:
        allowed += f" ({note})"

    def check(value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return False
        if math.isinf(value) and not (inf and value > 0):
            return False
        ok_low = low is None or (value > low if above else value >= low)
        ok_high = high is None or (value < high if below else value <= high)
        return ok_low and ok_high

    return Rule(allowed, check)


def one_of(*choices: str) -> Rule:
    return Rule("one of " + ", ".join(choices), lambda v: v in choices)


def one_of_ints(*choices: int) -> Rule:
    return Rule(
        "one of " + ", ".join(map(str, choices)),
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v in choices,
    )


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
DEVICE = Rule(
    "auto, cpu, cuda or cuda:N (N a GPU index; other devices such as mps are not supported)",
    lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
)
SIZE_NOTE = "0 = all"

# --- one field: its type, default, rule and the behaviour of runs that predate it ----------
RULE, BEFORE, ONLY_FOR_SELECTION_KEY = "rule", "before", "only_for_selection"
"""The keys of a :class:`Config` field's metadata (see :func:`declare`)."""
_NEVER = object()


def declare(
    default: Any, rule: Rule, *, before: Any = _NEVER, only_for_selection: str | None = None
) -> Any:
    """A :class:`Config` field, declared once: its ``default``, the ``rule`` of the values
    it allows, what a run recorded before it existed did (``before``; only for a field
    added after runs were recorded), and the one selection that reads it, if only one
    does (``only_for_selection``)."""
    metadata: dict[str, Any] = {RULE: rule}
    if before is not _NEVER:
        metadata[BEFORE] = before
    if only_for_selection is not None:
        metadata[ONLY_FOR_SELECTION_KEY] = only_for_selection
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Everything a search run depends on. Defaults are the NB201 paper protocol; each
    field declares its rule and, where it was added after runs were recorded, how those
    runs behaved (:func:`declare`; :data:`RULES`, :data:`BEFORE_FIELD` gather them)."""

    dataset: str = declare("cifar10", one_of(*SEARCH_DATASETS))
    # supernet shape
    C: int = declare(16, integer(1))
    N: int = declare(5, integer(1))
    # the search protocol (methods-spec §2.3, AutoDL column)
    epochs: int = declare(50, integer(1))
    batch_size: int = declare(64, integer(1))
    # images of the 25k search-train / search-valid split to use; 0 = all
    train_size: int = declare(0, integer(0, SEARCH_SPLIT_SIZE, SIZE_NOTE))
    valid_size: int = declare(0, integer(0, SEARCH_SPLIT_SIZE, SIZE_NOTE))
    # images box-downsampled once at load (16 = NB201's ImageNet16 size)
    resolution: int = declare(32, one_of_ints(32, 16, 8), before=32)
    # epochs of weights-only training before α moves
    warmup_epochs: int = declare(
        0, integer(0, note="weights-only epochs before α moves; below epochs"), before=0
    )
    w_lr: float = declare(0.025, real(0, above=True))
    w_lr_min: float = declare(0.001, real(0))
    w_momentum: float = declare(0.9, real(0, 1, below=True))
    w_nesterov: bool = declare(True, BOOL)
    w_weight_decay: float = declare(5e-4, real(0))
    grad_clip: float = declare(5.0, real(0, above=True, inf=True, note="inf = no clipping"))
    a_lr: float = declare(3e-4, real(0, note="0 = alpha stays where it starts"))
    a_beta1: float = declare(0.5, real(0, 1, below=True))
    a_beta2: float = declare(0.999, real(0, 1, below=True))
    a_weight_decay: float = declare(1e-3, real(0))
    a_init_std: float = declare(1e-3, real(0))
    # BN: batch statistics always (True: running, lineage 2)
    track_running_stats: bool = declare(False, BOOL)
    # search-train/valid halves: NB201's split file, or "halves" (lineage 2)
    split: str = declare("nb201", one_of("nb201", "halves"), before="nb201")
    # measurement
    # fixed subset of search-valid for the discretization gap
    gap_eval_size: int = declare(1024, integer(1, SEARCH_SPLIT_SIZE))
    gap_eval_batch: int = declare(256, integer(1))
    # cells scored for the ranking correlation at the end
    rank_samples: int = declare(100, integer(0, note="0 = no ranking"))
    # eval images per scored cell; 0 = the whole gap eval subset
    rank_eval_size: int = declare(0, integer(0, SEARCH_SPLIT_SIZE, "0 = the whole gap eval subset"))
    # selection: how the final cell is read from the trained supernet (harness/select.py):
    # "argmax" (Method.derive) or "pt" (DARTS-PT perturbation)
    select: str = declare("argmax", one_of(*SELECTIONS), before="argmax")
    # DARTS-PT fine-tuning per decision, as a fraction of epochs
    pt_tune_frac: float = declare(
        0.05,
        real(0, note="fine-tuning per DARTS-PT decision, as a fraction of epochs"),
        before=0.05,
        only_for_selection="pt",
    )
    # "code": intervals 5,5,5,5,4 and SGD wd 3e-4, no Nesterov; "search"
    pt_tune: str = declare(
        "code", one_of("code", "search"), before="search", only_for_selection="pt"
    )
    # DARTS-PT fine-tuning also steps α ("step", the code) or "frozen"
    pt_alpha: str = declare(
        "step", one_of("step", "frozen"), before="frozen", only_for_selection="pt"
    )
    # DARTS-PT scores on all search-valid ("valid") or the gap images
    pt_eval: str = declare("valid", one_of("valid", "gap"), before="gap", only_for_selection="pt")
    # or bfloat16 / auto (bf16 where native): opt-in speed
    rank_precision: str = declare(
        "float32", one_of("auto", "float32", "bfloat16"), before="float32"
    )
    # execution
    impl: str = declare("fused", one_of("fused", "reference"))  # fused or reference supernet
    device: str = declare("auto", DEVICE)  # "auto", "cpu", "cuda", "cuda:1", ...
    threads: int = declare(0, integer(0, note="0 = torch's default"))  # torch intra-op, CPU
    deterministic: bool = declare(True, BOOL)
    # "float32" or "float64" (the ci gate: ISA-independent numerics)
    dtype: str = declare("float32", one_of(*DTYPES), before="float32")
    # CUDA float32 convolutions and matmuls in TF32 (faster, 10-bit mantissa). Before the
    # field a CUDA run convolved float32 in TF32 (cuDNN's default) and multiplied in full
    # float32; no recorded run ran on CUDA (the project had no GPU), and on a CPU the
    # switch changes nothing, so every older run is tf32=false.
    tf32: bool = declare(False, BOOL, before=False)
    bf16: bool = declare(False, BOOL)
    channels_last: bool = declare(False, BOOL)
    compile: bool = declare(False, BOOL)
    # CUDA only: training forward/backward replayed (harness/graphs.py)
    cuda_graphs: bool = declare(False, BOOL, before=False)
    # epoch records also as TensorBoard events (harness/board.py)
    tensorboard: bool = declare(False, BOOL)
    seed: int = declare(0, integer(0, MAX_SEED))
    method: str = "darts"  # checked against the registry
    preset: str = "paper"  # checked against PRESETS
    method_options: dict[str, Any] = field(default_factory=dict)  # see option_rules

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _declared(key: str) -> dict[str, Any]:
    """``{field: metadata[key]}`` over the :class:`Config` fields that declare ``key``."""
    return {f.name: f.metadata[key] for f in fields(Config) if key in f.metadata}


RULES: dict[str, Rule] = _declared(RULE)
"""Every field's allowed values, checked at plan time (:func:`check_config`), before
anything is written. ``method`` and ``preset`` are checked against the registry and
:data:`PRESETS`; method options against :func:`option_rules`."""


BEFORE_FIELD: dict[str, Any] = _declared(BEFORE)
"""What a run recorded before a field existed did, field by field: a ``config.json``
without the field is read with this value, so an older run still matches the config
that reproduces it (and one that would not is told apart: a field whose new default
changes behaviour names the old behaviour here, not the new default)."""


ONLY_FOR_SELECTION: dict[str, str] = _declared(ONLY_FOR_SELECTION_KEY)
"""Fields that only one selection reads (``select``): a cell read by another selection
does not depend on them, so report rows of that selection are not split by them."""


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
    # The calibrated CPU preset (issue 15, docs/presets.md, reports/calibration): 16 × 16
    # images buy 10k + 10k of them; about 4 CPU-minutes per darts run, one thread.
    "cpu": {
        "C": 8,
        "N": 1,
        "resolution": 16,
        "epochs": 10,
        "train_size": 10000,
        "valid_size": 10000,
        "a_lr": 3e-2,
        "gap_eval_size": 1024,
        "gap_eval_batch": 256,
        "rank_samples": 100,
        "rank_eval_size": 1024,
    },
    # The whole 25k + 25k search split at 16 px (issue 27, docs/presets.md "The whole-split
    # study"): the cheapest setting whose darts supernet passes 60 %; α's lr is
    # travel-matched (steps × lr as in the paper); about 10 CPU-minutes per darts run.
    "cpu25k": {
        "C": 8,
        "N": 1,
        "resolution": 16,
        "epochs": 10,
        "train_size": 25000,
        "valid_size": 25000,
        "a_lr": 1.5e-3,
        "gap_eval_size": 1024,
        "gap_eval_batch": 256,
        "rank_samples": 200,
        "rank_eval_size": 1024,
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
        "device": "cpu",  # tests compare bits: never the GPU a machine happens to have
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
        "device": "cpu",  # the baseline is CPU float64; a GPU would fail the gate spuriously
        "dtype": "float64",  # chaos amplifies float32 rounding across CPUs; see ci-check.md
    },
}


BEFORE_OPTION: dict[str, dict[str, Any]] = {
    "gdas": {"hold_unsampled": True, "sampling": "host"},
    "constrained": {"decide": "host"},
}
""":data:`BEFORE_FIELD` for method options: per method, what a run recorded before an
option existed did (``gdas.hold_unsampled`` arrived with issue 30, the old runs held;
``gdas.sampling`` and ``constrained.decide`` with issue 28, the old runs read the host)."""


def default_preset(cuda_available: bool) -> str:
    return "paper" if cuda_available else "proxy"


def config_keys() -> list[str]:
    """The fields ``--set`` may change: all but the sweep's own and the method options."""
    owned = {*SWEEP_FIELDS, "method_options"}
    return [f.name for f in fields(Config) if f.name not in owned]


def option_rules(options_type: type) -> dict[str, Rule]:
    """Each option's rule: the one its method declares in ``Options.RULES``, else one by
    type (a float must be finite, an int an integer, a bool true or false)."""
    declared: dict[str, Rule] = getattr(options_type, "RULES", {})
    return {f.name: declared.get(f.name) or _rule_for(f.type) for f in fields(options_type)}


def _rule_for(kind: Any) -> Rule:
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    by_type = {
        "float": real(),
        "int": Rule("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "bool": BOOL,
    }
    return by_type.get(name, Rule("text", lambda v: isinstance(v, str)))


def _shown(value: Any) -> str:
    """A value as the user would type it: text quoted, booleans in lower case."""
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


class FieldRefused(UsageError):
    """A field's value is refused; ``field`` names it (``epochs``, ``cdao.mu``), so that
    :func:`named_as_set` can name ``--set`` where the user set it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _refuse(name: str, value: Any, allowed: str) -> FieldRefused:
    return FieldRefused(name, f"{name}={_shown(value)}: {name} must be {allowed}")


@contextmanager
def named_as_set(overrides: Mapping[str, str]) -> Iterator[None]:
    """Within the block, a refused field the user set is named as the flag they typed
    (``--set epochs=0: ...``, from the CLI and the API alike); one a preset set is not."""
    try:
        yield
    except FieldRefused as refused:
        if refused.field in overrides:
            raise UsageError(f"--set {refused}") from None
        raise


def check_config(config: Config, options_type: type | None = None) -> None:
    """Refuse (UsageError naming the field, its value and what is allowed) a config
    with a value outside its field's rule, or fields that do not fit together."""
    for name, rule in RULES.items():
        value = getattr(config, name)
        if not rule.check(value):
            raise _refuse(name, value, rule.allowed)
    if options_type is not None:
        for name, rule in option_rules(options_type).items():
            value = config.method_options.get(name)
            if not rule.check(value):
                raise _refuse(f"{config.method}.{name}", value, rule.allowed)
    _check_together(config)


def _check_together(config: Config) -> None:
    """Values valid alone that do not fit together (each would fail inside the job)."""
    train = config.train_size or SEARCH_SPLIT_SIZE
    valid = config.valid_size or SEARCH_SPLIT_SIZE
    if config.batch_size > min(train, valid):
        raise _refuse(
            "batch_size",
            config.batch_size,
            f"at most {min(train, valid)} here (train_size {train}, valid_size {valid}: "
            "each needs one full batch)",
        )
    if config.rank_eval_size > config.gap_eval_size:
        raise _refuse(
            "rank_eval_size",
            config.rank_eval_size,
            f"at most gap_eval_size ({config.gap_eval_size}); 0 = all of it",
        )
    if config.warmup_epochs >= config.epochs:
        raise _refuse(
            "warmup_epochs", config.warmup_epochs, f"below epochs ({config.epochs}): α must move"
        )
    if config.w_lr_min > config.w_lr:
        raise _refuse("w_lr_min", config.w_lr_min, f"at most w_lr ({config.w_lr:g})")
    if config.w_nesterov and config.w_momentum == 0:
        raise _refuse("w_momentum", 0, "> 0 with w_nesterov=true (or set w_nesterov=false)")
    if config.bf16 and config.dtype != "float32":
        raise _refuse("bf16", True, f"false with dtype={config.dtype} (bf16 needs float32)")
    if config.tf32 and config.dtype != "float32":
        raise _refuse("tf32", True, f"false with dtype={config.dtype} (TF32 rounds float32)")
    if config.cuda_graphs:
        _check_cuda_graphs(config)


CUDA_GRAPHS_NEEDS_CUDA = "false here (cuda_graphs needs a CUDA device"


def _check_cuda_graphs(config: Config) -> None:
    """``cuda_graphs`` captures CUDA kernels: no CPU device, no autocast or TorchInductor
    inside the captured region (harness/graphs.py)."""
    if config.device == "cpu":
        raise _refuse("cuda_graphs", True, f"{CUDA_GRAPHS_NEEDS_CUDA}; device=cpu)")
    for other in ("bf16", "compile"):
        if getattr(config, other):
            raise _refuse("cuda_graphs", True, f"false with {other}=true (they do not combine)")


def check_switches_here(config: Config) -> None:
    """Refuse ``cuda_graphs`` where the run would have no CUDA device (``device=auto`` on
    a machine without one); for jobs that run here."""
    if not config.cuda_graphs or config.device != "auto":
        return
    import torch  # lazy: the rest of this module needs no torch

    if not torch.cuda.is_available():
        raise _refuse(
            "cuda_graphs", True, f"{CUDA_GRAPHS_NEEDS_CUDA}; device=auto finds none here)"
        )


def check_device_here(device: str) -> None:
    """Refuse a CUDA device this machine does not have (for jobs that run here)."""
    if not device.startswith("cuda"):
        return
    import torch  # lazy: the rest of this module needs no torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if count == 0:
        raise FieldRefused(
            "device",
            f"device={device!r}: CUDA is not available on this machine; "
            "use --set device=cpu or device=auto",
        )
    if index >= count:
        raise FieldRefused(
            "device",
            f"device={device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}",
        )


def parse_value(key: str, text: str, kind: Any) -> Any:
    """Convert ``text`` to the type of a config field, with a clear error; ``key`` names
    the setting in the message (e.g. ``--set epochs``)."""
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
        raise UsageError(f"{key}={text}: expected a value of type {kind.__name__}") from None


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "cdao.mu=0.1"]`` → ``{"a": "1", "cdao.mu": "0.1"}``; a key given twice
    with different values is refused (which one was meant?)."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"{item!r}: expected KEY=VALUE")
        if result.get(key, value) != value:
            raise UsageError(f"{key} given twice ({result[key]} and {value}); give it once")
        result[key] = value
    return result


def check_method_keys(overrides: dict[str, str], method_names: list[str]) -> None:
    """Refuse ``METHOD.FIELD`` settings for a method the sweep does not run: they would
    change nothing, silently."""
    for key in overrides:
        owner = key.partition(".")[0]
        if "." in key and owner not in method_names:
            raise UsageError(
                f"--set {key}: {owner} is not among the methods run ({', '.join(method_names)}); "
                f"add it to --methods or drop the setting"
            )


def _sweep_field(key: str) -> UsageError:
    return UsageError(
        f"--set {key}: {key} is set by the sweep for each run; use {SWEEP_FIELDS[key]} instead"
    )


def _unknown_key(key: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UsageError(f"unknown --set key {key!r}{hint}; valid keys: {', '.join(valid)}")


def paper_protocol(preset: str, method_options_type: type | None) -> dict[str, Any]:
    """A method's own published NAS-Bench-201 protocol (``Options.PAPER_PROTOCOL``: config
    fields where its paper departs from the DARTS one, e.g. epochs or weight decay).

    It applies under the ``paper`` preset only, so the CPU presets keep one budget for
    every method; ``--set`` still overrides it, and the resolved values are what
    ``config.json`` records.
    """
    if preset != "paper" or method_options_type is None:
        return {}
    protocol: dict[str, Any] = dict(getattr(method_options_type, "PAPER_PROTOCOL", {}))
    unknown = sorted(set(protocol) - set(config_keys()))
    if unknown:
        raise ValueError(f"{method_options_type.__name__}.PAPER_PROTOCOL: unknown {unknown}")
    return protocol


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
    ``--set`` list can serve a multi-method sweep (:func:`check_method_keys` refuses
    those of methods not run); ``all_method_keys`` lists every valid such key for the
    error message. The result passes :func:`check_config`.
    """
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown preset {preset!r}{hint}; known presets: {', '.join(PRESETS)}")
    config = Config(**{**PRESETS[preset], **paper_protocol(preset, method_options_type)})
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
                setattr(options, name, parse_value(f"--set {key}", text, option_types[name]))
            continue
        if key in SWEEP_FIELDS:
            raise _sweep_field(key)
        if key not in config_keys():
            raise _unknown_key(key, valid)
        setattr(config, key, parse_value(f"--set {key}", text, types[key]))
    config.method_options = dataclasses.asdict(options) if options is not None else {}
    with named_as_set(overrides):
        check_config(config, method_options_type)
    return config
