"""The search loop for one (method, seed): train, measure, record, checkpoint, resume.

Per step the method's α step and the shared weight step alternate; per epoch
the loop evaluates the supernet with continuous and with one-hot weights (the
discretization gap), derives the cell, looks it up in NAS-Bench-201, appends a
line to ``epochs.jsonl`` and checkpoints everything needed to continue
bit-for-bit. The loop contains no method-specific branch. What in the run
directory is trusted, and where a run resumes from, :mod:`harness.rundir` decides.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness import board, graphs, methods, metrics, ranking, select, train
from harness.benchmark import Benchmark
from harness.config import Config
from harness.data import build_search_data, split_file_name
from harness.errors import UsageError, first_line
from harness.methods.base import StepContext
from harness.numerics import Numerics
from harness.provenance import environment
from harness.rundir import RunDir
from harness.space import Cell
from harness.supernet import SuperNet
from harness.train import SearchState

Log = Callable[[str], None]


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device {name!r} requested but CUDA is not available; use --set device=cpu"
        )
    return device


def configure_torch(config: Config, device: torch.device) -> None:
    """Seeds, threads and determinism switches, before anything random happens."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        configure_cuda(config, device)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)


CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS's deterministic workspace setting (CUDA's reproducibility notes)."""


def configure_cuda(config: Config, device: torch.device) -> None:
    """The run's GPU as the current device (streams, graphs and cuBLAS handles are per
    device), its determinism and its float32 precision.

    ``CUBLAS_WORKSPACE_CONFIG`` is read when cuBLAS starts, so it is set here, before
    the first kernel of a fresh process; a value the user set is kept. TF32 is the
    config's explicit choice (``tf32``), for cuDNN and matmuls alike.
    """
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if device.index is not None:  # "cuda" alone means the current device, as it is
        torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = not config.deterministic
    torch.backends.cudnn.allow_tf32 = config.tf32
    torch.backends.cuda.matmul.allow_tf32 = config.tf32


def build_state(config: Config, data_dir: Path, device: torch.device) -> SearchState:
    numerics = Numerics.from_config(config)
    method_class, options = methods.method_class(config.method), methods.options_for(config)
    data = build_search_data(
        data_dir,
        device,
        config.batch_size,
        config.train_size,
        config.valid_size,
        config.gap_eval_size,
        config.seed,
        dtype=numerics.dtype,
        train_fraction=method_class.train_fraction(options),
        resolution=config.resolution,
        split_name=split_file_name(config.split),
    )
    extra = method_class.supernet_options(options)
    model = SuperNet(
        config.C, config.N, data.num_classes, config.impl, config.track_running_stats, **extra
    ).to(device=device, dtype=numerics.dtype)
    if numerics.channels_last:
        model.to_channels_last()
    if config.compile:
        compile_model(model, device)
    if config.cuda_graphs:
        if device.type != "cuda":
            raise UsageError(f"cuda_graphs=true needs a CUDA device, not {device.type}")
        graphs.install(model)
    method = methods.create(model, config, device)
    method.bind_data(data.eval_images, data.eval_labels, config.gap_eval_batch)
    w_optimizer, scheduler = train.weight_optimizer(model, config)
    return SearchState(
        model,
        method,
        w_optimizer,
        scheduler,
        data,
        config.grad_clip,
        numerics=numerics,
        warmup_epochs=config.warmup_epochs,
    )


def compile_model(model: SuperNet, device: torch.device) -> None:
    """The ``compile`` switch: ``torch.compile`` the supernet in place (state-dict keys
    unchanged); a clear error where TorchInductor cannot build kernels here."""
    try:
        probe = torch.compile(lambda t: t * 2 + 1)
        probe(torch.ones(2, device=device))
    except Exception as exc:  # any backend failure means the same to the user
        reason = first_line(exc) or type(exc).__name__
        raise UsageError(
            f"compile=true but torch.compile does not work on {device.type} here ({reason}); "
            "use --set compile=false"
        ) from None
    model.compile()


def train_epoch(state: SearchState, epochs: int) -> dict[str, float]:
    """One pass over the search-train split; statistics are summed on the device."""
    state.model.train()
    state.method.begin_epoch(state.epoch)
    data, method = state.data, state.method
    steps = data.train.batches_per_epoch
    moves_alpha = state.epoch >= state.warmup_epochs  # the warm-up trains the weights only
    valid_batches = _cycle(data.valid, state.epoch)
    totals = None
    for step, train_batch in enumerate(data.train.epoch_batches(state.epoch)):
        train_batch, valid_batch = state.prepare(train_batch), state.prepare(next(valid_batches))
        ctx = StepContext(
            state.model, state.w_optimizer, state.epoch, step, steps, epochs, state.numerics
        )
        if moves_alpha and method.alpha_first:
            method.arch_step(ctx, train_batch, valid_batch)
        step_totals = train.weight_step(state, ctx, train_batch)
        if moves_alpha and not method.alpha_first:
            method.arch_step(ctx, train_batch, valid_batch)
        totals = step_totals if totals is None else totals + step_totals
    loss_sum, correct = totals.tolist() if totals is not None else (math.nan, 0.0)
    seen = steps * data.train.batch_size
    return {"train_loss": loss_sum / seen, "train_acc": 100.0 * correct / seen}


def _cycle(loader: Any, epoch: int):  # noqa: ANN202 - a plain generator
    """Valid batches for the α steps: the loader's epoch order, restarted if exhausted."""
    round_ = 0
    while True:
        yield from loader.epoch_batches(epoch * 1000 + round_)
        round_ += 1


