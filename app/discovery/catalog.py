"""Singer catalog entries and the selection rules, as pure functions.

Breadcrumbs follow Singer: ``[]`` is the stream, ``["properties", "<field>"]`` a top-level field.
The one effective-selection rule (API.md): automatic → on; unsupported → off; else the explicit
``selected``, else ``selected-by-default``, else off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import Problem

WRITABLE_KEYS = ("selected", "replication-method", "replication-key")
REPLICATION_METHODS = ("FULL_TABLE", "INCREMENTAL", "LOG_BASED")


def breadcrumb_key(breadcrumb: list[str]) -> str:
    return json.dumps(list(breadcrumb), separators=(",", ":"))


def effective_selected(metadata: Mapping[str, Any], selection: Mapping[str, Any]) -> bool:
    inclusion = metadata.get("inclusion")
    if inclusion == "automatic":
        return True
    if inclusion == "unsupported":
        return False
    if "selected" in selection:
        return bool(selection["selected"])
    return bool(metadata.get("selected-by-default", False))


def merged_metadata(discovered: list[dict[str, Any]], selections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Discovered metadata with the client's writes laid over it and the effective ``selected``."""
    merged = []
    for entry in discovered:
        selection = selections.get(breadcrumb_key(entry["breadcrumb"]), {})
        metadata = {**entry["metadata"], **selection}
        metadata["selected"] = effective_selected(entry["metadata"], selection)
        merged.append({"breadcrumb": entry["breadcrumb"], "metadata": metadata})
    return merged


def shown_selected(discovered: list[dict[str, Any]], selections: Mapping[str, Any]) -> bool | None:
    """A stream's ``selected`` as Stitch's Stream object shows it: ``null`` for a stream nobody has
    chosen either way, else what was chosen; a stream that is on without a choice (automatic, or
    selected by default) shows ``true``, since it will be synced. The step machine does not read
    this: it reads the effective selection (:func:`stream_selected`), kept in ``streams.selected``."""
    choice = selections.get(breadcrumb_key([]), {})
    if "selected" in choice:
        return stream_selected(discovered, selections)
    return True if stream_selected(discovered, selections) else None


def stream_level_metadata(discovered: list[dict[str, Any]], selections: Mapping[str, Any]) -> dict[str, Any]:
    """The stream's own metadata (breadcrumb ``[]``) with the client's writes, as the entries of
    ``GET …/streams`` carry it; ``selected`` as :func:`shown_selected` says, absent when null."""
    stream_entry = next(e for e in discovered if e["breadcrumb"] == [])
    metadata = {**stream_entry["metadata"], **selections.get(breadcrumb_key([]), {})}
    metadata.pop("selected", None)
    shown = shown_selected(discovered, selections)
    if shown is not None:
        metadata["selected"] = shown
    return metadata


def stream_selected(discovered: list[dict[str, Any]], selections: Mapping[str, Any]) -> bool:
    stream_entry = next(e for e in discovered if e["breadcrumb"] == [])
    return effective_selected(stream_entry["metadata"], selections.get(breadcrumb_key([]), {}))


def selection_problems(
    tap_stream_id: str,
    discovered: list[dict[str, Any]],
    current: Mapping[str, Any],
    writes: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[Problem]]:
    """Apply ``writes`` to ``current`` selections; return (new selections, problems)."""
    by_key = {breadcrumb_key(e["breadcrumb"]): e["metadata"] for e in discovered}
    selections = {k: dict(v) for k, v in current.items()}
    problems: list[Problem] = []

    def problem(breadcrumb: Any, reason: str) -> None:
        problems.append(Problem(f"streams[{tap_stream_id}].metadata{json.dumps(breadcrumb)}", reason))

    for write in writes:
        breadcrumb = write.get("breadcrumb")
        key = breadcrumb_key(breadcrumb) if isinstance(breadcrumb, list) else None
        if key is None or key not in by_key:
            problem(breadcrumb, "unknown breadcrumb")
            continue
        discovered_entry = by_key[key]
        values = write.get("metadata") or {}
        for name in values:
            if name not in WRITABLE_KEYS:
                problem(breadcrumb, f"metadata key {name!r} cannot be written (writable: {', '.join(WRITABLE_KEYS)})")
        if values.get("selected") is True and discovered_entry.get("inclusion") == "unsupported":
            problem(breadcrumb, "unsupported: it cannot be selected")
        if "selected" in values and not isinstance(values["selected"], bool):
            problem(breadcrumb, "selected must be true or false")
        if breadcrumb != [] and ("replication-method" in values or "replication-key" in values):
            problem(breadcrumb, "replication settings belong to the stream (breadcrumb [])")
        method = values.get("replication-method")
        if method is not None:
            forced = discovered_entry.get("forced-replication-method")
            if method not in REPLICATION_METHODS:
                problem(breadcrumb, f"replication-method must be one of {', '.join(REPLICATION_METHODS)}")
            elif forced and method != forced:
                problem(breadcrumb, f"replication-method is forced to {forced}")
        replication_key = values.get("replication-key")
        if replication_key is not None and breadcrumb == []:
            valid = discovered_entry.get("valid-replication-keys") or []
            if replication_key not in valid:
                problem(breadcrumb, f"replication-key {replication_key!r} is not one of the valid "
                                    f"replication keys {valid}")
        selections[key] = {**selections.get(key, {}), **{k: v for k, v in values.items() if k in WRITABLE_KEYS}}
    stream_choice = selections.get(breadcrumb_key([]), {})
    if stream_choice.get("replication-method") == "INCREMENTAL" and not stream_choice.get("replication-key"):
        problem([], "INCREMENTAL replication needs a replication-key")
    return selections, problems


def carry_selections(old_selections: Mapping[str, Any], discovered: list[dict[str, Any]]) -> dict[str, Any]:
    """Selections that still apply after re-discovery (their breadcrumb still exists)."""
    keys = {breadcrumb_key(e["breadcrumb"]) for e in discovered}
    return {k: v for k, v in old_selections.items() if k in keys}
