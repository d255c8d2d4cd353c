"""Training the shared weights: the search state, the weight step, evaluation, the SGD.

The search loop (:mod:`harness.search`) and the selections (:mod:`harness.select`,
whose DARTS-PT fine-tunes the supernet between decisions) both train and evaluate the
same supernet; this module is what they share, so neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from harness.config import Config
from harness.data import SearchData
from harness.methods.base import Method, StepContext
from harness.numerics import FLOAT32, Forward, Numerics
from harness.supernet import SuperNet


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
    numerics: Numerics = field(default_factory=Numerics)
    warmup_epochs: int = 0  # weights-only epochs: no α step before this epoch

    def autocast(self) -> torch.autocast:
        """The run's autocast (bfloat16 under ``bf16``) on the run's device."""
        return self.numerics.autocast(self.device().type)

    def prepare(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """A loader's batch in the run's layout (``channels_last``)."""
        return self.numerics.prepare(batch)

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


def sgd(
    model: SuperNet, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.SGD:
    """SGD on every parameter of the supernet (the shared weights)."""
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )


def weight_optimizer(
    model: SuperNet, config: Config
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """SGD on the shared weights with the config's cosine schedule (NB201's setup)."""
    optimizer = sgd(model, config.w_lr, config.w_momentum, config.w_nesterov, config.w_weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs, eta_min=config.w_lr_min
    )
    return optimizer, scheduler


def sgd_step(
    model: SuperNet,
    optimizer: torch.optim.SGD,
    numerics: Numerics,
    grad_clip: float,
    forward: Forward,
    batch: tuple[Tensor, Tensor],
    before_update: Callable[[], None] = lambda: None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One clipped SGD step on the shared weights for the loss of ``forward`` on ``batch``;
    ``before_update`` runs between the clipped gradient and the step. Returns the loss,
    the logits and the pre-clip gradient norm."""
    images, labels = batch
    optimizer.zero_grad(set_to_none=True)
    loss, logits = numerics.loss(forward, images, labels)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    before_update()
    optimizer.step()
    return loss, logits, grad_norm


def weight_step(state: SearchState, ctx: StepContext, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The search's step on the shared weights, under the weights the method draws and
    perturbs for it (inside the forward's autocast); returns [loss·n, correct] on the device."""
    method, labels = state.method, batch[1]

    def forward(images: Tensor) -> Tensor:
        weights, active = method.weight_step_inputs()
        weights = method.perturb_weights(ctx, batch, weights)
        return state.model(images, weights, active)

    loss, logits, grad_norm = sgd_step(
        state.model,
        state.w_optimizer,
        state.numerics,
        state.grad_clip,
        forward,
        batch,
        before_update=lambda: method.before_weight_update(ctx),
    )
    method.after_weight_step(ctx, grad_norm)
    correct = (logits.detach().argmax(1) == labels).sum()
    return torch.stack([loss.detach() * labels.shape[0], correct.to(loss.dtype)])


@torch.no_grad()
def evaluate(
    model: SuperNet,
    weights: Tensor,
    active: Tensor | None,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    numerics: Numerics = FLOAT32,
) -> tuple[float, float]:
    """(accuracy %, mean loss) of the supernet under ``weights`` on a fixed image set,
    in eval mode, under the run's ``numerics``."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=images.device)
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        loss, logits = numerics.loss(
            lambda batch: model(batch, weights, active), x, y, reduction="sum"
        )
        totals[0] += loss
        totals[1] += (logits.argmax(1) == y).sum()
    loss_sum, correct = totals.tolist()
    n = images.shape[0]
    model.train()
    return 100.0 * correct / n, loss_sum / n
