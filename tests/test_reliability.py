"""Bad files are detected and kept aside, never trusted; a changed config or NB201 table is
refused before anything runs; a held lock skips a run; a full or unwritable disk fails
cleanly with earlier results intact (issue 8, guarantees 2, 5 and 6)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

from harness import results, rundir, sweep
from harness.benchmark import Benchmark
from harness.cli import EXIT_LOCKED, main, summary_table
from harness.errors import UsageError
from harness.jobs import LOCKED, Job

OVERRIDES = {
    "epochs": "2",
    "rank_samples": "4",
    "train_size": "64",
    "valid_size": "64",
    "gap_eval_size": "32",
    "gap_eval_batch": "32",
}
RUN = Path("smoke", "cifar10", "darts", "seed-0")


def jobs(results_dir: Path, **extra: str) -> list[Job]:
    return sweep.plan(["darts"], [0], "smoke", {**OVERRIDES, **extra}, results_dir)


def sweep_once(results_dir: Path, data_dir: Path, **extra: str) -> dict[str, Any]:
    (outcome,) = sweep.run_jobs(jobs(results_dir, **extra), data_dir, Benchmark.load(data_dir))
    return outcome


def same_results(a: Path, b: Path) -> bool:
    """Same final.json and epochs.jsonl, bar wall-clock and environment fields."""
    finals = [results.comparable(results.read_json(d / results.FINAL)) for d in (a, b)]
    epochs = [results.comparable(results.read_jsonl(d / results.EPOCHS)) for d in (a, b)]
    return finals[0] == finals[1] and epochs[0] == epochs[1]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def aside(directory: Path, name: str, tag: str) -> list[Path]:
    return sorted(directory.glob(f"{name}.{tag}-*"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One finished, uninterrupted run; tests damage copies of it."""
    root = tmp_path_factory.mktemp("pristine")
    assert sweep_once(root, data_dir)["status"] == "finished"
    return root


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the pristine results directory, to damage."""
    shutil.copytree(pristine, tmp_path / "results")
    return tmp_path / "results"


def unfinished(root: Path) -> Path:
    """The run as if killed after its last checkpoint, before final.json."""
    directory = root / RUN
    (directory / results.FINAL).unlink()
    return directory


def garble(path: Path) -> None:
    """Flip 16 bytes in the middle of a file; in a checkpoint, in the middle of its
    largest tensor, so the archive stays readable and only the checksum can tell (the
    file's own middle may be a zip header)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            largest = max(archive.infolist(), key=lambda info: info.file_size)
        header = data[largest.header_offset : largest.header_offset + 30]
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        start = largest.header_offset + 30 + name_len + extra_len
        middle = start + largest.file_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- guarantee 2: corrupt or foreign files -------------------------------------------
def foreign_checkpoint(path: Path) -> None:
    """Another seed's checkpoint: loads, checksum fine, identity wrong."""
    state = torch.load(path, weights_only=False)
    state["identity"]["seed"] = 1
    results.save_checkpoint(path, state)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (truncate, "cannot be loaded"),
        (garble, "checksum mismatch"),
        (foreign_checkpoint, "belongs to another run (differs in: seed)"),
    ],
)
def test_bad_checkpoint_restarts_from_epoch_0_keeping_files_aside(
    copy: Path, pristine: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], damage, why
) -> None:
    directory = unfinished(copy)
    damage(directory / results.CHECKPOINT)
    bad, old_epochs = [(directory / n).read_bytes() for n in (results.CHECKPOINT, results.EPOCHS)]
    assert sweep_once(copy, data_dir)["status"] == "finished"

    err = capsys.readouterr().err
    assert f"{directory / results.CHECKPOINT} is not trusted ({why}" in err
    assert "restarting the run from epoch 0" in err and "resumed" not in err
    (kept,) = aside(directory, results.CHECKPOINT, "corrupt")
    (stale,) = aside(directory, results.EPOCHS, "stale")
    assert kept.read_bytes() == bad and stale.read_bytes() == old_epochs
    assert same_results(directory, pristine / RUN)


def garble_final_value(path: Path) -> None:
    """Valid JSON with one changed number: only the checksum can tell."""
    final = json.loads(path.read_text())
    final["nb201"]["cifar10"]["test"] += 1.0
    path.write_text(json.dumps(final))


