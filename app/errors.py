"""The one error shape, and the one place that turns exceptions into it.

Every error response is ``{"error": {"type", "message", "details"}}``. Code anywhere raises an
:class:`ApiError` (or lets Flask, werkzeug, webargs or flask-smorest raise their own); the handlers
registered here render them all alike. Messages never contain submitted values of credential
properties: the code that builds a message about a property knows whether it is a credential.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Error types by HTTP status, for errors raised without one of our own types.
DEFAULT_TYPES = {
    400: "malformed_request",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    414: "request_line_too_long",  # these four come from gunicorn, before the app (app/serving.py)
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "invalid_body",
    429: "rate_limited",
    431: "headers_too_large",
    501: "not_implemented",
}


class ApiError(Exception):
    status = 400
    type = "malformed_request"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        type: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if type is not None:
            self.type = type
        if status is not None:
            self.status = status
        self.headers = headers or {}


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"


class AccessDenied(ApiError):
    status, type = 403, "access_denied"


class NotFound(ApiError):
    status, type = 404, "not_found"


class Conflict(ApiError):
    status, type = 409, "conflict"


class Gone(ApiError):
    status, type = 410, "gone"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (``field``, and ``property`` when it is a source
    property) and why. A list of them becomes one :class:`Invalid` (:meth:`Invalid.from_problems`)."""

    field: str
    reason: str
    property: str | None = None

    @classmethod
    def of_property(cls, name: str, reason: str) -> Problem:
        return cls(f"properties.{name}", reason, name)

    def detail(self) -> dict[str, str]:
        """The problem as an entry of an error's ``details``."""
        if self.property is None:
            return {"field": self.field, "reason": self.reason}
        return {"property": self.property, "field": self.field, "reason": self.reason}


def problems_message(problems: Sequence[Problem]) -> str:
    """``field: reason; field: reason`` — the message of an error made of problems."""
    return "; ".join(f"{p.field}: {p.reason}" for p in problems)


class Invalid(ApiError):
    """Well-formed but invalid (422). ``type`` names the kind: invalid_properties, invalid_name…"""

    status, type = 422, "invalid_body"

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], *, type: str = "invalid_body") -> Invalid:
        """One error for every problem found: the message names each, ``details`` lists them."""
        return cls(problems_message(problems), details=[p.detail() for p in problems], type=type)


def error_body(status: int, type_: str, message: str, details: list | None = None) -> dict:
    return {"error": {"type": type_, "message": message, "details": details or []}}


# Another dialect's error shape for the paths under its prefixes (the Airbyte dialect's, set by
# app/airbyte in create_app): the same status, type, message and details, drawn another way.
ERROR_SHAPES_KEY = "connect.error_shapes"
ErrorBody = Callable[[int, str, str, list], dict]


def register_error_shape(app: Flask, prefixes: tuple[str, ...], body: ErrorBody) -> None:
    app.extensions.setdefault(ERROR_SHAPES_KEY, []).append((prefixes, body))


def _shaped_body(status: int, type_: str, message: str, details: list | None) -> dict:
    if has_request_context():
        for prefixes, body in current_app.extensions.get(ERROR_SHAPES_KEY, ()):
            if request.path.startswith(prefixes):
                shaped: dict = body(status, type_, message, details or [])
                return shaped
    return error_body(status, type_, message, details)


def error_response(
    status: int, type_: str, message: str, details: list | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(_shaped_body(status, type_, message, details))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _field_details(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten webargs/marshmallow messages ({"json": {"field": ["reason"]}}) into details."""
    details: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list | dict) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                details.extend(_field_details(value, name))
            else:
                reasons = value if isinstance(value, list) else [value]
                details.extend({"field": name, "reason": str(reason)} for reason in reasons)
    elif isinstance(messages, list):
        details.extend({"field": prefix or "body", "reason": str(m)} for m in messages)
    return details


def _strip_location(details: list[dict[str, str]]) -> list[dict[str, str]]:
    # webargs nests messages under their location ("json", "query", "headers", "path");
    # clients name fields, so keep the location only when it is not the body.
    for detail in details:
        field = detail["field"]
        location, _, rest = field.partition(".")
        if location == "json":
            field = rest or "body"
        elif location in {"query", "headers", "path", "view_args"} and rest:
            field = rest
        # marshmallow puts errors about a value as a whole (a list where an object belongs) under
        # "_schema"; the client sent the body, or the object at that path.
        parts = [part for part in field.split(".") if part != "_schema"]
        detail["field"] = ".".join(parts) or "body"
    return details


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    details = _strip_location(_field_details(messages)) if messages else []
    type_ = DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "malformed_request")
    message = exc.description or exc.name
    if status == 422 and details:
        message = problems_message([Problem(d["field"], d["reason"]) for d in details])
    elif status == 400 and details:
        message = details[0]["reason"]
    elif status == 404:
        message = "no such resource"
    elif status == 405:
        message = "method not allowed on this resource"
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = "request body too large"
        if limit:
            message = f"request body too large: the limit is {limit} bytes (CONNECT_MAX_BODY_BYTES)"
            details = [{"field": "body", "reason": f"larger than {limit} bytes"}]
    headers = {}
    if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if isinstance(data, dict) and data.get("headers"):
        headers.update(data["headers"])
    return error_response(status, type_, message, details, headers)


def handle_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.type, exc.message, exc.details, exc.headers)


def handle_unexpected(exc: Exception) -> Response:
    # The exception text may carry anything (a decrypted value in a driver message), so it is
    # logged by class and traceback location only, and never sent to the client.
    log.error("unhandled error", extra={"error_class": type(exc).__name__}, exc_info=exc)
    return error_response(500, "server_error", "internal error; see the service log")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