def measure_gap(state: SearchState, config: Config) -> dict[str, float]:
    """Supernet accuracy/loss with continuous vs one-hot weights, same weights and images."""
    method, data = state.method, state.data
    with torch.no_grad():
        continuous = method.edge_weights().detach()
        discrete = method.discrete_weights()
    args = (data.eval_images, data.eval_labels, config.gap_eval_batch)
    args = (*args, state.numerics)
    cont_acc, cont_loss = train.evaluate(state.model, continuous, method.active_mask(), *args)
    disc_acc, disc_loss = train.evaluate(state.model, discrete, discrete.bool().cpu(), *args)
    probs = method.probabilities().cpu().numpy()
    return {
        "supernet_valid_acc": cont_acc,
        "supernet_valid_loss": cont_loss,
        "onehot_valid_acc": disc_acc,
        "onehot_valid_loss": disc_loss,
        **metrics.discretization_gap(cont_acc, cont_loss, disc_acc, disc_loss),
        "alpha_distance": metrics.distance_to_onehot(probs),
        "alpha_entropy": metrics.mean_entropy(probs),
        "alpha_max_prob": metrics.mean_max_probability(probs),
        "bn_mode": "running" if config.track_running_stats else "batch",
    }


def _finite(values: dict[str, float], alpha: Tensor) -> str | None:
    """The reason a run diverged, or None; α first, as NaN α makes the loss NaN too."""
    if not bool(torch.isfinite(alpha).all()):
        return "non-finite architecture parameters"
    bad = [k for k in ("train_loss",) if not math.isfinite(values[k])]
    if bad:
        return f"non-finite {bad[0]} ({values[bad[0]]})"
    return None


