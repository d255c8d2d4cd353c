"""One run directory and the decisions about what in it can be trusted.

:mod:`harness.results` knows the files (layout, atomic writes, checksums, what makes
one of them a :class:`~harness.results.BadFile`); a :class:`RunDir` answers the
questions the search loop asks of its directory: is this run finished and its result
trustworthy, where does it resume from, and what is set aside (renamed beside, never
deleted) and why. Every decision is logged in one line naming the file. A sweep asks
:func:`trusted_final` first, to skip a finished run without starting its job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import results
from harness.errors import UsageError

if TYPE_CHECKING:  # torch is imported by the loop that hands devices in
    import torch

    from harness.config import Config

Log = Callable[[str], None]


def trusted_final(directory: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The result of a finished run whose ``config.json``, ``final.json`` and
    ``epochs.jsonl`` can be trusted; None otherwise (the job then sets bad files aside
    and redoes what is needed)."""
    if not results.is_finished(directory):
        return None
    try:
        results.read_config(directory)
        final = results.load_final(directory, wanted)
        results.load_epochs(directory, final)
    except results.BadFile:
        return None
    return final


class RunDir:
    """The directory of one (method, seed), made with ``config`` and the NB201 table of
    sha256 ``table_sha256``; ``log`` says each decision."""

    def __init__(self, directory: Path, config: Config, table_sha256: str | None, log: Log) -> None:
        self.directory, self.epochs, self.log = Path(directory), config.epochs, log
        self.identity = results.identity(config.to_dict(), table_sha256)
        """What ``config.json`` holds (and the checkpoint is stamped with)."""

    # --- questions asked before the loop ----------------------------------------------
    def check_config(self) -> None:
        """Refuse a directory made with another config or table (``sweep.check_run_dirs``
        does so before any job starts; this guards direct use), then record ours."""
        path = self.directory / results.CONFIG
        wanted = self.identity
        if path.exists():
            try:
                recorded = results.read_config(self.directory)
            except results.BadFile as problem:
                self._distrust(problem, "writing it again")
            else:
                mismatch = results.config_mismatch(path, recorded, wanted)
                if mismatch:
                    raise UsageError(mismatch)
                if recorded == wanted:
                    return
        results.write_json(path, wanted)

    def intact_final(self) -> dict[str, Any] | None:
        """A finished run's result, if its files can be trusted. A bad ``final.json`` is
        set aside and the run resumes from its checkpoint to write it again; a bad
        ``epochs.jsonl`` is set aside and rewritten from the checkpoint's records."""
        if not results.is_finished(self.directory):
            return None
        try:
            final = results.load_final(self.directory, self.identity)
        except results.BadFile as problem:
            self._distrust(problem, "resuming from the checkpoint to write it again")
            return None
        try:
            results.load_epochs(self.directory, final)
            return final
        except results.BadFile as problem:
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
        keys = results.differing(state.get("identity", {}), self.identity)
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
