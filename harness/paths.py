"""Finding the data directory: ``--data-dir``, then ``$HARNESS_DATA``, then pyproject.

The data directory holds ``cifar10/cifar-10-batches-py`` and ``nb201/``. The
project never copies it; it is configured, and a missing one is a clear error.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from harness.errors import UsageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS, REPORTS = "out/results", "out/reports"
"""Where ``run`` writes runs and ``report`` reads them and writes reports, by default.
``out/`` is ignored by git, so a user's sweeps never mix with the committed evidence
(``results/``, ``reports/``), which is only written when named (``--results results``)."""
TABLE_RELPATH = Path("nb201") / "nb201_table.csv"
ENV_VAR = "HARNESS_DATA"


def configured_dirs() -> list[Path]:
    """The ``[tool.harness] data_dirs`` of the project's pyproject.toml, made absolute."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if not pyproject.is_file():
        return []
    with pyproject.open("rb") as handle:
        settings = tomllib.load(handle).get("tool", {}).get("harness", {})
    return [(PROJECT_ROOT / entry).resolve() for entry in settings.get("data_dirs", [])]


def find_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The first data directory that holds the NB201 table, or a :class:`UsageError`."""
    if explicit:
        candidates, source = [Path(explicit)], "--data-dir"
    elif os.environ.get(ENV_VAR):
        candidates, source = [Path(os.environ[ENV_VAR])], f"${ENV_VAR}"
    else:
        candidates, source = configured_dirs(), "[tool.harness] data_dirs in pyproject.toml"
    for candidate in candidates:
        if (candidate / TABLE_RELPATH).is_file():
            return candidate.resolve()
    looked = ", ".join(str(c / TABLE_RELPATH) for c in candidates) or "(no directory configured)"
    raise UsageError(
        f"no NAS-Bench-201 table found (looked for {looked}, from {source}); "
        f"pass --data-dir DIR or set {ENV_VAR}=DIR, where DIR holds nb201/ and cifar10/"
    )
