"""Marshmallow schemas shared by several blueprints (the error shape, ids, display text)."""

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

# Ids are BIGINT (app/models.py): a larger number can name nothing, and must not reach the database.
MAX_ID = 2**63 - 1

# Numbers written as text (query strings, cursors) are ASCII digits only: Python's int() also reads
# other scripts' digits ("４", "١"), "_" between digits and surrounding spaces, so one id or limit
# would have many spellings.
_ASCII_INTEGER = re.compile("-?[0-9]+")
_ASCII_ID = re.compile("[1-9][0-9]*")

# Bidirectional embeddings, overrides and isolates: they make text display in another order than it
# is stored ("Trojan Source", CVE-2021-42574), so a name shown to a user could pose as another.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def id_field(**kwargs) -> fields.Integer:  # type: ignore[no-untyped-def]
    """An id in a body: an integer (not a string of digits) that fits the database."""
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


def id_from_text(text: str) -> int | None:
    """An id written as text (``"42"``): ASCII digits without sign or leading zero, 1 to MAX_ID;
    None for anything else."""
    if len(text) > len(str(MAX_ID)) or not _ASCII_ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


class TextInteger(fields.Integer):
    """An integer given as text (a query parameter): ASCII digits and an optional minus, nothing
    else ``int()`` would take."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, str) and not _ASCII_INTEGER.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class _DisplayText(validate.Regexp):
    """Names people read: no control characters (newlines, escapes) and no bidi overrides.

    A ``Regexp`` so that the OpenAPI document carries the same rule as a ``pattern`` (apispec
    reads it), with a message per reason."""

    def __init__(self) -> None:
        # Unicode's Cc category is exactly U+0000-U+001F and U+007F-U+009F.
        super().__init__(r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$")

    def __call__(self, value: str) -> str:  # type: ignore[override]
        if any(unicodedata.category(character) == "Cc" for character in value):
            raise ValidationError("must not contain control characters")
        if _BIDI_CONTROLS.search(value):
            raise ValidationError("must not contain bidirectional override characters (U+202A-U+202E, "
                                  "U+2066-U+2069)")
        return value


display_text = _DisplayText()


def utc_representable(value: datetime) -> None:
    """A timestamp the database can hold in UTC (year 1 at +14:00 is not one)."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValidationError("is out of range once converted to UTC") from None


class Timestamp(fields.DateTime):
    """UTC timestamps as ``2026-01-31T12:00:00.123456Z``, the one format of every response."""

    def _serialize(self, value: datetime | None, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        return None if value is None else value.isoformat().replace("+00:00", "Z")


class ErrorDetailSchema(Schema):
    field = fields.String()
    property = fields.String()
    reason = fields.String(required=True)


class ErrorBodySchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.List(fields.Dict(), required=True)


class ApiErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
