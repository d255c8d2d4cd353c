"""Stochastic edge weights shared by the sampling baselines (GDAS, SNAS, DrNAS).

The Gumbel draws are made on the CPU from the global torch generator and then moved to
α's device through pinned memory (:func:`harness.devices.to_device`: queued, no host
sync): the numbers are the same on CPU and CUDA, and the generator's state is what the
checkpoint saves (``torch_rng``), so a resumed run draws what it would have drawn. The
Dirichlet draw is made on α's device, from its generator (on CUDA the checkpoint's
``cuda_rng``): moving the concentration to the CPU first would wait for the GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.devices import to_device


def linear_temperature(epoch: int, span: int, tau_max: float, tau_min: float) -> float:
    """τ_t = τ_max − (τ_max − τ_min)·t/span for the 0-based epoch t.

    AutoDL's GDAS uses span = epochs − 1 (τ_min at the last epoch); DrNAS's SNAS steps
    by (τ_min − τ_max)/epochs after each epoch, i.e. span = epochs (τ_min never reached).
    """
    return tau_max - (tau_max - tau_min) * epoch / max(span, 1)


def gumbel_noise(shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Standard Gumbel noise −log(E), E ~ Exp(1), on the CPU; redrawn while any entry is
    infinite (E = 0), as AutoDL's GDAS redraws."""
    while True:
        noise = -torch.empty(shape, dtype=dtype).exponential_().log()
        if bool(torch.isfinite(noise).all()):
            return noise


def gumbel_softmax(logits: Tensor, tau: float) -> Tensor:
    """A relaxed one-hot sample softmax((logits + g)/τ) per row, differentiable in
    ``logits`` (SNAS; ``F.gumbel_softmax(hard=False)`` in DrNAS's NB201 code)."""
    noise = to_device(gumbel_noise(logits.shape, logits.dtype), logits.device)
    return ((logits + noise) / tau).softmax(-1)


def straight_through_gumbel(alpha: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """GDAS's sample (Dong & Yang 2019; AutoDL ``TinyNetworkGDAS.forward``).

    p̃ = softmax((log_softmax(α) + g)/τ), h = onehot(argmax p̃); returns the weights
    h − sg(p̃) + p̃ (exactly h in value, p̃'s gradient) and the host bool mask of h.

    The mask must be on the host (the supernet computes only the sampled ops), so each
    draw reads the device once: the sampled indices, "p̃ is finite" (AutoDL redraws
    otherwise) and "α is finite" (a redraw cannot help a diverged α: the draw is kept,
    its loss is not finite, and the loop ends the run as diverged) in one copy.
    """
    while True:
        probs, index = _gumbel_max(alpha, tau)
        finite = torch.stack([torch.isfinite(probs).all(), torch.isfinite(alpha).all()])
        read = torch.cat([index.flatten(), finite.to(index.dtype)]).cpu()  # the one sync
        if bool(read[-2]) or not bool(read[-1]):
            break
    hard = F.one_hot(index, alpha.shape[-1]).to(probs.dtype)
    mask = F.one_hot(read[:-2].view(index.shape), alpha.shape[-1]).bool()
    return hard - probs.detach() + probs, mask


def straight_through_gumbel_on_device(alpha: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """:func:`straight_through_gumbel` with the sample kept on α's device: the same
    noise and weights, the mask a device tensor (for ``SuperNet.forward(sampled=…)``),
    nothing read on the host. The noise is finite (redrawn on the CPU), so p̃ is finite
    whenever α is; a non-finite α gives a non-finite loss, which ends the run as diverged."""
    probs, index = _gumbel_max(alpha, tau)
    hard = F.one_hot(index, alpha.shape[-1]).to(probs.dtype)
    return hard - probs.detach() + probs, hard.bool()


def _gumbel_max(alpha: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """p̃ = softmax((log_softmax(α) + g)/τ) and its argmax per row, on α's device."""
    noise = to_device(gumbel_noise(alpha.shape, alpha.dtype), alpha.device)
    probs = ((alpha.log_softmax(-1) + noise) / tau).softmax(-1)
    return probs, probs.detach().argmax(-1)


def dirichlet_sample(concentration: Tensor) -> Tensor:
    """A pathwise (reparameterised) Dirichlet sample per row (DrNAS): gradients reach
    the concentration through ``rsample``'s implicit reparameterisation. Drawn where
    the concentration is (on a CPU the same numbers as before; no host sync on CUDA)."""
    # validate_args=False: the check that β > 0 reads the device (β = ELU + 1 is > 0)
    return torch.distributions.Dirichlet(concentration, validate_args=False).rsample()
