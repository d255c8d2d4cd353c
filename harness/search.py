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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness import board, graphs, methods, metrics, ranking, select
from harness.benchmark import Benchmark
from harness.config import Config
from harness.data import SearchData, build_search_data, split_file_name
from harness.errors import UsageError, first_line
from harness.methods.base import Method, StepContext
from harness.provenance import environment
from harness.rundir import RunDir
from harness.space import Cell
from harness.supernet import SuperNet

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


@dataclass
class SearchState:
    """Everything a run trains; all of it goes into the checkpoint."""

    model: SuperNet
    method: Method
    w_optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR
    data: SearchData
    grad_clip: float = 5.0
    epoch: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time: the cost that contention does not inflate
    bf16: bool = False
    channels_last: bool = False
    warmup_epochs: int = 0  # weights-only epochs: no α step before this epoch

    def autocast(self) -> torch.autocast:
        """The ``bf16`` switch: bfloat16 autocast around forward passes (a no-op when off)."""
        device_type = self.data.eval_images.device.type
        return torch.autocast(device_type, torch.bfloat16, enabled=self.bf16)

    def prepare(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The ``channels_last`` switch: images in the model's memory format."""
        images, labels = batch
        return _in_layout(images, self.channels_last), labels

    def checkpoint(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "records": records,
        }
        device = self.device()
        if device.type == "cuda":  # SDARTS's noise and DrNAS's Dirichlet draw from it
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        return state

    def device(self) -> torch.device:
        return self.data.eval_images.device

    def restore(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(host_bytes(state["torch_rng"]))
        self._restore_cuda_rng(state.get("cuda_rng"))
        self.epoch, self.wall_s = state["epoch"], state["wall_s"]
        self.cpu_s = state.get("cpu_s", 0.0)
        return list(state["records"])

    def _restore_cuda_rng(self, saved: Tensor | None) -> None:
        """The GPU generator as saved; a checkpoint from a CPU run (or one from before
        this was saved) leaves the freshly seeded generator as it is."""
        device = self.device()
        if saved is not None and device.type == "cuda":
            torch.cuda.set_rng_state(host_bytes(saved), device)


def host_bytes(state: Tensor) -> Tensor:
    """A generator state as torch wants it back, a CPU ``uint8`` tensor, wherever the
    checkpoint was mapped to (``torch.load(map_location=cuda)`` moves it to the GPU)."""
    return state.to(device="cpu", dtype=torch.uint8)


def torch_dtype(config: Config) -> torch.dtype:
    """The run's floating-point type for weights, α and images (``config.dtype``)."""
    return {"float32": torch.float32, "float64": torch.float64}[config.dtype]


def build_state(config: Config, data_dir: Path, device: torch.device) -> SearchState:
    dtype = torch_dtype(config)
    method_class, options = methods.method_class(config.method), methods.options_for(config)
    data = build_search_data(
        data_dir,
        device,
        config.batch_size,
        config.train_size,
        config.valid_size,
        config.gap_eval_size,
        config.seed,
        dtype=dtype,
        train_fraction=method_class.train_fraction(options),
        resolution=config.resolution,
        split_name=split_file_name(config.split),
    )
    extra = method_class.supernet_options(options)
    model = SuperNet(
        config.C, config.N, data.num_classes, config.impl, config.track_running_stats, **extra
    ).to(device=device, dtype=dtype)
    if config.channels_last:
        model.to_channels_last()
    if config.compile:
        compile_model(model, device)
    if config.cuda_graphs:
        if device.type != "cuda":
            raise UsageError(f"cuda_graphs=true needs a CUDA device, not {device.type}")
        graphs.install(model)
    method = methods.create(model, config, device)
    method.bind_data(data.eval_images, data.eval_labels, config.gap_eval_batch)
    w_optimizer, scheduler = weight_optimizer(model, config)
    return SearchState(
        model,
        method,
        w_optimizer,
        scheduler,
        data,
        config.grad_clip,
        bf16=config.bf16,
        channels_last=config.channels_last,
        warmup_epochs=config.warmup_epochs,
    )


def weight_optimizer(
    model: SuperNet, config: Config
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """SGD on the shared weights with the config's cosine schedule (NB201's setup)."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.w_lr,
        momentum=config.w_momentum,
        nesterov=config.w_nesterov,
        weight_decay=config.w_weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs, eta_min=config.w_lr_min
    )
    return optimizer, scheduler


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


def _upcast(logits: Tensor) -> Tensor:
    """bf16 logits (the ``bf16`` switch) to float32 for the loss; other dtypes as they are."""
    return logits.float() if logits.dtype == torch.bfloat16 else logits


def _in_layout(images: Tensor, channels_last: bool) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def weight_step(state: SearchState, ctx: StepContext, batch: tuple[Tensor, Tensor]) -> Tensor:
    """One SGD step on the shared weights; returns [loss, correct] on the device."""
    images, labels = batch
    state.w_optimizer.zero_grad(set_to_none=True)
    with state.autocast():
        weights, active = state.method.weight_step_inputs()
        weights = state.method.perturb_weights(ctx, batch, weights)
        logits = state.model(images, weights, active)
    loss = F.cross_entropy(_upcast(logits), labels)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.grad_clip)
    state.method.before_weight_update(ctx)
    state.w_optimizer.step()
    state.method.after_weight_step(ctx, grad_norm)
    correct = (logits.detach().argmax(1) == labels).sum()
    return torch.stack([loss.detach() * labels.shape[0], correct.to(loss.dtype)])


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
            state.model, state.w_optimizer, state.epoch, step, steps, epochs, bf16=state.bf16
        )
        if moves_alpha and method.alpha_first:
            method.arch_step(ctx, train_batch, valid_batch)
        step_totals = weight_step(state, ctx, train_batch)
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


@torch.no_grad()
def evaluate(
    model: SuperNet,
    weights: Tensor,
    active: Tensor | None,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """(accuracy %, mean loss) of the supernet under ``weights`` on a fixed image set;
    ``bf16`` and ``channels_last`` are the run's switches."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=images.device)
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        with torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
            logits = model(_in_layout(x, channels_last), weights, active)
        totals[0] += F.cross_entropy(_upcast(logits), y, reduction="sum")
        totals[1] += (logits.argmax(1) == y).sum()
    loss_sum, correct = totals.tolist()
    n = images.shape[0]
    model.train()
    return 100.0 * correct / n, loss_sum / n


def measure_gap(state: SearchState, config: Config) -> dict[str, float]:
    """Supernet accuracy/loss with continuous vs one-hot weights, same weights and images."""
    method, data = state.method, state.data
    with torch.no_grad():
        continuous = method.edge_weights().detach()
        discrete = method.discrete_weights()
    args = (data.eval_images, data.eval_labels, config.gap_eval_batch)
    switches = {"bf16": state.bf16, "channels_last": state.channels_last}
    cont_acc, cont_loss = evaluate(state.model, continuous, method.active_mask(), *args, **switches)
    disc_acc, disc_loss = evaluate(state.model, discrete, discrete.bool().cpu(), *args, **switches)
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
                state.model, self.benchmark, state.data, self.config
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
        """The cell each selection gives (``select``): argmax always, DARTS-PT when
        configured and the search finished (it fine-tunes the supernet in place)."""
        found = {"argmax": self._looked_up(state.method.derive())}
        if self.config.select == "pt" and status == "finished":
            started = time.perf_counter()
            pt = select.pt_select(state, self.config, self._accuracy(state), self.log)
            wall_s = round(time.perf_counter() - started, 3)
            found["pt"] = {**self._looked_up(pt.cell), **pt.record(), "wall_s": wall_s}
        elif self.config.select == "pt":
            who = f"{self.config.method} seed {self.config.seed}"
            self.log(f"pt: {who}: select=pt skipped: the search {status}; the cell is argmax's")
        return found

    def _looked_up(self, cell: Cell) -> dict[str, Any]:
        return {
            "arch": cell.to_arch_str(),
            "nb201_index": self.benchmark.index_of(cell),
            "nb201": self.benchmark.lookup(cell),
        }

    def _accuracy(self, state: SearchState) -> select.Accuracy:
        """PT's supernet accuracy under given edge weights: on the whole search-valid
        split (``pt_eval=valid``) or the gap-evaluation images (``gap``)."""
        data, config = state.data, self.config
        if config.pt_eval == "valid":
            return select.valid_accuracy(state, config.batch_size)
        args = (data.eval_images, data.eval_labels, config.gap_eval_batch)
        switches = {"bf16": state.bf16, "channels_last": state.channels_last}
        return lambda weights: evaluate(state.model, weights, None, *args, **switches)[0]


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
