"""Terms added to the α loss, and their schedules (methods-spec §5, §9).

Each term is a pure function of α or of the edge weights, so a method's α step is
``ctx.loss(batch, weights) + coefficient · term`` and the tests can check a term's
value and gradient at a known α.
"""

from __future__ import annotations

from torch import Tensor


def edge_entropy(probs: Tensor) -> Tensor:
    """Σ_e H(p_e) in nats: DA2S's op loss, summed over edges."""
    return -(probs * probs.clamp_min(1e-30).log()).sum()


def beta_decay(alpha: Tensor) -> Tensor:
    """β-DARTS's Beta-Decay term: the mean over edges of log Σ_k exp(α_{e,k}).

    A smooth maximum of each edge's logits; its gradient is softmax(α_e)/|E|, so it
    pulls the large logits down hardest and keeps both the values and the spread of
    the activated α small (Ye et al., CVPR 2022; code ``mlc_loss``).
    """
    return alpha.logsumexp(-1).mean()


def zero_one(weights: Tensor) -> Tensor:
    """FairDARTS's zero-one loss: −mean((w − ½)²) over every op weight.

    Minimising it pushes each independent sigmoid weight away from ½ towards 0 or 1
    (Chu et al., ECCV 2020; code ``ConvSeparateLoss``: −MSE(σ(α), 0.5)).
    """
    return -((weights - 0.5) ** 2).mean()


def linear_ramp(epoch: int, epochs: int, start: float, end: float) -> float:
    """``start + (end − start)·t/T`` for the 0-based epoch t of T: the value at epoch 0
    is ``start``; ``end`` itself would be reached one epoch after the last."""
    return start + (end - start) * epoch / epochs
