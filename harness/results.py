"""The files of runs: on-disk layout, atomic writes, JSON, checksums, checkpoints.

``results/<preset>/<dataset>/<method>/seed-<n>/`` holds ``config.json``,
``epochs.jsonl``, ``checkpoint.pt`` and, once the run is finished,
``final.json`` (or ``failed.json`` when the last attempt raised). Every file
is written to a temporary name in the same directory, flushed to disk and
renamed, so a reader sees either the old file or the new one, never a partial
one. ``checkpoint.pt`` and ``final.json`` carry a checksum of their content, and
``final.json`` the digest of ``epochs.jsonl``, so a file garbled later is detected
(:class:`BadFile`), set aside and redone rather than trusted. Which run a directory
holds, whether it is finished, trusted, failed or locked, and what is set aside:
:mod:`harness.rundir` decides, reading and writing through this module; every run as a
DataFrame: :mod:`harness.runs`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from harness.errors import UsageError, first_line

if TYPE_CHECKING:  # torch is imported where checkpoints are: reading results needs none
    import torch

CONFIG, EPOCHS, FINAL, CHECKPOINT = "config.json", "epochs.jsonl", "final.json", "checkpoint.pt"
FAILED = "failed.json"
"""Why the last attempt raised; a run with it and no ``final.json`` is retried."""
LOCK = ".lock"
"""The run's lock file (``filelock``): one process at a time works in a run directory."""


FILE_MODE = 0o644
"""Mode of every results file: readable by the group and others, like a plain ``open``."""


def run_dir(results: Path, preset: str, dataset: str, method: str, seed: int) -> Path:
    return Path(results) / preset / dataset / method / f"seed-{seed}"


class WriteFailed(OSError):
    """A results file could not be written (disk full, read-only, ...); its previous
    version is untouched, because nothing is renamed over it before the write succeeds."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(path))
        reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
        advice = {
            errno.ENOSPC: "free space",
            errno.EDQUOT: "free space",
            errno.EACCES: "make it writable",
            errno.EPERM: "make it writable",
            errno.EROFS: "make it writable",
        }.get(error.errno or 0, "fix that")
        self.message = (
            f"cannot write {path}: {reason} (errno {error.errno}); "
            f"earlier results are intact; {advice} and rerun to resume"
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, for worker processes
        return type(self), (Path(self.filename), OSError(self.errno, self.strerror))


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write via ``write(handle)`` to a temporary file, fsync, and rename over ``path``.

    Any OS error (e.g. a full disk) becomes :class:`WriteFailed`, naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; results are shared (clusters, teams)
    except OSError as error:
        raise WriteFailed(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            _fault_point(handle)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError) and not isinstance(error, WriteFailed):
            raise WriteFailed(path, error) from error
        raise


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (a crash of the machine must not undo it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FAULT_ENV = "HARNESS_FAULT_AT"
_atomic_writes = 0


def _fault_point(handle: IO[bytes]) -> None:
    """FAULT-INJECTION HOOK for tests/test_faults.py; does nothing unless $HARNESS_FAULT_AT is set.

    ``HARNESS_FAULT_AT=N`` SIGKILLs this process at its N-th atomic write, after the
    temporary file is fully written and before the rename; ``N:partial`` first cuts the
    temporary file to half its length (a write killed midway).
    """
    global _atomic_writes
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _atomic_writes += 1
    at, _, mode = spec.partition(":")
    if _atomic_writes != int(at):
        return
    if mode == "partial":
        handle.truncate(handle.tell() // 2)
        handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: Path) -> Any:
    with Path(path).open(encoding="utf-8") as handle:
        return json.load(handle)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite the whole JSON-lines file atomically (it is small: one line per epoch)."""
    text = jsonl_text(records)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def jsonl_text(records: list[dict[str, Any]]) -> str:
    """Exactly what :func:`write_jsonl` writes, so its digest can be recorded and checked."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def text_digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


CHECKSUM = "checksum"
"""Key of the digest that ``final.json`` and ``checkpoint.pt`` carry of their own content."""
CHECKPOINT_KEYS = (
    "epoch",
    "wall_s",
    "model",
    "method",
    "w_optimizer",
    "scheduler",
    "torch_rng",
    "records",
)
FINAL_KEYS = ("status", "arch", "nb201", "epochs_done", "config")


class BadFile(ValueError):
    """Why a results file cannot be trusted: unreadable, garbled, or another run's."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name, self.why = name, why

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.name, self.why)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save with a checksum of every key and value: ``torch.load`` does not notice
    garbled tensor data, the checksum does."""
    import torch

    state = {**state, CHECKSUM: checksum(state)}
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint that loads, is complete and matches its checksum; else :class:`BadFile`."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001 - whatever torch.load raises, the file is bad
        raise BadFile(CHECKPOINT, f"cannot be loaded ({_message(error)})") from None
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        raise BadFile(CHECKPOINT, "not a harness checkpoint (keys missing)")
    if CHECKSUM in state and checksum(state) != state[CHECKSUM]:
        raise BadFile(CHECKPOINT, "checksum mismatch: its bytes changed after it was written")
    if not isinstance(state["records"], list) or len(state["records"]) != state["epoch"]:
        raise BadFile(
            CHECKPOINT, f"{len(state['records'])} epoch records for epoch {state['epoch']}"
        )
    return state


def checksum(state: dict[str, Any]) -> str:
    """sha256 over every key and value of ``state`` (tensors by their bytes), bar its own."""
    digest = hashlib.sha256()
    _digest({key: value for key, value in state.items() if key != CHECKSUM}, digest)
    return digest.hexdigest()


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (none exists before)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _digest(value: Any, digest: Any) -> None:
    if _is_tensor(value):
        import torch

        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {flat.dtype} {tuple(value.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}:".encode())
            _digest(value[key], digest)
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _digest(item, digest)
        digest.update(b"]")
    elif value is None or isinstance(value, str | int | float):
        digest.update(f"{type(value).__name__} {value!r};".encode())
    else:
        digest.update(pickle.dumps(value))


def write_final(path: Path, final: dict[str, Any]) -> None:
    """``final.json`` with a checksum of its own content (garbled digits are caught too)."""
    body = {key: value for key, value in final.items() if key != CHECKSUM}
    write_json(path, {**body, CHECKSUM: _json_digest(body)})


def _json_digest(data: Any) -> str:
    return text_digest(json.dumps(data, sort_keys=True, allow_nan=True))


def read_final(directory: Path) -> dict[str, Any]:
    """``final.json`` if it parses, is complete and matches its checksum."""
    final = read_json_object(Path(directory) / FINAL)
    missing = [key for key in FINAL_KEYS if key not in final]
    if missing or not isinstance(final["config"], dict):
        raise BadFile(FINAL, f"incomplete (no {', '.join(missing) or 'config'})")
    body = {key: value for key, value in final.items() if key != CHECKSUM}
    if CHECKSUM in final and final[CHECKSUM] != _json_digest(body):
        raise BadFile(FINAL, "checksum mismatch: its bytes changed after it was written")
    return final


def load_epochs(directory: Path, final: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``epochs.jsonl`` if every line parses and the epochs run 1..n; for a finished run
    also n == ``epochs_done`` and the text matches the digest ``final.json`` recorded."""
    path = Path(directory) / EPOCHS
    try:
        data = path.read_bytes()
        records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise BadFile(EPOCHS, "missing") from None
    except (OSError, ValueError) as error:
        raise BadFile(EPOCHS, f"not JSON lines ({_message(error)})") from None
    numbers = [record.get("epoch") if isinstance(record, dict) else None for record in records]
    if numbers != list(range(1, len(records) + 1)):
        raise BadFile(EPOCHS, f"epoch numbers {numbers[:6]} are not 1..{len(records)}")
    if final is not None:
        if len(records) != final["epochs_done"]:
            raise BadFile(
                EPOCHS, f"{len(records)} epochs, but final.json says {final['epochs_done']}"
            )
        if final.get("epochs_sha256") not in (None, text_digest(data)):
            raise BadFile(EPOCHS, "does not match the digest final.json recorded of it (garbled)")
    return records


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise BadFile(path.name, "missing") from None
    except (OSError, ValueError) as error:
        raise BadFile(path.name, f"not valid JSON ({_message(error)})") from None
    if not isinstance(data, dict):
        raise BadFile(path.name, f"not a JSON object but {type(data).__name__}")
    return data


