"""Perturbations of the edge weights the supernet sees (methods-spec §9).

SDARTS (Chen & Hsieh, ICML 2020) trains the shared weights on softmax(α) + δ: δ
uniform in the L∞ ball of radius ε (RS) or the worst case found by projected
gradient ascent (ADV); DARTS- (Chu et al., ICLR 2021) adds an auxiliary skip β·x on
every edge. Both are functions of the [.., 6, 5] weight tensor, so the supernet and
the search loop stay unaware of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from harness.space import OPS

SKIP = OPS.index("skip_connect")


def clip_to_simplex(weights: Tensor) -> Tensor:
    """SDARTS's ``clip``: per edge clamp to [0, 1] and divide by the sum; an edge whose
    clamped weights are all zero puts weight 1 on its largest (pre-clamp) entry."""
    clamped = weights.clamp(0, 1)
    empty = clamped.sum(-1, keepdim=True) == 0
    leader = torch.nn.functional.one_hot(weights.argmax(-1), weights.shape[-1])
    clamped = torch.where(empty, leader.to(weights.dtype), clamped)
    return clamped / clamped.sum(-1, keepdim=True)


def uniform_noise(like: Tensor, epsilon: float) -> Tensor:
    """δ ~ U(−ε, ε) elementwise, from the global (seeded, checkpointed) torch RNG."""
    return torch.empty_like(like).uniform_(-epsilon, epsilon)


def random_perturbation(weights: Tensor, epsilon: float) -> Tensor:
    """SDARTS-RS: clip(w + δ), δ ~ U(−ε, ε)."""
    weights = weights.detach()
    return clip_to_simplex(weights + uniform_noise(weights, epsilon))


def pgd_perturbation(
    loss: Callable[[Tensor], Tensor],
    weights: Tensor,
    epsilon: float,
    steps: int = 7,
    random_start: bool = True,
) -> Tensor:
    """SDARTS-ADV: L∞ PGD that raises ``loss(w)`` within ‖w − w₀‖∞ ≤ ε on the simplex.

    As the SDARTS code (``Linf_PGD_alpha``): an optional uniform random start, then
    ``steps`` signed-gradient ascent steps of size 2ε/steps, each followed by clamping
    the displacement to [−ε, ε] and :func:`clip_to_simplex`; if the result's loss is
    below the clean loss, the clean weights are kept.
    """
    clean = weights.detach()
    with torch.no_grad():
        loss_before = loss(clean)
    current = clip_to_simplex(clean + uniform_noise(clean, epsilon)) if random_start else clean
    step = 2 * epsilon / steps
    for _ in range(steps):
        point = current.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(point), point)
        moved = point.detach() + step * grad.sign()
        current = clip_to_simplex(clean + (moved - clean).clamp(-epsilon, epsilon))
    with torch.no_grad():
        loss_after = loss(current)
    return torch.where(loss_before > loss_after, clean, current.detach())  # no host sync


def with_aux_skip(weights: Tensor, beta: float) -> Tensor:
    """DARTS-'s auxiliary skip: every edge computes β·x + Σ_o w_o·o(x).

    The auxiliary op is the identity (the code's ``Identity`` on stride-1 edges, all of
    NB201's), so β·x is exactly β more weight on ``skip_connect``; both supernet paths
    then compute it with no extra pass (``tests/methods/test_darts_minus.py`` checks it
    against an explicit β·x term).
    """
    shift = torch.zeros_like(weights)
    shift[..., SKIP] = beta
    return weights + shift
