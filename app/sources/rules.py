"""Property rules, as plain functions over a report card and plain values.

All rules are checked for all properties of a request before anything is written, and every
broken rule becomes one :class:`~app.errors.Problem` (one entry of ``details``). Messages about a
credential never repeat its value. The rules a property's value obeys wherever it comes from (the
request, the OAuth handshake) live here once: :func:`schema_reason` and :func:`changes_immutable`.
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
from ..errors import Problem

# (card, the source's properties as they would be after the change) -> problems: where the
# connections those properties name would go, refused by the network rules (the connector registry's
# ``destination_problems``, handed in by the caller so this module stays pure).
DestinationRule = Callable[[ReportCard, Mapping[str, Any]], list[Problem]]

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
    quote_value = quote_value and not spec.is_credential
    where = "".join(f"[{p!r}]" for p in error.absolute_path)
    words = _error_words(error, value, with_cause=quote_value)
    if words is not None:
        return f"value{where} {words}" if where else words
    if not quote_value:
        return f"value{where} fails the {error.validator!r} rule of its json_schema"
    return str(error.message)


def changes_immutable(spec: PropertySpec, stored: Mapping[str, Any], value: Any) -> bool:
    """Whether setting ``value`` (None: clearing) changes an immutable property the source has
    (``stored``: its provided values; a credential's stands for a value never compared equal)."""
    return spec.is_immutable and spec.name in stored and (value is None or value != stored[spec.name])


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
        return " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in declared)
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
        allowed = error.validator_value if isinstance(error.validator_value, list | tuple) else ()
        return "must be one of " + ", ".join(str(v) for v in allowed)
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
) -> list[Problem]:
    """Problems with setting ``incoming`` on a source whose provided values are ``current``.

    ``current`` maps provided property names to values (credentials to a sentinel: their values
    are never compared). ``None`` in ``incoming`` clears a property. ``destinations``, when given,
    judges the host and port the resulting properties name (a refused literal address, an absurd
    port), for properties without a problem of their own.
    """
    problems = [Problem.of_property(name, reason) for name, value in incoming.items()
                if (reason := _property_reason(card, name, value, current)) is not None]
    if destinations is not None and incoming:
        merged = {**current, **incoming}
        flagged = {p.property for p in problems}
        problems += [p for p in destinations(card, {k: v for k, v in merged.items() if v is not None})
                     if p.property not in flagged]
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