def foreign_final(path: Path) -> None:
    final = json.loads(path.read_text())
    final["config"]["epochs"] = 3
    results.write_final(path, final)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (truncate, "not valid JSON"),
        (garble_final_value, "checksum mismatch"),
        (foreign_final, "belongs to another run (differs in: epochs)"),
    ],
)
def test_bad_final_json_is_kept_aside_and_written_again_from_the_checkpoint(
    copy: Path, pristine: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], damage, why
) -> None:
    directory = copy / RUN
    damage(directory / results.FINAL)
    bad = (directory / results.FINAL).read_bytes()
    assert sweep_once(copy, data_dir)["status"] == "finished"

    err = capsys.readouterr().err
    assert f"{directory / results.FINAL} is not trusted ({why}" in err
    assert "resumed" in err and "epoch 1/2" not in err  # no epoch was trained again
    (kept,) = aside(directory, results.FINAL, "corrupt")
    assert kept.read_bytes() == bad
    assert same_results(directory, pristine / RUN)


def garble_epoch_value(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    record = json.loads(lines[0])
    record["train_acc"] += 1.0
    path.write_text(json.dumps(record, sort_keys=True) + "\n" + "".join(lines[1:]))


@pytest.mark.parametrize(
    ("damage", "why"),
    [(truncate, "not JSON lines"), (garble_epoch_value, "does not match the digest")],
)
def test_bad_epochs_of_a_finished_run_are_rewritten_from_the_checkpoint(
    copy: Path, pristine: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], damage, why
) -> None:
    directory = copy / RUN
    final_before = (directory / results.FINAL).read_bytes()
    damage(directory / results.EPOCHS)
    bad = (directory / results.EPOCHS).read_bytes()
    assert sweep_once(copy, data_dir)["status"] == "finished"

    err = capsys.readouterr().err
    assert f"{directory / results.EPOCHS} is not trusted ({why}" in err
    assert "rewriting it from the checkpoint's records" in err and "resumed" not in err
    (kept,) = aside(directory, results.EPOCHS, "corrupt")
    assert kept.read_bytes() == bad
    assert (directory / results.FINAL).read_bytes() == final_before
    rewritten, original = directory / results.EPOCHS, pristine / RUN / results.EPOCHS
    assert rewritten.read_bytes() == original.read_bytes()


def keep_first_line(path: Path) -> None:
    """One epoch behind the checkpoint: what a kill between the two writes leaves."""
    path.write_text(path.read_text().splitlines(keepends=True)[0])


