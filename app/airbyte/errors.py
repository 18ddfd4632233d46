"""Airbyte's error shape, and the dialect's names for the fields the services name.

Airbyte's public API answers errors as a problem document (RFC 7807): ``{"type", "title",
"status", "detail"}``; its embedded API's clients read ``detail`` (FastAPI's field). One shape
serves both: the problem document, with ``title`` the error's type (``invalid_properties``),
``detail`` its message and ``errors`` the list of ``{"field", "reason"}`` the Stitch dialect calls
``details``. The services name fields in the Stitch dialect's words (``source_type``,
``secret_id``, ``properties.start_date``); a view declares how its dialect says them
(:func:`fields_named`), and the body is drawn with those names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from flask import g

ERRORS_URL = "https://reference.airbyte.com/reference/errors"
F = TypeVar("F", bound=Callable[..., Any])


def fields_named(names: Mapping[str, str]) -> Callable[[F], F]:
    """Errors raised under the view name the fields ``names`` maps as the dialect does."""
    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.airbyte_field_names = names
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def renamed(field: str, names: Mapping[str, str]) -> str:
    """``field`` in the dialect's words: its longest dotted head that ``names`` knows, replaced."""
    parts = field.split(".")
    for length in range(len(parts), 0, -1):
        head = ".".join(parts[:length])
        if head in names:
            return ".".join([names[head], *parts[length:]])
    return field


# Where a message names a field: at its start, and after each "; " of a list of problems
# ("properties.start_date: must be …; secret_id: already used").
_FIELD_AT_START = re.compile(r"(^|; )([A-Za-z_][\w.]*)(?=[: ])")


def _renamed_message(message: str, names: Mapping[str, str]) -> str:
    if not names:
        return message
    return _FIELD_AT_START.sub(lambda match: match.group(1) + renamed(match.group(2), names), message)


def airbyte_error_body(status: int, type_: str, message: str, details: list) -> dict[str, Any]:
    names: Mapping[str, str] = g.get("airbyte_field_names") or {}
    errors = [{**detail, "field": renamed(detail["field"], names)} if "field" in detail else dict(detail)
              for detail in details]
    return {"type": f"{ERRORS_URL}#{type_}", "title": type_, "status": status,
            "detail": _renamed_message(message, names), "errors": errors}
