"""Which runs one row pools: rows split by config, rows that read the same runs, and
the integrity warnings a reader must see before trusting a group's numbers.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness import rundir
from harness.config import ONLY_FOR_SELECTION
from harness.report.table import column_of

# --- which runs one row pools ------------------------------------------------------------
NOT_COMPARED = ("seed", "method", "preset", "dataset", rundir.TABLE_KEY, *rundir.EXECUTION_FIELDS)
"""Config keys that never split a row: the seed (a row pools seeds), the row's own
grouping, the table (flagged apart, see :func:`integrity_warnings`) and execution
fields (they change speed, not results)."""
OPTIONS = "method_options."
ABSENT = "(absent)"


def protocol(config: Any) -> dict[str, str] | None:
    """A run's config as rows compare it: flat, values as JSON text, bar NOT_COMPARED;
    None where the run recorded no config. A field added after the run was made reads
    as its old behaviour (``BEFORE_FIELD``), as a resume does, so an older run pools
    with newer runs that behave the same; a field only another selection reads
    (``ONLY_FOR_SELECTION``: DARTS-PT's for an argmax row) is left out."""
    if not isinstance(config, dict):
        return None
    flat = rundir.flat_recorded(config)
    select = flat.get("select", "argmax")
    unread = {k for k, owner in ONLY_FOR_SELECTION.items() if owner != select}
    return {
        k: json.dumps(v, sort_keys=True)
        for k, v in flat.items()
        if k not in NOT_COMPARED and k not in unread
    }


def _varying(protocols: list[dict[str, str]], keys: set[str]) -> list[str]:
    return sorted(k for k in keys if len({p.get(k, ABSENT) for p in protocols}) > 1)


def _varying_where_read(protocols: list[dict[str, str]], keys: set[str]) -> list[str]:
    """The ``keys`` whose value differs among the protocols that carry them at all."""
    return sorted(k for k in keys if len({p[k] for p in protocols if k in p}) > 1)


def _value_text(value: str) -> str:
    if value == ABSENT:
        return value
    decoded = json.loads(value)
    return decoded if isinstance(decoded, str) else value


def split_by_config(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows pool only runs whose configs are equal apart from seed and execution fields.

    Where configs differ, each run's ``method`` becomes a label naming the differing
    values, e.g. ``darts [epochs=1]``, so no row mixes them and every row shows its
    protocol: shared fields that differ anywhere in the group label every row; a
    method's options label its rows where they differ between its runs. The method
    itself stays in ``base_method``. Returns the frame and a note ('' if nothing differs).
    """
    frame = frame.copy()
    frame["base_method"] = frame["method"]
    protocols = [protocol(c) for c in column_of(frame, "config")]
    known = [p for p in protocols if p is not None]
    apart = set(ONLY_FOR_SELECTION)  # compared only among the rows that read them
    shared = _varying(
        known, {k for p in known for k in p if not k.startswith(OPTIONS) and k not in apart}
    )
    own: dict[str, list[str]] = {}
    for method in frame["method"].unique():
        mine = [p for p, m in zip(protocols, frame["method"], strict=True) if m == method and p]
        own[method] = _varying(mine, {k for p in mine for k in p if k.startswith(OPTIONS)})
        own[method] += _varying_where_read(mine, apart)
    labels = [_label(m, p, shared, own[m]) for m, p in zip(frame["method"], protocols, strict=True)]
    frame["method"] = _place_unknown(frame["method"].tolist(), labels)
    differing = shared + [
        f"{m}.{k.removeprefix(OPTIONS)}" if k.startswith(OPTIONS) else k
        for m in own
        for k in own[m]
    ]
    if not differing:
        return frame, ""
    note = (
        f"Runs with different configs are never pooled: rows are split by {', '.join(differing)} "
        f"(values in brackets); seed and {', '.join(rundir.EXECUTION_FIELDS)} are not compared."
    )
    return frame, note


def _label(
    method: str, protocol_: dict[str, str] | None, shared: list[str], own: list[str]
) -> str | None:
    """``method [key=value, ...]`` for the differing keys (a selection's own keys only on
    the rows that read them); None for an unknown config."""
    apart_keys = set(ONLY_FOR_SELECTION)
    if protocol_ is None:
        return None
    parts = [f"{k}={_value_text(protocol_.get(k, ABSENT))}" for k in shared]
    parts += [
        f"{method}.{k.removeprefix(OPTIONS)}={_value_text(protocol_.get(k, ABSENT))}"
        for k in own
        if k.startswith(OPTIONS)
    ]
    parts += [f"{k}={_value_text(protocol_[k])}" for k in own if k in protocol_ and k in apart_keys]
    return f"{method} [{', '.join(parts)}]" if parts else method


def _place_unknown(methods: list[str], labels: list[str | None]) -> list[str]:
    """A run without a recorded config joins its method's row when the method has at
    most one config, else gets a row of its own (``[config unknown]``)."""
    placed = []
    for method, label in zip(methods, labels, strict=True):
        if label is None:
            seen = {lab for m, lab in zip(methods, labels, strict=True) if m == method and lab}
            if len(seen) > 1:
                label = f"{method} [config unknown]"
            else:
                label = seen.pop() if seen else method
        placed.append(label)
    return placed


def integrity_warnings(
    frame: pd.DataFrame, optimum: dict[str, Any] | None, unreadable: list[dict[str, str]]
) -> list[str]:
    """What a reader must know before trusting the numbers: runs that could not be
    read, and runs looked up in another NB201 table than this report's (or each other's)."""
    lines = [f"unreadable run skipped: {u['path']} ({u['reason']})" for u in unreadable]
    versions = column_of(frame, "table_version").dropna().astype(str)
    if versions.nunique() > 1:
        counts = sorted(versions.value_counts().items(), key=lambda item: (-item[1], item[0]))
        seen = ", ".join(f"{v} ({n} runs)" for v, n in counts)
        lines.append(f"table mismatch: the runs used different NB201 tables: {seen}")
    if optimum is not None:
        other = versions[versions != optimum["version"]]
        if len(other):
            lines.append(
                f"table mismatch: {len(other)} run(s) used {', '.join(sorted(set(other)))}, "
                f"but this report's reference table is {optimum['version']}"
            )
    return lines


def supernet_twins(frame: pd.DataFrame) -> dict[str, str]:
    """Rows that read the same runs (they differ only in a post-search axis such as
    ``select``) → the row with the search's own selection (``argmax``), whose supernet
    statistics, trajectories and α they repeat."""
    paths = {m: frozenset(g["path"]) for m, g in frame.groupby("method", sort=True)}
    selects = {
        m: set(column_of(g, "select").dropna()) for m, g in frame.groupby("method", sort=True)
    }
    twins: dict[str, str] = {}
    for same in {p for p in paths.values() if list(paths.values()).count(p) > 1}:
        rows = sorted(m for m, p in paths.items() if p == same)
        primary = next((m for m in rows if selects[m] == {"argmax"}), rows[0])
        twins.update({m: primary for m in rows if m != primary})
    return twins