@pytest.mark.parametrize(("damage", "is_bad"), [(garble, True), (keep_first_line, False)])
def test_epochs_of_an_unfinished_run_are_rewritten_from_the_checkpoint(
    copy: Path, pristine: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], damage, is_bad
) -> None:
    directory = unfinished(copy)
    damage(directory / results.EPOCHS)
    (directory / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    assert sweep_once(copy, data_dir)["status"] == "finished"

    err = capsys.readouterr().err
    assert "resumed" in err and "epoch 1/2" not in err
    assert f"removed {directory / '.checkpoint.pt.x1y2z3.tmp'}" in err
    assert not results.stray_temporaries(directory)
    assert bool(aside(directory, results.EPOCHS, "corrupt")) == is_bad
    assert ("epochs.jsonl is not trusted (not a prefix" in err) == is_bad
    assert same_results(directory, pristine / RUN)


def test_garbled_config_json_is_kept_aside_and_written_again(
    copy: Path, pristine: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy / RUN
    truncate(directory / results.CONFIG)
    assert sweep_once(copy, data_dir)["status"] == "finished"
    assert "config.json is not trusted (not valid JSON" in capsys.readouterr().err
    assert aside(directory, results.CONFIG, "corrupt")
    assert results.read_json(directory / results.CONFIG) == results.read_json(
        pristine / RUN / results.CONFIG
    )


# --- guarantee 2: another config or table is refused at plan time ----------------------
def test_changed_hyper_parameter_is_refused_before_anything_runs(
    copy: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(copy)
    with pytest.raises(UsageError, match=r"config.json was written with a different config"):
        sweep_once(copy, data_dir, epochs="3")
    argv = ["run", "--methods", "darts", "--seeds", "1", "--preset", "smoke", "--jobs", "1"]
    argv += [f"--set={k}={v}" for k, v in {**OVERRIDES, "epochs": "3"}.items()]
    assert main([*argv, "--results", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(copy / RUN / results.CONFIG) in err and "epochs (2 there, 3 now)" in err
    assert snapshot(copy) == before


def test_changed_method_option_is_named(tmp_path: Path, data_dir: Path) -> None:
    (job,) = sweep.plan(["cdao"], [0], "smoke", dict(OVERRIDES), tmp_path)
    sha = Benchmark.load(data_dir).sha256
    results.write_json(job.directory / results.CONFIG, rundir.identity(job.config.to_dict(), sha))
    changed = sweep.plan(["cdao"], [0], "smoke", {**OVERRIDES, "cdao.mu": "0.1"}, tmp_path)
    with pytest.raises(UsageError, match=r"differs in: method_options.mu \(1.0 there, 0.1 now\)"):
        sweep.check_run_dirs(changed, sha)


def test_other_nb201_table_is_refused_before_anything_runs(
    copy: Path, data_dir: Path, tmp_path: Path
) -> None:
    table = data_dir / "nb201" / "nb201_table.csv"
    other = tmp_path / "other_table.csv"
    other.write_bytes(table.read_bytes() + b"\n")  # same cells, another file
    assert Benchmark.load(None, other).sha256 != Benchmark.load(data_dir).sha256
    before = snapshot(copy)
    with pytest.raises(UsageError, match=r"another NB201 table \(differs in: nb201_table_sha256"):
        sweep.run_jobs(jobs(copy), data_dir, other)
    assert snapshot(copy) == before


# --- guarantee 5: a run held by another process is not run -----------------------------
def test_locked_run_is_reported_and_a_later_rerun_collects_it(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / RUN
    directory.mkdir(parents=True)
    argv = ["run", "--methods", "darts", "--seeds", "1", "--preset", "smoke", "--jobs", "1"]
    argv += [f"--set={k}={v}" for k, v in OVERRIDES.items()] + ["--results", str(tmp_path)]
    with FileLock(str(directory / results.LOCK)):
        (outcome,) = sweep.run_jobs(jobs(tmp_path), data_dir, Benchmark.load(data_dir))
        assert outcome["status"] == "locked" and outcome["reason"] == LOCKED
        assert "locked" in summary_table([outcome])
        assert main(argv) == EXIT_LOCKED
        err = capsys.readouterr().err
        assert "locked: darts seed 0: running in another process; rerun later" in err
        assert sorted(p.name for p in directory.iterdir()) == [results.LOCK]  # nothing ran
    assert main(argv) == 0
    assert results.read_json(directory / results.FINAL)["status"] == "finished"


# --- guarantee 6: a full disk or an unwritable results directory -----------------------
def enospc_at(monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
    """Make the ``nth`` fsync of a temporary for ``name`` (every one if nth=0; of every
    file if name is empty) fail as a full disk would."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if target.startswith(f".{name}") and target.endswith(".tmp"):
            seen["n"] += 1
            if nth in (0, seen["n"]):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_fails_the_run_clearly_and_keeps_earlier_results(
    tmp_path: Path, pristine: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enospc_at(monkeypatch, results.CHECKPOINT, 2)  # the epoch-2 checkpoint
    outcome = sweep_once(tmp_path, data_dir)
    directory = tmp_path / RUN
    assert outcome["status"] == "failed"
    assert outcome["reason"] == (
        f"WriteFailed: cannot write {directory / results.CHECKPOINT}: No space left on device "
        "(errno 28); earlier results are intact; free space and rerun to resume"
    )
    previous = results.load_checkpoint(directory / results.CHECKPOINT, torch.device("cpu"))
    assert previous["epoch"] == 1
    assert [r["epoch"] for r in results.load_epochs(directory)] == [1]
    assert not results.stray_temporaries(directory) and not rundir.RunDir(directory).finished

    monkeypatch.undo()
    assert sweep_once(tmp_path, data_dir)["status"] == "finished"
    assert same_results(directory, pristine / RUN)


def test_full_disk_everywhere_ends_in_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    enospc_at(monkeypatch, "", 0)
    argv = ["run", "--methods", "darts", "--seeds", "1", "--preset", "smoke", "--jobs", "1"]
    argv += [f"--set={k}={v}" for k, v in OVERRIDES.items()] + ["--results", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "could not record the failure" in err and "Traceback" not in err
    config = tmp_path / RUN / results.CONFIG
    assert f"failed: darts seed 0: WriteFailed: cannot write {config}: No space left" in err
    assert "free space and rerun to resume" in err


def test_unwritable_results_directory_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--methods", "darts", "--seeds", "1", "--preset", "smoke"]
    (tmp_path / "a-file").write_text("")
    assert main([*argv, "--results", str(tmp_path / "a-file" / "results")]) == 2
    assert "a-file is not a directory" in capsys.readouterr().err

    def denied(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(results.tempfile, "TemporaryFile", denied)  # root ignores chmod
    assert main([*argv, "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write in" in err and "Permission denied" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
