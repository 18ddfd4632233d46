"""The form of a report card as HTML inputs, and posted form values back as property values.

Pure functions over a loaded card. What the user sees comes from the card: each property's
``title`` and ``description`` (JSON Schema annotations in its ``json_schema``) and the private
``form_layout`` (order, groups, labels of closed lists); a card without a layout (an operator's
own) is laid out by property type. The page only turns strings into JSON values; whether a value
is acceptable is decided by the card's ``json_schema`` and, when saving, by the sources service's
property rules, so no rule lives here twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..catalog.cards import PropertySpec, ReportCard
from ..catalog.formats import FORMAT_WORDS
from ..catalog.patterns import is_boolean_pattern, literal_options, pattern_words
from ..connectors.base import Availability
from ..connectors.registry import get_connectors

EDITABLE_PROPERTY_TYPES = ("user_provided", "user_provided_immutable", "user_provided_advanced")
# Input types for string formats a browser knows; other formats are text with a hint.
FORMAT_INPUTS = {"email": "email", "uri": "url"}
# The groups of a card without a form_layout.
DEFAULT_GROUPS = (
    {"id": "required", "title": "Settings"},
    {"id": "optional", "title": "Optional settings"},
    {"id": "advanced", "title": "Advanced settings", "folded": True},
)


@dataclass(frozen=True)
class FormField:
    """One input of the page's form, described from a property of the card."""

    name: str
    label: str
    widget: str  # text | password | email | url | number | select | checkbox | json
    required: bool
    advanced: bool
    credential: bool
    immutable: bool
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    hint: str | None = None
    group: str = "required"
    boolean_string: bool = False  # a checkbox whose values are the strings "true" / "false"
    empty_label: str = "Choose…"


@dataclass(frozen=True)
class FormGroup:
    id: str
    title: str
    folded: bool
    fields: tuple[FormField, ...]


def label_of(name: str) -> str:
    """``start_date`` → ``Start date``: for a property whose schema has no title."""
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


def _words(schema: Mapping[str, Any], formats: list[str]) -> str | None:
    """What a value looks like, in words (never the pattern itself)."""
    known = [FORMAT_WORDS[f] for f in formats if f in FORMAT_WORDS]
    if known:
        return " or ".join(known)
    pattern = schema.get("pattern")
    return pattern_words(pattern) if isinstance(pattern, str) else None


