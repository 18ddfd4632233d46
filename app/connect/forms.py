"""The ``form`` step of a report card as HTML inputs, and posted form values back as property values.

Pure functions over a loaded card. The page only turns strings into JSON values; whether a value is
acceptable is decided by the card's ``json_schema`` (through the validator the catalog compiled)
and, when saving, by the sources service's property rules, so no rule lives here twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog.cards import PropertySpec, ReportCard

EDITABLE_PROPERTY_TYPES = ("user_provided", "user_provided_immutable", "user_provided_advanced")
# Input types for string formats a browser knows; other formats get a hint next to a text input.
FORMAT_INPUTS = {"email": "email", "uri": "url"}
FORMAT_HINTS = {
    "date-time": "A date and time such as 2024-01-31T00:00:00Z",
    "date": "A date such as 2024-01-31",
    "email": "An email address",
    "uri": "A URL such as https://example.com",
    "hostname": "A host name such as db.example.com",
    "ipv4": "An IPv4 address such as 10.0.0.1",
}


@dataclass(frozen=True)
class FormField:
    """One input of the page's form, described from a property of the card's form step."""

    name: str
    label: str
    widget: str  # text | password | email | url | number | select | checkbox | json
    required: bool
    advanced: bool
    credential: bool
    immutable: bool
    options: tuple[str, ...] = ()
    pattern: str | None = None
    hint: str | None = None


def label_of(name: str) -> str:
    """``start_date`` → ``Start date`` (cards name properties, they do not title them)."""
    words = name.replace("-", "_").split("_")
    text = " ".join(w for w in words if w)
    return text[:1].upper() + text[1:] if text else name


def _primary_type(schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    if isinstance(declared, list | tuple):
        return next((t for t in declared if t != "null"), None)
    for branch in schema.get("anyOf") or schema.get("oneOf") or ():
        if isinstance(branch, Mapping) and isinstance(kind := branch.get("type"), str):
            return kind
    return None


def _formats(schema: Mapping[str, Any]) -> list[str]:
    found = [schema["format"]] if isinstance(schema.get("format"), str) else []
    for branch in schema.get("anyOf") or schema.get("oneOf") or ():
        if isinstance(branch, Mapping) and isinstance(branch.get("format"), str):
            found.append(branch["format"])
    return found


def form_field(spec: PropertySpec) -> FormField:
    schema = spec.json_schema if isinstance(spec.json_schema, Mapping) else {}
    kind = _primary_type(schema)
    formats = _formats(schema)
    hint = " or ".join(FORMAT_HINTS[f] for f in formats if f in FORMAT_HINTS) or None
    options: tuple[str, ...] = ()
    if spec.is_credential:
        widget = "password"
    elif isinstance(schema.get("enum"), list | tuple) and all(isinstance(v, str) for v in schema["enum"]):
        widget, options = "select", tuple(schema["enum"])
    elif kind == "boolean":
        widget = "checkbox"
    elif kind in ("integer", "number"):
        widget = "number"
    elif kind in ("array", "object"):
        widget, hint = "json", f"JSON ({kind})"
    elif len(formats) == 1 and formats[0] in FORMAT_INPUTS:
        widget = FORMAT_INPUTS[formats[0]]
    else:
        widget = "text"
    pattern = schema.get("pattern") if isinstance(schema.get("pattern"), str) else None
    return FormField(
        name=spec.name, label=label_of(spec.name), widget=widget, required=spec.is_required,
        advanced=spec.property_type == "user_provided_advanced", credential=spec.is_credential,
        immutable=spec.property_type == "user_provided_immutable", options=options,
        pattern=pattern, hint=hint)


def form_fields(card: ReportCard) -> list[FormField]:
    """The inputs of the card's form step: what the user provides (the service fills the rest)."""
    step = card.step("form")
    if step is None:
        return []
    return [form_field(p) for p in step.properties if p.property_type in EDITABLE_PROPERTY_TYPES]


def _candidates(field: FormField, raw: str) -> list[Any]:
    """JSON values a typed string may stand for, the likeliest first."""
    if field.widget == "json":
        return [json.loads(raw)]
    values: list[Any] = []
    try:
        values.append(int(raw))
    except ValueError:
        pass
    try:
        number = float(raw)
        if number == number and number not in (float("inf"), float("-inf")):
            values.append(number)
    except ValueError:
        pass
    if field.widget == "number":
        return [*values, raw]
    return [raw, *values]


def property_values(
    card: ReportCard, fields: list[FormField], posted: Mapping[str, str], provided: frozenset[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(property values to save, errors by field name) from a posted form.

    An empty input means "not given": it is left out, so a saved credential is kept and an optional
    property is not touched. A required property that is neither given nor provided is an error.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        spec = card.properties[field.name]
        if field.widget == "checkbox":
            values[field.name] = posted.get(field.name) == "on"
            continue
        raw = (posted.get(field.name) or "").strip() if not field.credential else posted.get(field.name) or ""
        if raw == "":
            if field.required and field.name not in provided:
                errors[field.name] = "is required"
            continue
        try:
            candidates = _candidates(field, raw)
        except ValueError:
            errors[field.name] = "is not valid JSON"
            continue
        # The first reading the schema accepts; else the first one, for the service to refuse
        # with the schema's own reason.
        validator = spec.validator
        values[field.name] = next((c for c in candidates if validator is None or validator.is_valid(c)),
                                  candidates[0])
    return values, errors


def shown_value(value: Any) -> str:
    """A stored non-credential value as the text of its input."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)
