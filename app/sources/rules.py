"""Property rules, as plain functions over a report card and plain values.

All rules are checked for all properties of a request before anything is written, and every
broken rule becomes one entry of ``details``. Messages about a credential never repeat its value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from anyascii import anyascii
from jsonschema.exceptions import ValidationError, best_match

from ..catalog.cards import PropertySpec, ReportCard
from ..catalog.formats import FORMAT_WORDS
from ..catalog.patterns import pattern_words

# (card, the source's properties as they would be after the change) -> problems: where the
# connections those properties name would go, refused by the network rules (the connector registry's
# ``destination_problems``, handed in by the caller so this module stays pure).
DestinationRule = Callable[[ReportCard, Mapping[str, Any]], list[dict[str, str]]]

NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_$]*$")
NAME_MAX = 49  # "under 50 characters"


def derive_name(display_name: str) -> str:
    """Stitch's rule: lower case, every run of other characters becomes ``_``; cut to fit.

    Letters beyond ASCII are transliterated first (anyascii: "Ünïcödé Nämé" → ``unicode_name``,
    "北京" → ``beijing``), so a name keeps its words instead of collapsing into underscores."""
    name = re.sub(r"[^a-z0-9]+", "_", anyascii(display_name).lower()).strip("_")
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


def _problem(prop: str, reason: str) -> dict[str, str]:
    return {"property": prop, "field": f"properties.{prop}", "reason": reason}


def _schema_reason(spec: PropertySpec, value: Any) -> str | None:
    if spec.validator is None:
        # A null json_schema means "any string" (REPORT_CARDS.md).
        if spec.json_schema is None and not isinstance(value, str):
            return f"must be a string, got {_json_type(value)}"
        return None
    error = best_match(spec.validator.iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p!r}]" for p in error.absolute_path)
    words = _error_words(error, value, with_cause=not spec.is_credential)
    if words is not None:
        return f"value{where} {words}" if where else words
    if spec.is_credential:
        # jsonschema messages quote the instance; for a credential say only what was wrong.
        return f"value{where} fails the {error.validator!r} rule of its json_schema"
    return error.message


_TYPE_WORDS = {"string": "a string", "integer": "a whole number", "number": "a number",
               "boolean": "true or false (a JSON boolean)", "array": "a list", "object": "an object",
               "null": "null"}


def _schema_words(schema: Any) -> str:
    """What a value of a (sub)schema looks like, for "must be …"."""
    if not isinstance(schema, Mapping):
        return "a valid value"
    if isinstance(schema.get("format"), str) and schema["format"] in FORMAT_WORDS:
        return FORMAT_WORDS[schema["format"]]
    if isinstance(schema.get("pattern"), str):
        return pattern_words(schema["pattern"])
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list | tuple):
        return " or ".join(dict.fromkeys(_schema_words(b) for b in branches))
    declared = schema.get("type")
    if isinstance(declared, list | tuple):
        return " or ".join(_TYPE_WORDS.get(t, t) for t in declared)
    return _TYPE_WORDS.get(declared, "a valid value") if isinstance(declared, str) else "a valid value"


def _error_words(error: ValidationError, value: Any, *, with_cause: bool) -> str | None:
    """A schema failure in words (never a regular expression or a schema), or None: the
    validator's own message says it well enough (lengths, required keys, unexpected keys)."""
    if error.validator == "format":
        words = f"must be {FORMAT_WORDS.get(str(error.validator_value), 'a ' + str(error.validator_value))}"
        cause = str(error.cause) if error.cause is not None and with_cause else ""
        return f"{words}: {cause}" if cause else words
    if error.validator in ("pattern", "anyOf", "oneOf"):
        return f"must be {_schema_words(error.schema)}"
    if error.validator == "type":
        return f"must be {_schema_words(error.schema)}, got {_json_type(error.instance)}"
    if error.validator == "enum":
        return "must be one of " + ", ".join(str(v) for v in error.validator_value)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def check_properties(
    card: ReportCard,
    incoming: Mapping[str, Any],
    current: Mapping[str, Any],
    destinations: DestinationRule | None = None,
) -> list[dict[str, str]]:
    """Problems with setting ``incoming`` on a source whose provided values are ``current``.

    ``current`` maps provided property names to values (credentials to a sentinel: their values
    are never compared). ``None`` in ``incoming`` clears a property. ``destinations``, when given,
    judges the host and port the resulting properties name (a refused literal address, an absurd
    port), for properties without a problem of their own.
    """
    problems = _property_problems(card, incoming, current)
    if destinations is not None and incoming:
        merged = {**current, **incoming}
        flagged = {p["property"] for p in problems}
        problems += [p for p in destinations(card, {k: v for k, v in merged.items() if v is not None})
                     if p["property"] not in flagged]
    return problems


def _property_problems(card: ReportCard, incoming: Mapping[str, Any],
                       current: Mapping[str, Any]) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    for name, value in incoming.items():
        spec = card.properties.get(name)
        if spec is None:
            problems.append(_problem(name, f"not a property of source type {card.type!r}"))
            continue
        if spec.is_read_only:
            problems.append(_problem(name, "read-only: the service sets it"))
            continue
        if spec.property_type == "user_provided_immutable" and name in current:
            if value is None or value != current[name]:
                problems.append(_problem(name, "immutable: it cannot change once set"))
            continue
        if value is None:
            continue
        if isinstance(value, str) and value == "":
            problems.append(_problem(name, "must not be empty; send null to clear it"))
            continue
        reason = _schema_reason(spec, value)
        if reason is not None:
            problems.append(_problem(name, reason))
    return problems
