"""DA2S: discretization-aware architecture search (methods-spec §5).

**[S]** (Tian et al., PR 2021; code sunsmarterjie/DAAS, ``nas_bench201/``): op
logits pass through a sharpening map f(a): x = 2a; x³ if x < −1 else x, op
weights are p_e = softmax(f(α_e)), and the loss adds an entropy term

    L = L_CE + λ_t · Σ_e H(softmax(f(α_e)))

with λ_t = max(0, (t − 16)/49)/2 for the 0-based epoch t of 50 (``MinEntropyLoss``
calls ``linear(epoch − interval)/2`` with interval 15 and ``linear(e) =
max(0, (e − 1)/(EP − 1))``, EP = 50 hard-coded): zero through epoch 16, ≈ 0.34
at the last epoch. The code is single-level: one backward of that loss on a
train batch gives both gradients at the same (w, α); w steps every iteration,
α (SGD, momentum 0.9, wd 1e-3) every 5th, with lr 0 before epoch ``interval``
and 3e-3 from it on — its momentum buffer fills during the lr-0 steps.

**[I]** harness choices:

* Other epoch counts scale the code's epoch axis: t' = 50·t/T in the formula
  above, so the ramp starts at 16/50 of the run and rises λ_max/49 per 1/50 of
  the run (spec §5.4). ``lambda_max`` is the code's 1/2, the weight the ramp would
  reach 49 reference epochs after it starts — never within a run.
* Default is DA2S-bilevel: the DARTS-V1 protocol with the entropy term on the α
  step (valid batch), α stepping from epoch 0.
* ``single_level=true`` is the code's update rule — α on the train batch every
  ``alpha_every`` steps, lr 0 before the interval, both gradients at the same
  (w, α) — inside the harness protocol. It is not the code's protocol: that
  trains on all 50k images with batch 256, lr 0.05, wd 3e-4 and no Nesterov, on
  DAAS's own supernet; docs/methods.md gives the ``--set`` line for the
  optimizer settings. The data stay the search-train half, because the valid
  half holds the images the discretization gap is measured on.
* The supernet's edge weights are softmax(f(α)), as in DAAS's forward, so the
  entropy that is penalised is the entropy of the weights actually mixed.
* α optimizer: the configured Adam by default, because the preset calibrates its
  lr to the number of α steps a run takes; ``alpha_optimizer=sgd`` gives the
  code's SGD (``sgd_lr``, ``sgd_momentum``, ``sgd_weight_decay``).
* Derivation: argmax per edge including ``none`` (f is increasing, so this is
  also the argmax of α).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, integer, one_of, real
from harness.errors import UsageError
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.regularizers import edge_entropy

REFERENCE_EPOCHS = 50  # the code's EP: its schedule constants are epochs of a 50-epoch run


@dataclass
class Options:
    """DA2S hyper-parameters: [S] values from the DAAS NB201 code unless marked [I]."""

    RULES: ClassVar[dict[str, Rule]] = {  # checked at plan time (config.check_config)
        "lambda_max": real(0),
        "interval_frac": real(0, 1),
        "alpha_every": integer(1),
        "alpha_optimizer": one_of("adam", "sgd"),
        "sgd_lr": real(0),
        "sgd_momentum": real(0, 1, below=True),
        "sgd_weight_decay": real(0),
    }

    lambda_max: float = 0.5  # [S] the code's "/ 2" (the ramp's scale); ablations {0.1, 0.5, 1}
    interval_frac: float = 0.3  # [S] interval = 15 of 50 epochs, as a fraction [I]
    sharpen: bool = True  # [S] apply f; false = the "without f" ablation [I]
    single_level: bool = False  # the code's single-level update rule [S]; default bilevel [I]
    alpha_every: int = 5  # [S] single-level: one α step every 5 iterations
    alpha_optimizer: str = "adam"  # [I] "adam" (configured) or "sgd" (the code's)
    sgd_lr: float = 3e-3  # [S]
    sgd_momentum: float = 0.9  # [S]
    sgd_weight_decay: float = 1e-3  # [S]


def sharpen(alpha: Tensor) -> Tensor:
    """f(a): x = 2a, then x³ where x < −1 — pushes weak ops' logits far down."""
    x = 2 * alpha
    return torch.where(x < -1, x**3, x)