class Search:
    """One run directory: resume if there is a checkpoint, then train to the end."""

    def __init__(
        self, config: Config, directory: Path, data_dir: Path, benchmark: Benchmark, log: Log
    ) -> None:
        self.config, self.directory, self.data_dir = config, Path(directory), data_dir
        self.benchmark, self.log = benchmark, log
        self.rundir = RunDir(self.directory, config, benchmark.sha256, log)

    def run(self) -> dict[str, Any]:
        config = self.config
        device = select_device(config.device)
        configure_torch(config, device)
        done = self.rundir.open()
        if done is not None:
            return done
        state, records = self._start(device)
        with board.epoch_writer(config.tensorboard, self.directory, state.epoch) as write_events:
            status, reason = self._train(state, records, write_events)
        return self._finish(state, records, device, status, reason)

    def _train(
        self, state: SearchState, records: list[dict[str, Any]], write_events: board.WriteEpoch
    ) -> tuple[str, str | None]:
        """Epochs until the last, or until one diverges: ``(status, reason)``."""
        config = self.config
        while state.epoch < config.epochs:
            started, started_cpu = time.perf_counter(), time.process_time()
            values = train_epoch(state, config.epochs)
            state.scheduler.step()
            reason = _finite(values, state.method.alpha)
            state.epoch += 1
            if reason is None:
                values.update(measure_gap(state, config))
            state.wall_s += time.perf_counter() - started
            state.cpu_s += time.process_time() - started_cpu
            records.append(self._record(state, values))
            write_events(records[-1])
            if reason is not None:
                self.log(f"diverged at epoch {state.epoch}: {reason}")
                return "diverged", reason
            self._save(state, records)
        return "finished", None

    # --- pieces -------------------------------------------------------------
    def _start(self, device: torch.device) -> tuple[SearchState, list[dict[str, Any]]]:
        """A fresh state, or the checkpoint's the run directory trusts; one that does not
        fit this run is handed back to it and the run restarts from epoch 0."""
        checkpoint = self.rundir.checkpoint(device)
        state = build_state(self.config, self.data_dir, device)
        if checkpoint is None:
            return state, []
        try:
            records = state.restore(checkpoint)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            self.rundir.does_not_fit(error)
            configure_torch(self.config, device)  # the same seeded start as a fresh run
            return build_state(self.config, self.data_dir, device), []
        self.rundir.resumed(state.epoch, records)
        return state, records

    def _record(self, state: SearchState, values: dict[str, float]) -> dict[str, Any]:
        cell = state.method.derive()
        record: dict[str, Any] = {"epoch": state.epoch, **values}
        record["w_lr"] = state.w_optimizer.param_groups[0]["lr"]
        record["alpha"] = [
            [round(p, 6) for p in row] for row in state.method.probabilities().tolist()
        ]
        record["arch"] = cell.to_arch_str()
        record["nb201"] = self.benchmark.lookup(cell)
        record["wall_s"] = round(state.wall_s, 3)
        record["cpu_s"] = round(state.cpu_s, 3)
        record["method"] = state.method.telemetry()
        c = self.config
        self.log(
            f"{c.method} seed {c.seed} epoch {state.epoch}/{c.epochs}: "
            f"train {values['train_acc']:.1f}% "
            f"valid {values.get('supernet_valid_acc', math.nan):.1f}% "
            f"one-hot {values.get('onehot_valid_acc', math.nan):.1f}% "
            f"cell C10 test {record['nb201']['cifar10']['test']:.2f}% ({state.wall_s:.0f}s)"
        )
        return record

    def _save(self, state: SearchState, records: list[dict[str, Any]]) -> None:
        self.rundir.save(state.checkpoint(records), records)

    def _finish(
        self,
        state: SearchState,
        records: list[dict[str, Any]],
        device: torch.device,
        status: str,
        reason: str | None,
    ) -> dict[str, Any]:
        self.rundir.write_epochs(records)
        last = records[-1] if records else {}
        ranked = None
        if status == "finished" and self.config.rank_samples > 0:
            ranked = ranking.ranking_correlation(
                state.model, self.benchmark, state.data, self.config, numerics=state.numerics
            )
        selections = self._selections(state, status)  # after ranking: PT fine-tunes w
        chosen = self.config.select if self.config.select in selections else "argmax"
        headline = selections[chosen]
        final = {
            "status": status,
            "reason": reason,
            "epochs_done": state.epoch,
            "method": self.config.method,
            "seed": self.config.seed,
            "preset": self.config.preset,
            "dataset": self.config.dataset,
            "arch": headline["arch"],
            "nb201_index": headline["nb201_index"],
            "nb201": headline["nb201"],
            "selection": chosen,
            "selections": selections,
            "gap": {k: last.get(k) for k in GAP_KEYS},
            "wall_s": round(state.wall_s, 3),
            "cpu_s": round(state.cpu_s, 3),
            "config": self.config.to_dict(),
            "table": self.benchmark.info(),
            "data": state.data.info(),
            "environment": environment(device),
            "epochs_sha256": self.rundir.epochs_digest(records),
        }
        # the one-hot accuracy is the argmax cell's, so is the truth it is compared with
        onehot = last.get("onehot_valid_acc")
        truth = selections["argmax"]["nb201"]["cifar10"]["valid"]
        final["gap"]["gap_to_nb201"] = None if onehot is None else onehot - truth
        if ranked is not None:
            final["ranking"] = ranked
        self.rundir.write_final(final)
        return final

    def _selections(self, state: SearchState, status: str) -> dict[str, dict[str, Any]]:
        """The cell each selection gives (``select``): argmax always, the configured one
        beside it; one that needs a finished search is skipped on a diverged one."""
        found: dict[str, dict[str, Any]] = {}
        for name in select.wanted(self.config.select):
            selection = select.SELECTIONS[name]
            if selection.needs_finished and status != "finished":
                who = f"{name}: {self.config.method} seed {self.config.seed}"
                self.log(f"{who}: select={name} skipped: the search {status}; the cell is argmax's")
                continue
            cell, record = selection.read(state, self.config, self.log)
            found[name] = {**self._looked_up(cell), **record}
        return found

    def _looked_up(self, cell: Cell) -> dict[str, Any]:
        return {
            "arch": cell.to_arch_str(),
            "nb201_index": self.benchmark.index_of(cell),
            "nb201": self.benchmark.lookup(cell),
        }


GAP_KEYS = (
    "supernet_valid_acc",
    "supernet_valid_loss",
    "onehot_valid_acc",
    "onehot_valid_loss",
    "gap_acc",
    "gap_loss",
    "alpha_distance",
    "alpha_entropy",
    "alpha_max_prob",
    "bn_mode",
)
