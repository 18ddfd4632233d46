"""What a request must be before any view sees it: ids that fit the database, and JSON bodies
that mean one thing.

- ``<int:…>`` in every route is an :class:`IdConverter`: ids are BIGINT, so a longer number is an
  unknown id (404), never a database overflow (500). The OpenAPI document shows the bounds. Only
  ASCII digits make an id: werkzeug's ``\\d`` and Python's ``int()`` also take other scripts'
  digits (full-width ``４``, Arabic-Indic ``١``), so one source would answer to many spellings.
- No NUL character in the path, the query or a header (400): PostgreSQL cannot hold one.
- A request body under ``/v4/`` must be JSON (``application/json`` or ``…+json``), else 415.
- A JSON body must be I-JSON (RFC 7493) and storable: valid UTF-8, no duplicate key in an object
  (parsers disagree on which value wins, so a proxy or an audit log and this service could read
  two different requests), no lone surrogate escape (``"\\ud800"``: not Unicode, no database stores
  it), no NUL character (PostgreSQL text cannot hold one), no ``NaN``/``Infinity`` or number that
  overflows to infinity, no integer beyond 64 bits (every id and count is a BIGINT at most, so such a
  number could only overflow a query), and at most :data:`MAX_DEPTH` levels of nesting. Anything else is 400
  ``malformed_request`` before a view runs, so it changes nothing.

webargs parses the body again with :func:`json.loads` for the schemas; after these checks the two
parses cannot disagree.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, IntegerConverter, Map

from .errors import ApiError
from .paths import is_api_path
from .schemas import MAX_ID

MAX_DEPTH = 32
log = logging.getLogger(__name__)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The proxy forwards its body to the source's API as it came (any content type); it is never parsed
# or stored here, only bounded by MAX_CONTENT_LENGTH (app/execute/proxy.py).
_FORWARDED_BODY = re.compile(r"^/v4/sources/[0-9]+/proxy/")


class IdConverter(IntegerConverter):
    """``<int:name>``: a decimal id of ASCII digits between 1 and the largest BIGINT."""

    regex = "[0-9]+"

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


class SourceTypeConverter(BaseConverter):
    """``<source_type:name>``: a source type in a path, never the name of a sibling route.

    ``/v4/oauth/credentials/<source_type>`` would also match ``/v4/oauth/credentials/spec``; the
    static route wins a GET, but werkzeug would still count the dynamic rule for an ``OPTIONS`` or a
    405's ``Allow`` (and list its DELETE). A reserved word does not match the converter's pattern,
    so the rule is not counted (werkzeug counts a rule's methods as soon as its pattern matches,
    before ``to_python`` could refuse the value)."""

    RESERVED = frozenset({"spec"})
    regex = "(?!(?:" + "|".join(sorted(RESERVED)) + ")$)[^/]+"

    def openapi_schema(self) -> dict[str, Any]:
        """Its path parameter in the OpenAPI document (app/extensions.py registers it)."""
        return {"type": "string", "minLength": 1, "not": {"enum": sorted(self.RESERVED)}}


class _Refused(Exception):
    def __init__(self, reason: str, field: str = "body") -> None:
        super().__init__(reason)
        self.reason, self.field = reason, field


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Refused(f"the key {ascii(key[:64])} appears twice in one object")
        seen[key] = value
    return seen


class _NotANumber:
    """What ``NaN``, ``Infinity`` and ``-Infinity`` parse to, so the walk below can name where they
    stand (the parser's callback does not know)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _check_strings_and_depth(document: Any) -> None:
    """Walk the parsed body without recursion (its depth is what is being checked)."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                raise _Refused(f"contains {_unstorable(found.group())}", path or "body")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ID:
            raise _Refused("an integer beyond 2^63-1 is out of range",
                           path or "body")
        elif isinstance(value, float) and math.isinf(value):  # 1e999: beyond a double
            raise _Refused("a number is too large for a double", path or "body")
        elif isinstance(value, _NotANumber):
            raise _Refused(f"{value.name} is not a JSON number", path or "body")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", path or "body")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                child = f"{path}.{key}" if path else str(key)
                found = _UNSTORABLE.search(key) if isinstance(key, str) else None
                if found:
                    raise _Refused(f"a key contains {_unstorable(found.group())}", path or "body")
                stack.append((item, child, depth + 1))


def _unstorable(character: str) -> str:
    if character == "\x00":
        return "a NUL character (\\u0000)"
    return "a lone UTF-16 surrogate, which is not Unicode text"


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON, or :class:`ApiError` 400 naming what is wrong (never echoing a value)."""
    try:
        text = raw.decode("utf-8")
        document = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_NotANumber)
        _check_strings_and_depth(document)
    except _Refused as refused:
        raise _malformed(f"{refused.field}: {refused.reason}", refused.field, refused.reason) from None
    except UnicodeDecodeError as exc:
        raise _malformed("the body is not UTF-8 text", "body", f"invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise _malformed(f"the body is not valid JSON: {reason}", "body", reason) from None
    except RecursionError:
        raise _malformed("the body is nested too deeply", "body",
                         f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        # int() refuses numbers of more than sys.get_int_max_str_digits() digits.
        raise _malformed("a number in the body has too many digits", "body",
                         "a number has too many digits") from None
    return document


def _malformed(message: str, field: str, reason: str) -> ApiError:
    return ApiError(message, details=[{"field": field, "reason": reason}])


def check_request_line() -> None:
    """No NUL in the path, the query or a header: PostgreSQL cannot compare or store it (a path
    segment or an Idempotency-Key with ``%00`` would otherwise end in a database error)."""
    if request.routing_exception is not None:
        return  # routing answers 404/405 first
    if not _may_hold_nul(request.environ):
        return  # the common case, checked on the raw WSGI strings without building anything
    places = [("the path", "path", request.path)]
    places += [(f"the query parameter {key[:64]!a}", key[:64], key + value)
               for key, value in request.args.items(multi=True)]
    places += [(f"the header {name!a}", name, value) for name, value in request.headers.items()]
    for where, field, text in places:
        if "\x00" in text:
            raise _malformed(f"{where} contains a NUL character (%00)", field, "contains a NUL character")


def _may_hold_nul(environ: dict[str, Any]) -> bool:
    """Whether a NUL can appear once the request line and headers are decoded (a cheap pre-check on
    every request: only ``%00`` in the query, or a raw NUL anywhere, decodes to one)."""
    query = environ.get("QUERY_STRING", "")
    if "%00" in query or "\x00" in query or "\x00" in environ.get("PATH_INFO", ""):
        return True
    return any("\x00" in value for key, value in environ.items()
               if key.startswith("HTTP_") or key in {"CONTENT_TYPE", "CONTENT_LENGTH"})


def _read_body() -> bytes:
    """The whole body, bounded by MAX_CONTENT_LENGTH (413 beyond). A body the server cannot read as
    it is framed (gunicorn raises its own parse errors from ``wsgi.input``: a chunk whose size or
    terminator is wrong) is the client's error, 400, not a crash of the app."""
    try:
        return request.get_data(cache=True)
    except HTTPException:
        raise  # 413, or werkzeug's ClientDisconnected (400)
    except Exception as error:  # the WSGI server's own exception classes, which the app cannot list
        log.info("request body unreadable", extra={"error_class": type(error).__name__})
        raise _malformed("the request body could not be read: its chunked framing is broken, or it ended "
                         "early", "body", "malformed chunked encoding, or the body ended early") from None


def check_request_body() -> None:
    if request.routing_exception is not None or request.method in {"GET", "HEAD", "OPTIONS"}:
        return  # routing answers 404/405 first; reads take no body
    raw = _read_body()
    if not raw or _FORWARDED_BODY.match(request.path):
        return
    if not request.is_json:
        if is_api_path(request.path):
            raise ApiError(
                f"send the body as application/json, not {request.mimetype or 'without a Content-Type'}",
                status=415, type="unsupported_media_type",
                details=[{"field": "Content-Type", "reason": "must be application/json"}])
        return
    parse_json_body(raw)


def init_app(app: Flask) -> None:
    # Before any blueprint is registered: rules bind their converter when they are added.
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["source_type"] = SourceTypeConverter
    app.before_request(check_request_line)
    app.before_request(check_request_body)