def _choices(schema: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A closed list (an enum of strings, or a pattern of literals) with readable labels."""
    values: tuple[str, ...] | None = None
    if isinstance(schema.get("enum"), list | tuple) and all(isinstance(v, str) for v in schema["enum"]):
        values = tuple(schema["enum"])
    elif isinstance(schema.get("pattern"), str):
        values = literal_options(schema["pattern"])
    return tuple((value, labels.get(value, value)) for value in values or ())


def _widget(spec: PropertySpec, schema: Mapping[str, Any], kind: str | None, formats: list[str],
            choices: tuple[tuple[str, str], ...]) -> str:
    pattern = schema.get("pattern") if isinstance(schema.get("pattern"), str) else None
    if spec.is_credential:
        return "password"
    if kind == "boolean" or is_boolean_pattern(pattern):
        return "checkbox"
    if choices:
        return "select"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("array", "object"):
        return "json"
    if len(formats) == 1 and formats[0] in FORMAT_INPUTS:
        return FORMAT_INPUTS[formats[0]]
    return "text"


def _default_group(spec: PropertySpec) -> str:
    if spec.property_type == "user_provided_advanced":
        return "advanced"
    return "required" if spec.is_required else "optional"


def form_field(spec: PropertySpec, layout: Mapping[str, Any] | None = None,
               card: ReportCard | None = None) -> FormField:
    """The input for one property; ``layout`` is its entry in the card's form_layout."""
    layout = layout or {}
    schema = spec.json_schema if isinstance(spec.json_schema, Mapping) else {}
    kind = _primary_type(schema)
    formats = _formats(schema)
    labels = {o["value"]: o["label"] for o in layout.get("options") or ()}
    choices = _choices(schema, labels)
    widget = _widget(spec, schema, kind, formats, choices)
    description = schema.get("description") if isinstance(schema.get("description"), str) else None
    words = None if widget in ("select", "checkbox") else _words(schema, formats)
    hint = description or (f"Expected: {words}" if words else None)
    if widget == "json" and not description:
        hint = f"JSON ({kind})"
    title = given if isinstance(given := schema.get("title"), str) else label_of(spec.name)
    group = str(layout.get("group") or _default_group(spec))
    return FormField(
        name=spec.name, label=title, widget=widget, required=spec.is_required,
        advanced=group in ("advanced", "ssh"), credential=spec.is_credential,
        immutable=spec.property_type == "user_provided_immutable",
        options=choices if widget == "select" else (), hint=hint, group=group,
        boolean_string=widget == "checkbox" and kind != "boolean",
        empty_label=_empty_label(spec, card, labels))


def _empty_label(spec: PropertySpec, card: ReportCard | None, labels: Mapping[str, str]) -> str:
    """The empty choice of an optional select: the type's default where the card says it."""
    if spec.name == "frequency_in_minutes" and card is not None:
        default = card.details.get("default_scheduling_interval")
        if default is not None and str(default) in labels:
            return f"Default ({labels[str(default)].lower()})"
    return "Choose…"


def form_fields(card: ReportCard) -> list[FormField]:
    """The inputs of the page's form, in display order: what the user provides (the service and
    the sign-in step fill the rest)."""
    layout = card.form_layout
    if layout:
        return [form_field(card.properties[entry["name"]], entry, card) for entry in layout["fields"]
                if entry["name"] in card.properties]
    step = card.step("form")
    if step is None:
        return []
    return [form_field(p, None, card) for p in step.properties if p.property_type in EDITABLE_PROPERTY_TYPES]


def form_groups(card: ReportCard, fields: list[FormField]) -> list[FormGroup]:
    """The fields in their groups, in the layout's group order; empty groups left out."""
    groups = card.form_layout["groups"] if card.form_layout else DEFAULT_GROUPS
    return [FormGroup(str(g["id"]), str(g["title"]), bool(g.get("folded")),
                      tuple(f for f in fields if f.group == g["id"]))
            for g in groups if any(f.group == g["id"] for f in fields)]


def docs_url(card: ReportCard) -> str | None:
    """The type's setup guide, where the card names one."""
    return card.form_layout.get("docs_url") if card.form_layout else None


def availability(card: ReportCard) -> Availability:
    """Whether this deployment can take a source of this type to the end (check and discovery), in
    the end user's words: the registry's reason (app/connectors/registry.py) is for the integrator
    and the operator (a tap to install, a command to run) and stays in the API's report card; the
    person on this page can do nothing about it, so it only says what happens to what they enter."""
    found = get_connectors().availability(card)
    if found.configurable:
        return found
    return Availability(False, f"this service has not finished setting up {card.display_name}. What you enter is "
                               "saved, but the connection cannot be checked or its data found until it has")


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


def _checkbox_value(field: FormField, checked: bool, provided: frozenset[str]) -> bool | str | None:
    """What a checkbox saves: a JSON boolean, or the strings "true"/"false" Stitch's cards use.
    None leaves the property alone: an immutable one already set (its box is disabled, so it posts
    nothing), or an unticked box of a property never set (absent already means false)."""
    if field.immutable and field.name in provided:
        return None
    if not checked and field.name not in provided and not field.required:
        return None
    if field.boolean_string:
        return "true" if checked else "false"
    return checked


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
            value = _checkbox_value(field, posted.get(field.name) == "on", provided)
            if value is not None:
                values[field.name] = value
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
