"""The names of the selections (the config field ``select``), without torch.

:mod:`harness.config` checks ``select`` against :data:`NAMES` at plan time, before
anything heavy is imported; :data:`harness.select.SELECTIONS` implements one selection
per name (tests/test_select.py holds the two equal).
"""

from __future__ import annotations

NAMES = ("argmax", "pt")
"""``argmax``: per edge the op with the largest weight (``Method.derive``); ``pt``:
DARTS-PT's perturbation-based selection (docs/selection.md)."""

ALWAYS = "argmax"
"""The selection every run records beside the configured one: the gap is measured on it."""
