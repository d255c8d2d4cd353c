"""DA2S: discretization-aware architecture search (methods-spec §5).

**[S]** (Tian et al., PR 2021; code sunsmarterjie/DAAS, ``nas_bench201/``): op
logits pass through a sharpening map f(a): x = 2a; x³ if x < −1 else x, op
weights are p_e = softmax(f(α_e)), and the α loss adds an entropy term

    L = L_CE + λ_t · Σ_e H(softmax(f(α_e)))

with λ_t = 0 until the epoch ``interval`` (15 of 50) and then a linear ramp.
The code is single-level: α is trained on the train batch, stepped every 5
iterations by SGD (momentum 0.9, wd 1e-3) whose lr is 0 before the interval
and 3e-3 after.

**[I]** harness choices (spec §5.4):

* Default is DA2S-bilevel: the DARTS-V1 protocol with the entropy term on the α
  step (valid batch). ``single_level=true`` gives the code-faithful loop on
  the standard NB201 supernet (its DAAS re-implementation is not used).
* The supernet's edge weights are softmax(f(α)), as in DAAS's forward, so the
  entropy that is penalised is the entropy of the weights actually mixed.
* λ_t = λ_max·clip((t − I)/(T − 1 − I), 0, 1) for 0-based epoch t and
  I = ``interval_frac``·T: the code's numerator (t − I − 1 for 1-based t) with
  the denominator chosen so that λ reaches λ_max = 0.5 in the last epoch (the
  code's fixed 49 stops at ≈ 0.35 of its stated maximum).
* α optimizer: the configured Adam by default, because the preset calibrates its
  lr to the number of α steps a run takes; ``alpha_optimizer=sgd`` gives the
  code's SGD (``sgd_lr``, ``sgd_momentum``, ``sgd_weight_decay``). Before the
  interval a single-level run takes no α step at all (the code's lr = 0),
  which also keeps SGD's momentum buffer empty until then.
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

    lambda_max: float = 0.5  # [S] the code's "/ 2"; ablations {0.1, 0.5, 1}
    interval_frac: float = 0.3  # [S] interval = 15 of 50 epochs, as a fraction [I]
    sharpen: bool = True  # [S] apply f; false = the "without f" ablation [I]
    single_level: bool = False  # [S] code-faithful single-level loop; default bilevel [I]
    alpha_every: int = 5  # [S] single-level: one α step every 5 iterations
    alpha_optimizer: str = "adam"  # [I] "adam" (configured) or "sgd" (the code's)
    sgd_lr: float = 3e-3  # [S]
    sgd_momentum: float = 0.9  # [S]
    sgd_weight_decay: float = 1e-3  # [S]


def sharpen(alpha: Tensor) -> Tensor:
    """f(a): x = 2a, then x³ where x < −1 — pushes weak ops' logits far down."""
    x = 2 * alpha
    return torch.where(x < -1, x**3, x)


def edge_entropy(probs: Tensor) -> Tensor:
    """Σ_e H(p_e) in nats (the DA2S op loss, summed over edges)."""
    return -(probs * probs.clamp_min(1e-30).log()).sum()


def da2s_lambda(epoch: int, epochs: int, options: Options) -> float:
    """λ_t: 0 up to the interval epoch, linear to λ_max at the last epoch."""
    start = options.interval_frac * epochs
    span = epochs - 1 - start
    if epoch < start:
        return 0.0
    if span <= 0:
        return options.lambda_max
    return options.lambda_max * min(1.0, (epoch - start) / span)


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
        self._steps = 0

    @property
    def alpha_first(self) -> bool:  # type: ignore[override]
        """Single-level: α steps first, so both gradients are taken at the same (w, α)."""
        return bool(self.options.single_level)

    @property
    def lam(self) -> float:
        return da2s_lambda(self.epoch, self.config.epochs, self.options)

    def logits(self) -> Tensor:
        return sharpen(self.alpha) if self.options.sharpen else self.alpha

    def edge_weights(self) -> Tensor:
        """softmax(f(α)): the weights whose entropy the loss penalises."""
        return self.logits().softmax(-1)

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        self._steps = 0

    def arch_loss(self, ctx: StepContext, batch: Batch) -> Tensor:
        """L_CE(w, p) + λ_t Σ_e H(p_e) on ``batch``."""
        probs = self.edge_weights()
        return ctx.loss(batch, probs) + self.lam * edge_entropy(probs)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        if self.options.single_level:
            frozen = self.epoch < self.options.interval_frac * self.config.epochs
            if frozen or ctx.step % self.options.alpha_every != 0:
                return
            batch = train
        else:
            batch = valid
        loss = self.arch_loss(ctx, batch)
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))
        self._steps += 1

    def telemetry(self) -> dict[str, Any]:
        with torch.no_grad():
            entropy = float(edge_entropy(self.edge_weights()))
        return {"entropy": entropy, "lambda_t": self.lam, "alpha_steps": self._steps}