def da2s_lambda(epoch: int, epochs: int, options: Options) -> float:
    """λ_t = λ_max·max(0, (t' − I' − 1)/49), t' = 50t/T, I' = 50·interval_frac.

    At T = 50 this is the code's max(0, (t − 16)/49)/2 for 0-based t; other
    epoch counts stretch the code's epoch axis.
    """
    t = epoch * REFERENCE_EPOCHS / epochs
    start = options.interval_frac * REFERENCE_EPOCHS + 1
    return options.lambda_max * max(0.0, (t - start) / (REFERENCE_EPOCHS - 1))


@register
class Da2s(Method):
    name = "da2s"
    summary = "DA2S: entropy of softmax(f(α)) with a delayed linear ramp (bilevel or single)"
    Options = Options

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choice = self.options.alpha_optimizer
        if choice not in ("adam", "sgd"):
            raise UsageError(f"da2s.alpha_optimizer must be 'adam' or 'sgd', got {choice!r}")
        if choice == "sgd":
            self.optimizer = torch.optim.SGD(
                [self.alpha],
                lr=self.options.sgd_lr,
                momentum=self.options.sgd_momentum,
                weight_decay=self.options.sgd_weight_decay,
            )
        self.alpha_lr = float(self.optimizer.param_groups[0]["lr"])
        self._step_weights: Tensor | None = None
        self._steps = 0

    @property
    def alpha_first(self) -> bool:  # type: ignore[override]
        """Single-level: the α step comes first and keeps the weights the w step must use."""
        return bool(self.options.single_level)

    @property
    def lam(self) -> float:
        return da2s_lambda(self.epoch, self.config.epochs, self.options)

    @property
    def frozen(self) -> bool:
        """Single-level before the interval: the code's α lr is 0."""
        return self.epoch < self.options.interval_frac * self.config.epochs

    def logits(self) -> Tensor:
        return sharpen(self.alpha) if self.options.sharpen else self.alpha

    def edge_weights(self) -> Tensor:
        """softmax(f(α)): the weights whose entropy the loss penalises."""
        return self.logits().softmax(-1)

    def weight_step_weights(self) -> Tensor:
        """Single-level: the weights at the α this step's α gradient saw (one joint
        backward in the code); bilevel: the current weights."""
        if self.options.single_level and self._step_weights is not None:
            return self._step_weights
        return super().weight_step_weights()

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._steps = 0

    def arch_loss(self, ctx: StepContext, batch: Batch) -> Tensor:
        """L_CE(w, p) + λ_t Σ_e H(p_e) on ``batch``."""
        probs = self.edge_weights()
        return ctx.loss(batch, probs) + self.lam * edge_entropy(probs)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        if self.options.single_level:
            self._single_level_step(ctx, train)
            return
        self._gradient_step(ctx, valid, self.alpha_lr)

    def _single_level_step(self, ctx: StepContext, train: Batch) -> None:
        """Every ``alpha_every``-th step: an α step on the train batch (lr 0 while frozen)."""
        self._step_weights = self.edge_weights().detach()
        if ctx.step % self.options.alpha_every == 0:
            self._gradient_step(ctx, train, 0.0 if self.frozen else self.alpha_lr)

    def _gradient_step(self, ctx: StepContext, batch: Batch, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.arch_loss(ctx, batch)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))
        self._steps += int(lr > 0)

    def telemetry(self) -> dict[str, Any]:
        with torch.no_grad():
            entropy = float(edge_entropy(self.edge_weights()))
        return {"entropy": entropy, "lambda_t": self.lam, "alpha_steps": self._steps}
