"""Pages of an ``http`` stream for execute's ``list``: the request for a page and where the next
one is, for each pagination a card may declare (app/catalog/sections.py:PaginationSpec).

A position is plain JSON the execute service signs into its cursor: ``{"cursor": …}``,
``{"url": …}``, ``{"offset": n}`` or ``{"page": n}``. What the provider hands back (a cursor, a
next URL) travels verbatim, never through the template sandbox; a next URL must lie under the
card's rendered ``base_url`` (same scheme, host, port and path prefix), or the list ends there
rather than send the source's credentials elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ..catalog.sections import PaginationSpec
from .base import ConnectorFailure, RecordQuery
from .http import Verbatim


def page_size(pagination: PaginationSpec, limit: int) -> int:
    return min(limit, pagination.max_limit) if pagination.max_limit else limit


def page_request(pagination: PaginationSpec, query: RecordQuery, base_url: str, **caps: Any) -> Verbatim:
    """What to add to the stream's own request for the page at ``query.position``."""
    position = query.position or {}
    params: list[tuple[str, str]] = []
    if pagination.limit_param and "url" not in position:  # a next URL carries its own query
        params.append((pagination.limit_param, str(page_size(pagination, query.limit))))
    if pagination.type == "cursor" and "cursor" in position:
        params.append((pagination.cursor_param, str(position["cursor"])))
    elif pagination.type == "offset":
        params.append((pagination.offset_param, str(int(position.get("offset", 0)))))
    elif pagination.type == "page":
        params.append((pagination.page_param, str(int(position.get("page", pagination.first_page)))))
    url = position.get("url")
    if url is not None and not within(str(url), base_url):
        # Only when base_url changed under a cursor (a signed cursor cannot be altered).
        raise ConnectorFailure("invalid_cursor", "the cursor's next page is not under the API's base URL",
                               fixed_by="user")
    return Verbatim(url=None if url is None else str(url), params=params if url is None else (), **caps)


def next_position(pagination: PaginationSpec, query: RecordQuery, response: requests.Response, body: Any,
                  count: int, base_url: str) -> dict[str, Any] | None:
    """Where the page after this one is, or None when this was the last."""
    position = query.position or {}
    kind = pagination.type
    if kind == "cursor":
        cursor = value_at(body, pagination.cursor_path)
        return {"cursor": cursor} if cursor not in (None, "") else None
    if kind in ("next_link", "link_header"):
        found = value_at(body, pagination.next_link_path) if kind == "next_link" else \
            response.links.get("next", {}).get("url")
        if not isinstance(found, str) or not found:
            return None
        url = urljoin(response.url, found)
        return {"url": url} if within(url, base_url) else None
    full = count >= page_size(pagination, query.limit)
    if kind == "offset" and full:
        return {"offset": int(position.get("offset", 0)) + count}
    if kind == "page" and full:
        return {"page": int(position.get("page", pagination.first_page)) + 1}
    return None


def within(url: str, base_url: str) -> bool:
    """Whether ``url`` is on ``base_url``'s origin and under its path."""
    target, base = urlsplit(url), urlsplit(base_url)
    if (target.scheme.lower(), target.hostname, target.port) != (base.scheme.lower(), base.hostname, base.port):
        return False
    if target.username or target.password:
        return False
    prefix = base.path.rstrip("/") + "/"
    return (target.path + "/").startswith(prefix) and ".." not in target.path.split("/")


def value_at(body: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` in a JSON body (``()``: the body), or None."""
    value = body
    for step in path:
        if isinstance(value, Mapping) and isinstance(step, str):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return None
    return value


def records_at(body: Any, path: tuple[str | int, ...]) -> list[dict[str, Any]]:
    found = value_at(body, path)
    if isinstance(found, Mapping):
        return [dict(found)]
    return [dict(item) for item in found if isinstance(item, Mapping)] if isinstance(found, list) else []
