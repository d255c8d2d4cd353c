"""The ``paper`` preset applies each method's published protocol and only there
(docs/methods.md, "The protocol `paper` runs"), and PC-DARTS's own protocol is a valid
``--set`` line.
"""

from __future__ import annotations

import pytest

from harness.methods import method_class

pytestmark = pytest.mark.usefixtures("float64_default")


# --- published protocols ---------------------------------------------------------------------
AUTODL = {"epochs": 50, "w_weight_decay": 5e-4, "w_nesterov": True}
AUTODL_DATA = {"split": "nb201", "track_running_stats": False}
LINEAGE_2 = {
    "epochs": 100,
    "w_weight_decay": 3e-4,
    "w_nesterov": False,
    "split": "halves",
    "track_running_stats": True,
}
PAPER_PROTOCOLS = {  # docs/methods.md, "The protocol `paper` runs", with each source line
    "darts": {**AUTODL, **AUTODL_DATA},
    "gdas": {**AUTODL, **AUTODL_DATA, "epochs": 250},  # AutoDL GDAS.config
    "rsps": {**AUTODL, **AUTODL_DATA, "epochs": 250},  # AutoDL RANDOM.config
    "snas": LINEAGE_2,  # DrNAS 201-space/train_search.py
    "drnas": LINEAGE_2,
    "pcdarts": LINEAGE_2,
    "beta_darts": LINEAGE_2,  # Beta-DARTS nasbench201/train_search.py
    "sdarts_rs": LINEAGE_2,  # SmoothDARTS nasbench201/train_search.py
    "sdarts_adv": LINEAGE_2,
    "darts_minus": {**AUTODL, **AUTODL_DATA},  # DARTS- published no NB201 search
    "fairdarts": {**AUTODL, **AUTODL_DATA},  # FairDARTS published no NB201 search
}


@pytest.mark.parametrize("name", sorted(PAPER_PROTOCOLS))
def test_paper_protocols_apply_under_the_paper_preset_only(name: str) -> None:
    from harness.config import resolve

    options = method_class(name).Options
    paper = resolve("paper", name, {}, options)
    fields = PAPER_PROTOCOLS[name]
    assert {k: getattr(paper, k) for k in fields} == fields, name
    smoke = resolve("smoke", name, {}, options)
    assert (smoke.w_weight_decay, smoke.epochs, smoke.split) == (5e-4, 3, "nb201"), name
    assert smoke.track_running_stats is False


def test_the_original_pc_darts_protocol_is_a_valid_set_line() -> None:
    """docs/methods.md's `--set` line for PC-DARTS's own protocol resolves as written."""
    from harness.config import resolve

    line = "epochs=50 batch_size=256 w_lr=0.1 w_lr_min=0 w_weight_decay=3e-4"
    line += " w_nesterov=false a_lr=6e-4 warmup_epochs=15 split=halves"
    overrides = dict(item.split("=") for item in line.split())
    config = resolve("paper", "pcdarts", overrides, method_class("pcdarts").Options)
    assert (config.epochs, config.batch_size, config.warmup_epochs) == (50, 256, 15)
    assert (config.a_lr, config.w_lr, config.w_lr_min, config.split) == (6e-4, 0.1, 0, "halves")
    assert config.track_running_stats is True  # still DrNAS's lineage-2 BN under paper
