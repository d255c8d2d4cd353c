"""One run directory, and the only interface to it: whose run it is, what in it is
trusted, and whether it is finished, failed or locked.

:mod:`harness.results` knows the files (layout, atomic writes, JSON, checksums,
checkpoints); a :class:`RunDir` answers every question asked of a run directory, by the
sweep (does it hold another config? is it finished and trusted, so its job is skipped?),
by a job (is it locked? record or clear the failure) and by the search loop (where does
it resume from, what is set aside, renamed beside and never deleted, and why). Every
decision is logged in one line naming the file. How a recorded config compares with
the wanted one (:func:`differing`, old runs read with their fields' old behaviour) is
here too, so a report pools runs exactly as a resume matches them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from harness import results
from harness.config import BEFORE_FIELD, BEFORE_OPTION
from harness.errors import UsageError

if TYPE_CHECKING:  # torch is imported by the loop that hands devices in
    import torch

    from harness.config import Config

Log = Callable[[str], None]

TABLE_KEY = "nb201_table_sha256"
"""The key of ``config.json`` (and of the checkpoint's identity) naming the NB201 table."""
EXECUTION_FIELDS = ("device", "threads", "tensorboard")
"""Config fields that change how fast a run goes or what else it writes, not what it
computes: never compared."""


# --- a run's identity, and how a recorded one compares -----------------------------------
def identity(config: dict[str, Any], table_sha256: str | None) -> dict[str, Any]:
    """What ``config.json`` holds: the resolved config and the sha256 of the NB201 table
    the run looks cells up in; JSON-normalised, so it equals what is read back."""
    data = dict(config) if table_sha256 is None else {**config, TABLE_KEY: table_sha256}
    return json.loads(json.dumps(data))


def differing(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys whose values differ (``method_options.X`` one by one), bar execution fields;
    a run recorded before the table key existed is not held to it, and one recorded
    before a config field existed holds that field's :data:`BEFORE_FIELD` value."""
    old, new = flat_recorded(recorded), flat_config(wanted)
    if TABLE_KEY not in old:
        new.pop(TABLE_KEY, None)
    absent = object()
    return sorted(
        key
        for key in old.keys() | new.keys()
        if key not in EXECUTION_FIELDS and old.get(key, absent) != new.get(key, absent)
    )


def flat_config(data: dict[str, Any]) -> dict[str, Any]:
    """``{"method_options": {"mu": 1}}`` → ``{"method_options.mu": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat


def flat_recorded(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded config, flat, with each field and method option it predates at its old
    behaviour (:data:`BEFORE_FIELD`, :data:`BEFORE_OPTION`): how a resume and a report
    read an older run."""
    if "method_options" not in recorded:
        return flat_config({**BEFORE_FIELD, **recorded})
    before = BEFORE_OPTION.get(recorded.get("method"), {})
    options = {**before, **recorded["method_options"]}
    return flat_config({**BEFORE_FIELD, **recorded, "method_options": options})


def config_mismatch(path: Path, recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The one-line refusal naming ``path`` and the differing keys; None if they agree."""
    keys = differing(recorded, wanted)
    if not keys:
        return None
    old, new = flat_config(recorded), flat_config(wanted)
    what = "another NB201 table" if keys == [TABLE_KEY] else "a different config"
    shown = ", ".join(f"{k} ({_short(old.get(k))} there, {_short(new.get(k))} now)" for k in keys)
    return (
        f"{path} was written with {what} (differs in: {shown}); "
        "use another --results directory or move the old run away"
    )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 16 else text[:12] + "…"


def _quiet(_: str) -> None:
    """The log of a RunDir that decides nothing worth saying (status questions only)."""


class RunDir:
    """The directory of one (method, seed). ``config`` and ``table_sha256`` say which run
    belongs in it (made with ``config``, looking cells up in the NB201 table of that
    sha256); without them a RunDir answers only what needs no comparison (finished,
    failed, locked; the lock; ``failed.json``). ``log`` says each decision."""

    def __init__(
        self,
        directory: Path,
        config: Config | None = None,
        table_sha256: str | None = None,
        log: Log = _quiet,
    ) -> None:
        self.directory, self.log = Path(directory), log
        self.epochs = config.epochs if config is not None else None
        self._identity = None if config is None else identity(config.to_dict(), table_sha256)

    @property
    def identity(self) -> dict[str, Any]:
        """What ``config.json`` holds (and the checkpoint is stamped with)."""
        if self._identity is None:
            raise TypeError(f"RunDir({self.directory}) was made without its run's config")
        return self._identity

    # --- finished, failed, locked ----------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the run wrote its ``final.json`` (trusted or not: :meth:`trusted_final`)."""
        return (self.directory / results.FINAL).is_file()

    @property
    def failed(self) -> bool:
        """Whether the last attempt raised (``failed.json``) and none finished since: a
        rerun retries it."""
        return not self.finished and (self.directory / results.FAILED).is_file()

    def locked(self) -> bool:
        """Whether another process holds the run's lock (works in it now)."""
        if not (self.directory / results.LOCK).exists():
            return False
        lock = self.try_lock()
        if lock is None:
            return True
        lock.release()
        return False

    def try_lock(self) -> FileLock | None:
        """The run's lock, acquired (release it when done), or None where another process
        holds it: one process at a time works in a run directory. Making the directory
        or the lock file fails as :class:`~harness.results.WriteFailed`."""
        path = self.directory / results.LOCK
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            lock.acquire(timeout=0)
        except Timeout:
            return None
        except OSError as error:
            raise results.WriteFailed(path, error) from error
        return lock

    def record_failure(self, record: dict[str, Any]) -> None:
        """``failed.json``: why the last attempt raised (OSError where the disk refuses)."""
        results.write_json(self.directory / results.FAILED, record)

    def clear_failure(self) -> None:
        """The run finished: an earlier attempt's ``failed.json`` no longer applies."""
        (self.directory / results.FAILED).unlink(missing_ok=True)

    def recorded_failure(self) -> dict[str, Any]:
        return results.read_json(self.directory / results.FAILED)

    def recorded_final(self) -> dict[str, Any]:
        """``final.json`` as written, unchecked (a run that just finished here)."""
        return results.read_json(self.directory / results.FINAL)

    def final_version(self) -> int | None:
        """Which ``final.json`` is there, None if none: it is written by rename, so a new
        one is a new inode (a sweep watching a shared directory tells its own apart)."""
        try:
            return (self.directory / results.FINAL).stat().st_ino
        except FileNotFoundError:
            return None

    def remove_stray_temporaries(self) -> list[Path]:
        """Delete the temporaries of writes that were killed; call it holding the lock
        (then no write of this run is in flight)."""
        strays = results.stray_temporaries(self.directory)
        for path in strays:
            path.unlink(missing_ok=True)
        return strays

    # --- whose run it is ---------------------------------------------------------------
    def recorded_config(self) -> dict[str, Any]:
        """``config.json`` as recorded; a run made before the table key existed takes it
        from its ``final.json`` where that names one."""
        recorded = results.read_json_object(self.directory / results.CONFIG)
        if TABLE_KEY not in recorded:
            with contextlib.suppress(results.BadFile, KeyError, TypeError):
                final = results.read_json_object(self.directory / results.FINAL)
                recorded[TABLE_KEY] = final["table"]["sha256"]
        return recorded

    def refuse_other_config(self) -> None:
        """Refuse (UsageError naming the file and the keys), writing nothing, a
        ``config.json`` that records another config or NB201 table. An unreadable one
        is left to the job, which keeps it aside (:meth:`check_config`) and relies on
        the identity the checkpoint and ``final.json`` carry."""
        if not (self.directory / results.CONFIG).is_file():
            return
        try:
            recorded = self.recorded_config()
        except results.BadFile:
            return
        self._refuse(recorded)

    def check_config(self) -> None:
        """Refuse a directory made with another config or table (the sweep does so
        before any job starts: :meth:`refuse_other_config`), then record ours; a
        garbled ``config.json`` is kept aside and written again."""
        path = self.directory / results.CONFIG
        if path.exists():
            try:
                recorded = self.recorded_config()
            except results.BadFile as problem:
                self._distrust(problem, "writing it again")
            else:
                self._refuse(recorded)
                if recorded == self.identity:
                    return
        results.write_json(path, self.identity)

    def _refuse(self, recorded: dict[str, Any]) -> None:
        mismatch = config_mismatch(self.directory / results.CONFIG, recorded, self.identity)
        if mismatch:
            raise UsageError(mismatch)

    def open(self) -> dict[str, Any] | None:
        """Claim the directory for this run, as the search loop does first: refuse
        another run's config and record ours (:meth:`check_config`), then the result if
        the run is finished and its files are trusted (:meth:`intact_final`); None: train,
        from the checkpoint where one is trusted (:meth:`checkpoint`)."""
        self.check_config()
        return self.intact_final()

    # --- is it finished and trusted ----------------------------------------------------
    def trusted_final(self) -> dict[str, Any] | None:
        """The result of a finished run whose ``config.json``, ``final.json`` and
        ``epochs.jsonl`` can be trusted; None otherwise. Changes nothing: the sweep asks
        it to skip a finished run without starting its job, and the job's
        :meth:`intact_final` sets bad files aside and redoes what is needed."""
        if not self.finished:
            return None
        try:
            self.recorded_config()
        except results.BadFile:
            return None
        final, problem = self._examine_final()
        return final if problem is None else None

    def _examine_final(self) -> tuple[dict[str, Any] | None, results.BadFile | None]:
        """``(final, None)``: ``final.json`` and ``epochs.jsonl`` are trusted;
        ``(None, problem)``: ``final.json`` is not (garbled, or another run's);
        ``(final, problem)``: ``final.json`` is, the ``epochs.jsonl`` beside it is not."""
        try:
            final = self._load_final()
        except results.BadFile as problem:
            return None, problem
        try:
            results.load_epochs(self.directory, final)
        except results.BadFile as problem:
            return final, problem
        return final, None

    def _load_final(self) -> dict[str, Any]:
        """``final.json`` if its checksum holds and it is this run's (config, table)."""
        final = results.read_final(self.directory)
        table = final.get("table") if isinstance(final.get("table"), dict) else {}
        keys = differing(identity(final["config"], table.get("sha256")), self.identity)
        if keys:
            raise results.BadFile(
                results.FINAL, f"belongs to another run (differs in: {', '.join(keys)})"
            )
        return final

    def intact_final(self) -> dict[str, Any] | None:
        """A finished run's result, if its files can be trusted (:meth:`trusted_final`'s
        verdict). A bad ``final.json`` is set aside and the run resumes from its checkpoint
        to write it again; a bad ``epochs.jsonl`` is set aside and rewritten from the
        checkpoint's records."""
        if not self.finished:
            return None
        final, problem = self._examine_final()
        if final is None:
            self._distrust(problem, "resuming from the checkpoint to write it again")
            return None
        if problem is None:
            return final
        self._distrust(problem, "rewriting it from the checkpoint's records")
        records = self._checkpoint_records(final)
        if records is None:  # diverged (last epoch never checkpointed), or no usable checkpoint
            kept = results.set_aside(self.directory / results.FINAL, "stale")
            self.log(f"the checkpoint lacks those records; kept final.json as {kept.name}")
            return None
        results.write_jsonl(self.directory / results.EPOCHS, records)
        return final

    def checkpoint(self, device: torch.device) -> dict[str, Any] | None:
        """The checkpoint to resume from, or None to start from epoch 0. An untrusted
        checkpoint is set aside, with the epochs.jsonl and final.json made from it."""
        checkpoint = None
        if (self.directory / results.CHECKPOINT).exists():
            try:
                checkpoint = self._verified_checkpoint(device)
            except results.BadFile as problem:
                self._distrust(problem, "restarting the run from epoch 0")
        if checkpoint is None:
            self._set_aside_stale()
        return checkpoint

    def does_not_fit(self, error: Exception) -> None:
        """The checkpoint verified but could not be restored into this run's state: set
        it aside, with the files made from it (the run restarts from epoch 0)."""
        why = f"does not fit this run ({error})".splitlines()[0]
        self._distrust(results.BadFile(results.CHECKPOINT, why), "restarting from epoch 0")
        self._set_aside_stale()

    def resumed(self, epoch: int, records: list[dict[str, Any]]) -> None:
        """Say where the run resumes and make ``epochs.jsonl`` the checkpoint's records."""
        self.log(f"resumed {self.directory} at epoch {epoch}/{self.epochs}")
        self._sync_epochs(records)

    # --- what the loop writes ---------------------------------------------------------
    def save(self, checkpoint: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """The checkpoint (stamped with the run's identity), then ``epochs.jsonl``."""
        checkpoint = {**checkpoint, "identity": self.identity}
        results.save_checkpoint(self.directory / results.CHECKPOINT, checkpoint)
        self.write_epochs(records)

    def write_epochs(self, records: list[dict[str, Any]]) -> None:
        results.write_jsonl(self.directory / results.EPOCHS, records)

    def write_final(self, final: dict[str, Any]) -> None:
        results.write_final(self.directory / results.FINAL, final)

    @staticmethod
    def epochs_digest(records: list[dict[str, Any]]) -> str:
        """The digest ``final.json`` records of the ``epochs.jsonl`` written from ``records``."""
        return results.text_digest(results.jsonl_text(records))

    # --- the trust decisions ----------------------------------------------------------
    def _distrust(self, problem: results.BadFile, action: str) -> None:
        """Say which file is bad and why, and keep it aside (never delete data)."""
        path = self.directory / problem.name
        if not path.exists():
            self.log(f"{path} is missing; {action}")
            return
        kept = results.set_aside(path, "corrupt")
        self.log(f"{path} is not trusted ({problem.why}); kept as {kept.name}; {action}")

    def _checkpoint_records(self, final: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The checkpoint's records, if they are exactly what ``final.json`` was made from."""
        import torch

        try:
            records = self._verified_checkpoint(torch.device("cpu"))["records"]
        except results.BadFile:
            return None
        digest = self.epochs_digest(records)
        if len(records) != final["epochs_done"]:
            return None
        return records if final.get("epochs_sha256") in (None, digest) else None

    def _verified_checkpoint(self, device: torch.device) -> dict[str, Any]:
        """The checkpoint, if it loads, matches its checksum and is this run's."""
        state = results.load_checkpoint(self.directory / results.CHECKPOINT, device)
        keys = differing(state.get("identity", {}), self.identity)
        if "identity" in state and keys:
            why = f"belongs to another run (differs in: {', '.join(keys)})"
            raise results.BadFile(results.CHECKPOINT, why)
        if state["epoch"] > self.epochs:
            why = f"at epoch {state['epoch']}, beyond {self.epochs}"
            raise results.BadFile(results.CHECKPOINT, why)
        return state

    def _set_aside_stale(self) -> None:
        """Starting from epoch 0: files of an earlier attempt are kept, not overwritten."""
        for name in (results.EPOCHS, results.FINAL):
            path = self.directory / name
            if path.exists():
                kept = results.set_aside(path, "stale")
                self.log(f"{path} has no usable checkpoint behind it; kept as {kept.name}")

    def _sync_epochs(self, records: list[dict[str, Any]]) -> None:
        """Make ``epochs.jsonl`` the checkpoint's records. A file one epoch behind (killed
        between the two writes) is brought up to date; one that is not a prefix of the
        records is garbled or another run's, and is set aside first."""
        path = self.directory / results.EPOCHS
        text = results.jsonl_text(records)
        try:
            current: str | None = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            current = ""
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text:
            return
        lagging = current is not None and text.startswith(current) and current[-1:] in ("", "\n")
        if not lagging:
            problem = results.BadFile(results.EPOCHS, "not a prefix of the checkpoint's records")
            self._distrust(problem, "rewriting it from the checkpoint's records")
        results.write_jsonl(path, records)
