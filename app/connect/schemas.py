"""Request and response bodies of ``/v4/connect/sessions``.

``display`` is rendered into the page, so every value is held to a narrow shape here: a short
title without control characters, a ``#rrggbb`` colour, and a logo that is an https URL or a path
on this service (the page's Content-Security-Policy allows images from nowhere else).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate

from ..schemas import Timestamp, display_text, id_field

TITLE_MAX = 80
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Printable ASCII without space, quote characters, angle brackets and backslash.
_URL_CHARACTERS = re.compile(r"^[\x21\x23-\x26\x28-\x3b\x3d\x3f-\x5b\x5d-\x7e]+$")


def _no_control_characters(value: str) -> None:
    if _CONTROL_CHARACTERS.search(value):
        raise ValidationError("must not contain control characters or line breaks")


def logo_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be a logo: it must be ``https://host/…`` or a path on this service."""
    if not _URL_CHARACTERS.match(value):
        return "has spaces, quotes, angle brackets, backslashes or non-ASCII characters"
    if value.startswith("/") and not value.startswith("//"):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL or a path on this service starting with '/'"
    if "@" in parts.netloc:
        return "must not carry user information ('user@host')"
    return None


def _logo_url(value: str) -> None:
    problem = logo_url_problem(value)
    if problem:
        raise ValidationError(problem)


class DisplaySchema(Schema):
    title = fields.String(allow_none=True, validate=[validate.Length(min=1, max=TITLE_MAX), _no_control_characters,
                                                     display_text],
                          metadata={"description": f"Shown as the page's heading (at most {TITLE_MAX} characters)."})
    logo_url = fields.String(allow_none=True, validate=[validate.Length(max=2048), _logo_url],
                             metadata={"description": "An https URL, or a path on this service."})
    primary_color = fields.String(allow_none=True, validate=validate.Regexp(
        r"^#[0-9a-fA-F]{6}$", error="must be a colour in the form #rrggbb"),
        metadata={"description": "Buttons, links and focus rings; text on it is black or white, "
                                 "whichever contrasts more."})


class SessionCreateSchema(Schema):
    source_type = fields.String(allow_none=True, validate=validate.Length(min=1, max=100), metadata={
        "description": "The one source type the page creates (or give allowed_types)."})
    allowed_types = fields.List(fields.String(validate=validate.Length(min=1, max=100)), allow_none=True,
                                validate=validate.Length(min=1, max=50), metadata={
        "description": "Types the user chooses from on the page."})
    source_id = id_field(allow_none=True, metadata={
        "description": "An existing source to finish or reconnect (a broken one runs the OAuth reconnect)."})
    redirect_url = fields.String(required=True, validate=validate.Length(min=1, max=2048), metadata={
        "description": "Where the page sends the browser at the end, with source_id (and error=cancelled "
                       "when the user cancels): https, or http on a loopback host; no fragment; one of "
                       "the account's redirect_url_allowlist when set."})
    display = fields.Nested(DisplaySchema, allow_none=True)


class SessionSchema(Schema):
    token = fields.String(required=True, metadata={"description": "Shown once; only its hash is kept."})
    url = fields.String(required=True, metadata={"description": "The page: send the user's browser here."})
    expires_at = Timestamp(required=True)
