"""Structured logging: one JSON object per line, with the request id of the request it belongs to.

Each request gets an id (the caller's ``X-Request-Id`` when it is a short token, else a new one),
echoed in the response header and put on every log line written while serving it. One access line
per request records method, path (never the query string: it can carry OAuth codes), status,
duration and the caller's account.

Lines are formatted by python-json-logger (:class:`JsonFormatter` sets the service's fields and
their order) and every line is scanned for secrets (app/redaction.py) once finished, except the
access line: it is written on every request, so it is built from known fields only, and the fields
a caller controls (path, request id, an unusual method) are redacted one by one before it is put
together, which protects them the same way at a fraction of the cost (:func:`_access_line`).

Measured before moving to python-json-logger (timeit, one line with five extra fields and 20
remembered secrets, the minimum of ten interleaved rounds on a loaded 2-core machine): the
hand-written formatter took 27.5 µs per line, python-json-logger's 37.4 µs; a request costs
1,000–8,000 µs of CPU (bench/results), and most requests write only the access line, so the
difference stays far below 1% of a request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter as JsonLogFormatter

from .redaction import redact

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "account_id")
# Methods the HTTP parser hands over as they are; anything else is caller text and is redacted.
_PLAIN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("connect.access")
# A str as a JSON string (the C encoder json.dumps uses, without its call overhead).
_string = json.encoder.encode_basestring_ascii


class _Timestamps:
    """``2026-11-22T23:02:01.123+00:00`` for a record's ``created``: the part up to the second is
    formatted once per second, not once per line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            # Two threads may both recompute the same second; either result is right.
            self._prefix, self._second = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"), second
        return f"{self._prefix}.{int((created - second) * 1000):03d}+00:00"


_timestamp = _Timestamps()


class JsonFormatter(JsonLogFormatter):
    """python-json-logger's formatter, with the service's fields in its order (``ts``, ``level``,
    ``logger``, ``message``, ``request_id``, then every ``extra=`` field, then ``exception``), and
    every finished line redacted (app/redaction.py). The access line has its own fast path."""

    def __init__(self) -> None:
        super().__init__(json_default=str, reserved_attrs=[*RESERVED_ATTRS, "request_id"],
                         rename_fields={"exc_info": "exception"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["ts"] = _timestamp(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        request_id = getattr(record, "request_id", None)
        if request_id:
            log_data["request_id"] = request_id
        merge_record_extra(record, log_data, reserved=self._skip_fields)
        for key, value in message_dict.items():
            log_data[self._get_rename(key)] = value

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "_connect_access", False):
            return _format_access(record)
        return redact(super().format(record))


def _format_access(record: logging.LogRecord) -> str:
    """The access line of a record made by :func:`_finish_request`."""
    return _access_line(record.created, record.request_id, record._generated_id,  # type: ignore[attr-defined]
                        record.method, record.path, record.status, record.duration_ms,  # type: ignore[attr-defined]
                        record.account_id, record.name)  # type: ignore[attr-defined]


def _access_line(created: float, request_id: str | None, generated_id: bool, method: str, path: str,
                 status: int, duration_ms: float, account_id: int | None, name: str = "connect.access") -> str:
    """The access line: the same shape as any line, from fields whose caller text is redacted.

    Put together by hand (it is written for every request): the strings go through the JSON string
    encoder, the numbers are ints and a rounded float, the rest are constants.
    """
    return "".join((
        '{"ts": "', _timestamp(created), '", "level": "info", "logger": ', _string(name),
        ', "message": "request"',
        (', "request_id": ' + _string(request_id if generated_id else redact(request_id))) if request_id else "",
        ', "method": ', _string(method if method in _PLAIN_METHODS else redact(method)),
        ', "path": ', _string(redact(path)),
        ', "status": ', str(int(status)),
        ', "duration_ms": ', repr(float(duration_ms)),
        ', "account_id": ', "null" if account_id is None else str(int(account_id)), "}",
    ))


class JsonLineHandler(logging.StreamHandler):
    """The service's handler: each record as one JSON line on the stream (stderr)."""

    connect_json = True

    def write_line(self, line: str) -> None:
        """Write a line that is already formatted (see :func:`_finish_request`)."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + self.terminator)
            self.stream.flush()


def _direct_handler() -> JsonLineHandler | None:
    """Our handler, when it is the only thing an access record would reach: then the access line
    is written to it directly, without a LogRecord. Anything else listening (a handler or filter
    added by a test, a deployment's own logging set-up) gets the record as usual."""
    root = logging.root
    if (access_log.handlers or access_log.filters or access_log.parent is not root
            or not access_log.propagate or len(root.handlers) != 1):
        return None
    handler = root.handlers[0]
    if type(handler) is not JsonLineHandler or handler.level > logging.INFO or len(handler.filters) > 1:
        return None
    return handler


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def configure_logging(level: str) -> None:
    """Send every logger through one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "connect_json", False):
            break
    else:
        handler = JsonLineHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # No line of ours shows the thread or the multiprocessing process name, so LogRecord need not
    # look them up (the process id stays: gunicorn's own lines show it).
    logging.logThreads = False
    logging.logMultiprocessing = False
    # urllib3 logs full URLs (with query strings) at DEBUG; keep it to warnings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _start_request() -> None:
    context = g._get_current_object()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")  # the X-Request-Id header
    if incoming and _SAFE_REQUEST_ID.match(incoming):
        context.request_id, context.request_id_generated = incoming, False
    else:
        context.request_id, context.request_id_generated = os.urandom(16).hex(), True
    context.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    # One lookup of the proxied object, not one per field.
    context = g._get_current_object()
    request_id = getattr(context, "request_id", None)
    response.headers["X-Request-Id"] = request_id or ""
    if not access_log.isEnabledFor(logging.INFO):
        return response
    started = getattr(context, "request_started", None)
    current = request._get_current_object()  # type: ignore[attr-defined]
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else 0.0
    account_id = getattr(getattr(context, "principal", None), "account_id", None)
    generated_id = getattr(context, "request_id_generated", True)
    direct = _direct_handler()
    if direct is not None:
        direct.write_line(_access_line(time.time(), request_id, generated_id, current.method,
                                       current.path, response.status_code, duration_ms, account_id))
        return response
    # makeRecord + handle rather than .info(): the same record for handlers (and caplog), without
    # walking the stack for a caller that no line shows.
    record = access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, "request", (), None,
        extra={
            "method": current.method,
            "path": current.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "account_id": account_id,
            "request_id": request_id,
            "_generated_id": generated_id,
            "_connect_access": True,
        },
    )
    access_log.handle(record)
    return response


def init_app(app: Flask) -> None:
    configure_logging(app.config["LOG_LEVEL"])
    app.before_request(_start_request)
    app.after_request(_finish_request)
