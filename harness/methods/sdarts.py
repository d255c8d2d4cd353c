"""SDARTS: smooth DARTS by perturbing the edge weights in the weight step (methods-spec §9).

**[S]** (Chen & Hsieh, ICML 2020, arXiv 2002.05283; code xiangning-chen/SmoothDARTS,
whose NB201 search is ``nasbench201/train_search.py`` and whose attacks are
``attacker/perturb.py``; β-DARTS carries a copy of both): the shared weights train on
the *softmax-activated* weights plus a perturbation δ, then α is restored:

* SDARTS-RS: δ ~ U(−ε, ε) elementwise, i.e. min_w E_δ L_tr(w, p + δ);
* SDARTS-ADV: δ from a 7-step L∞ PGD that maximises L_tr on the step's train batch
  (random start, step 2ε/7), i.e. min_w max_{‖δ‖∞≤ε} L_tr(w, p + δ);

after each move the weights are clamped to [0, 1] and renormalised per edge (the
code's ``clip``), and ADV keeps the clean weights when its result lowers the loss.
ε ramps linearly per epoch: ε_t = 0.03 + (ε_max − 0.03)·t/T, ε_max = 0.3, t 0-based.
The α step is DARTS first order on the valid batch at the clean softmax, and comes
first in each step (the code calls ``architect.step`` before the weight update). The
NB201 script's protocol (100 epochs, SGD wd 3e-4 without Nesterov, the first / last
25k training images, running-statistics BN) is :attr:`Options.PAPER_PROTOCOL`.

**[I]** harness choices: PGD runs the supernet in eval mode as the code does, so under
the paper protocol's running-statistics BN it attacks with the running statistics as
the code does; under the presets' batch-statistics BN eval mode changes nothing. The
loss inside the attack is taken at the perturbed weights themselves, as in the code:
both the SmoothDARTS NB201 script and β-DARTS's copy call ``model._loss(X, y,
updateType='weight')``, whose forward uses the (already softmaxed) weights as given.
Derivation: argmax per edge including ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from harness.config import Rule, integer, real
from harness.methods import register
from harness.methods.base import Batch, Method, StepContext
from harness.methods.parts.perturbation import pgd_perturbation, random_perturbation
from harness.methods.parts.regularizers import linear_ramp


@dataclass
class Options:
    """SDARTS hyper-parameters, all [S] from the code's defaults."""

    RULES: ClassVar[dict[str, Rule]] = {
        "epsilon_min": real(0),
        "epsilon_max": real(0),
        "pgd_steps": integer(1),
    }

    PAPER_PROTOCOL: ClassVar[dict[str, Any]] = {  # [S] nasbench201/train_search.py
        "epochs": 100,
        "w_weight_decay": 3e-4,
        "w_nesterov": False,
        "split": "halves",
        "track_running_stats": True,
    }

    epsilon_min: float = 0.03  # [S] the ramp's start (a constant in the code)
    epsilon_max: float = 0.3  # [S] --epsilon_alpha
    pgd_steps: int = 7  # [S] ADV only
    random_start: bool = True  # [S] ADV only


class Sdarts(Method):
    """DARTS-V1 α step; the weight step trains on a perturbed softmax (see subclasses)."""

    Options = Options
    alpha_first = True

    @property
    def epsilon(self) -> float:
        """ε_t = ε_min + (ε_max − ε_min)·t/T for the 0-based epoch t."""
        o = self.options
        return linear_ramp(self.epoch, self.config.epochs, o.epsilon_min, o.epsilon_max)

    def arch_step(self, ctx: StepContext, train: Batch, valid: Batch) -> None:
        loss = ctx.loss(valid, self.edge_weights())
        self.apply_gradient(list(torch.autograd.grad(loss, self.arch_parameters())))

    def telemetry(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


@register
class SdartsRs(Sdarts):
    name = "sdarts_rs"
    summary = "SDARTS-RS: weight step on clip(softmax(α) + U(−ε, ε)), ε ramped 0.03→0.3"

    def perturb_weights(self, ctx: StepContext, batch: Batch, weights: Tensor) -> Tensor:
        return random_perturbation(weights, self.epsilon)


@register
class SdartsAdv(Sdarts):
    name = "sdarts_adv"
    summary = "SDARTS-ADV: weight step on softmax(α) + 7-step L∞ PGD δ, ε ramped 0.03→0.3"

    def perturb_weights(self, ctx: StepContext, batch: Batch, weights: Tensor) -> Tensor:
        model = ctx.model
        was_training = model.training
        model.eval()  # the code attacks in eval mode
        try:
            return pgd_perturbation(
                lambda point: ctx.loss(batch, point),
                weights,
                self.epsilon,
                self.options.pgd_steps,
                self.options.random_start,
            )
        finally:
            model.train(was_training)