def set_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``<name>.<tag>-<UTC time>`` beside it: data is kept, never deleted."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = path.with_name(f"{path.name}.{tag}-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.{tag}-{stamp}-{n}"), n + 1
    os.replace(path, target)
    return target


def check_writable(results: Path, flag: str = "--results") -> None:
    """Refuse (UsageError) an output directory (``flag``) where nothing can be written,
    before anything starts; probes with an unnamed temporary file, so nothing is left
    behind."""
    existing = Path(results).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {results}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"{flag} {results}: cannot write in {existing} ({reason}); "
            "choose another directory or make it writable"
        ) from None


VOLATILE_KEYS = frozenset({"wall_s", "cpu_s", "environment", "checksum", "epochs_sha256", "time"})
"""Keys of ``final.json`` / epoch records holding wall-clock or machine facts, not results."""


def _message(error: BaseException) -> str:
    return first_line(error) or type(error).__name__


def comparable(value: Any) -> Any:
    """``value`` without :data:`VOLATILE_KEYS` at any depth: two runs that computed the
    same thing (e.g. a resumed and an uninterrupted one) compare equal."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def stray_temporaries(directory: Path) -> list[Path]:
    """Temporary files left by a write that was killed; never read as results."""
    return sorted(Path(directory).glob(".*.tmp"))


# --- the runs of a results directory ---------------------------------------------
def run_dirs(results: Path) -> list[Path]:
    """Every ``<preset>/<dataset>/<method>/seed-<n>`` directory, sorted; ``results`` may
    also be one ``<preset>`` or ``<preset>/<dataset>`` of a results directory
    (:mod:`harness.layout`)."""
    from harness import layout

    return layout.run_dirs(results)
