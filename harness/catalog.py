"""The registered methods by name, module and summary, readable without importing torch.

``python -m harness methods`` lists methods from this table, so it answers at once;
importing :mod:`harness.methods` (the registry itself) imports torch and every method.
``tests/test_api.py`` checks that this table equals the registry, so a method added
there and not here (or a summary changed in one place only) fails the tests.
"""

from __future__ import annotations

METHODS: dict[str, tuple[str, str]] = {
    "amended": (
        "harness.methods.amended",
        "Amended-DARTS [I]: ∇_α L_val − η·∇²_{αw}L_tr·H·∇_w L_val by finite differences",
    ),
    "beta_darts": (
        "harness.methods.beta_darts",
        "β-DARTS: α loss + λ_t·mean_e logsumexp(α_e), λ linear 0→50",
    ),
    "cdao": (
        "harness.methods.cdao",
        "DARTS-CDAO [I]: α step on p + λ_t·sg(onehot − p), coarse gradient via STE",
    ),
    "constrained": (
        "harness.methods.constrained",
        "Maile et al. / DARTS-PRIME: dynamic α schedule, prox/ADMM, optional CRB",
    ),
    "da2s": (
        "harness.methods.da2s",
        "DA2S: entropy of softmax(f(α)) with a delayed linear ramp (bilevel or single)",
    ),
    "darts": (
        "harness.methods.darts",
        "DARTS first order: α step on the valid batch at the current weights",
    ),
    "darts2": (
        "harness.methods.darts2",
        "DARTS second order: unrolled virtual step, finite-difference Hessian term",
    ),
    "darts_minus": (
        "harness.methods.darts_minus",
        "DARTS-: auxiliary skip β_t·x on every edge, β linear 1→0; argmax softmax(α)",
    ),
    "drnas": (
        "harness.methods.drnas",
        "DrNAS: Dirichlet edge weights by rsample, L2/KL; progressive option (PC, pruning)",
    ),
    "fairdarts": (
        "harness.methods.fairdarts",
        "FairDARTS: sigmoid(α) weights, α loss + 10·zero-one loss; σ ≥ 0.85 per edge",
    ),
    "gdas": (
        "harness.methods.gdas",
        "GDAS: one Gumbel-max op per edge, straight-through gradient, τ 10→0.1",
    ),
    "pcdarts": (
        "harness.methods.pcdarts",
        "PC-DARTS: mixed op on 1/K of the channels + channel shuffle, α step first",
    ),
    "rdarts": (
        "harness.methods.rdarts",
        "RDARTS [I]: one α per stage, Reg distance between stages with adaptive weight",
    ),
    "rsps": (
        "harness.methods.rsps",
        "random search with parameter sharing: uniform single-path training, best of K",
    ),
    "sdarts_adv": (
        "harness.methods.sdarts",
        "SDARTS-ADV: weight step on softmax(α) + 7-step L∞ PGD δ, ε ramped 0.03→0.3",
    ),
    "sdarts_rs": (
        "harness.methods.sdarts",
        "SDARTS-RS: weight step on clip(softmax(α) + U(−ε, ε)), ε ramped 0.03→0.3",
    ),
    "snas": (
        "harness.methods.snas",
        "SNAS: Gumbel-softmax sample of the cell each forward, τ 10→1 (DrNAS's NB201)",
    ),
}
"""Method name → (the module that registers it, its one-line summary), sorted by name."""


def method_lines() -> list[str]:
    """``methods``' output: one ``name  summary`` line per method."""
    return [f"{name:<12} {summary}" for name, (_, summary) in METHODS.items()]
