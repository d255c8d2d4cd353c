"""Statistics of a search: pure functions on arrays, no I/O.

Discretization gap (methods-spec §10.1): the supernet's accuracy and loss with
continuous edge weights versus with the one-hot derived cell, on the same
weights and images; plus α-space distances to one-hot.
"""

from __future__ import annotations

import numpy as np


def _probs(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected per-edge probabilities [edges, ops], got shape {p.shape}")
    return p


def distance_to_onehot(probabilities: np.ndarray) -> float:
    """Δ(α) = mean over edges of ‖p_e − onehot(argmax p_e)‖²."""
    p = _probs(probabilities)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), p.argmax(1)] = 1.0
    return float(((p - onehot) ** 2).sum(1).mean())


def mean_entropy(probabilities: np.ndarray) -> float:
    """Mean per-edge entropy H(p_e) in nats (log 5 ≈ 1.609 for uniform)."""
    p = np.clip(_probs(probabilities), 1e-12, 1.0)
    p = p / p.sum(1, keepdims=True)
    return float(-(p * np.log(p)).sum(1).mean())


def mean_max_probability(probabilities: np.ndarray) -> float:
    """Mean over edges of max_k p_{e,k} (0.2 for uniform over 5 ops)."""
    return float(_probs(probabilities).max(1).mean())


def discretization_gap(
    cont_acc: float, cont_loss: float, disc_acc: float, disc_loss: float
) -> dict[str, float]:
    """Gap_acc = Acc_cont − Acc_disc and Gap_loss = L_disc − L_cont (positive = worse discrete)."""
    return {"gap_acc": cont_acc - disc_acc, "gap_loss": disc_loss - cont_loss}
