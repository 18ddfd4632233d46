"""Property rules, as plain functions over a report card and plain values.

All rules are checked for all properties of a request before anything is written, and every
broken rule becomes one :class:`~app.errors.Problem` (one entry of ``details``). Messages about a
credential never repeat its value. The rules a property's value obeys wherever it comes from (the
request, the OAuth handshake) live here once: :func:`schema_reason` and :func:`changes_immutable`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema.exceptions import best_match

from ..catalog.cards import PropertySpec, ReportCard
from ..errors import Problem

NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_$]*$")
NAME_MAX = 49  # "under 50 characters"


def derive_name(display_name: str) -> str:
    """Stitch's rule: lower case, every run of other characters becomes ``_``; cut to fit."""
    name = re.sub(r"[^a-z0-9]+", "_", display_name.lower()).strip("_")
    if name and name[0].isdigit():
        name = "_" + name
    return name[:NAME_MAX].rstrip("_") if len(name) > NAME_MAX else name


def name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if len(name) > NAME_MAX:
        return f"must be under 50 characters (got {len(name)})"
    if not NAME_PATTERN.match(name):
        return "must be lower-case letters, digits, '_' or '$', starting with a letter or '_'"
    return None


def schema_reason(spec: PropertySpec, value: Any, *, quote_value: bool = True) -> str | None:
    """Why ``value`` does not fit the property's ``json_schema`` (None: it fits).

    A null json_schema means "any string" (REPORT_CARDS.md). jsonschema's messages quote the
    value; for a credential, or when ``quote_value`` is false, the reason says only what was wrong.
    """
    if spec.json_schema is None:
        return None if isinstance(value, str) else f"must be a string, got {_json_type(value)}"
    if spec.validator is None:  # {} or true: anything goes
        return None
    error = best_match(spec.validator.iter_errors(value))
    if error is None:
        return None
    if spec.is_credential or not quote_value:
        where = "".join(f"[{p!r}]" for p in error.absolute_path)
        return f"value{where} fails the {error.validator!r} rule of its json_schema"
    return str(error.message)


def changes_immutable(spec: PropertySpec, stored: Mapping[str, Any], value: Any) -> bool:
    """Whether setting ``value`` (None: clearing) changes an immutable property the source has
    (``stored``: its provided values; a credential's stands for a value never compared equal)."""
    return spec.is_immutable and spec.name in stored and (value is None or value != stored[spec.name])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def check_properties(
    card: ReportCard,
    incoming: Mapping[str, Any],
    current: Mapping[str, Any],
) -> list[Problem]:
    """Problems with setting ``incoming`` on a source whose provided values are ``current``.

    ``current`` maps provided property names to values (credentials to a sentinel: their values
    are never compared). ``None`` in ``incoming`` clears a property.
    """
    problems = [Problem.of_property(name, reason) for name, value in incoming.items()
                if (reason := _property_reason(card, name, value, current)) is not None]
    return problems


def _property_reason(card: ReportCard, name: str, value: Any, current: Mapping[str, Any]) -> str | None:
    spec = card.properties.get(name)
    if spec is None:
        return f"not a property of source type {card.type!r}"
    if spec.is_read_only:
        return "read-only: the service sets it"
    if spec.is_immutable and name in current:
        return "immutable: it cannot change once set" if changes_immutable(spec, current, value) else None
    if value is None:
        return None
    if isinstance(value, str) and value == "":
        return "must not be empty; send null to clear it"
    return schema_reason(spec, value)
