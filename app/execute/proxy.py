"""The proxy: ``/v4/sources/{id}/proxy/<path>`` calls the source's API with its stored credentials.

The call goes to the card's rendered ``api.base_url`` + ``path``, with the caller's query, body and
a few content headers (:data:`FORWARDED_HEADERS`: never the caller's ``Authorization``, which is
their token for this service), the card's headers and authenticator applied, and a 401 answered
by one token renewal. The provider's status and body come back; hop-by-hop headers, ``Set-Cookie``
and the encoding headers (requests has decoded the body) do not.

The target is pinned to the base URL: the path as the caller sent it (before any decoding) must
not hold a ``..`` or ``.`` segment, an encoded slash, dot or backslash, a backslash, ``@``, an
empty segment (``//``), a scheme, or a control character; the joined URL must then still lie
under the base URL. Every connection obeys the network rules (app/connectors/network.py).

A card may turn its proxy off (``api.proxy.enabled: false``) or allow only some ``paths``
(prefixes) and ``methods``; the operator may turn the proxy off (``CONNECT_PROXY_ENABLED``). Each
call is an audit event (``source_proxied``: method, path, status, duration; never the query, a
header or a body) and counts against the account's rate limit like every ``/v4`` call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.sections import ProxySpec
from ..connectors.base import ConnectorFailure
from ..connectors.http import Verbatim
from ..connectors.http_connector import HttpConnector
from ..connectors.http_records import within
from ..connectors.registry import Connectors
from ..crypto import Keyring
from ..errors import AccessDenied, Conflict, Invalid, Problem
from .outcomes import Audit, api_error, audited, target_of, usable_source

FORWARDED_HEADERS = ("accept", "accept-language", "content-type", "if-match", "if-none-match",
                     "if-modified-since", "if-unmodified-since")
DROPPED_ANSWER_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "set-cookie", "content-encoding", "content-length", "server", "date"})
# What the raw path may not hold (case-insensitive): see the module docstring.
_REFUSED_PATH = re.compile(r"^/|(^|/)\.{1,2}(/|$)|%2f|%5c|%2e|%[01][0-9a-f]|%7f|\\|@|%40|//|^[a-z][a-z0-9+.\-]*:"
                           r"|[\x00-\x20\x7f]", re.IGNORECASE)


@dataclass(frozen=True)
class ProxyCall:
    """A call as the route received it: the path undecoded, as the client sent it."""

    method: str
    raw_path: str
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes | None


@dataclass(frozen=True)
class ProxyAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def pinned_url(base_url: str, raw_path: str) -> str:
    """``base_url`` + ``raw_path``, or 422 ``path`` when the path could leave the base URL."""
    if _REFUSED_PATH.search(raw_path):
        raise Invalid.from_problems([Problem("path", "must be a plain path under the API's base URL: no '..' or "
                                                     "'.' segments, encoded slashes or dots, backslashes, '@', "
                                                     "'//', schemes or control characters")], type="invalid_path")
    url = base_url.rstrip("/") + "/" + raw_path.lstrip("/")
    if not within(url, base_url):
        raise Invalid.from_problems([Problem("path", "leads outside the API's base URL")], type="invalid_path")
    return url


def allowed(spec: ProxySpec, method: str, raw_path: str) -> None:
    """403 unless the card lets the proxy make this call."""
    if not spec.enabled:
        raise AccessDenied("this source type's proxy is turned off", type="proxy_disabled")
    if method not in spec.methods:
        raise AccessDenied(f"this source type's proxy allows only {', '.join(spec.methods)}",
                           type="proxy_method_not_allowed")
    path = "/" + raw_path.lstrip("/")
    if spec.paths and not any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in spec.paths):
        raise AccessDenied(f"this source type's proxy allows only the paths {', '.join(spec.paths)}",
                           type="proxy_path_not_allowed")


def proxy_call(session: Session, catalog: Catalog, connectors: Connectors, keyring: Keyring, account_id: int,
               source_id: int, call: ProxyCall, *, enabled: bool = True) -> ProxyAnswer:
    if not enabled:
        raise AccessDenied("the proxy is turned off in this deployment", type="proxy_disabled")
    with session.begin():
        usable = usable_source(session, catalog, account_id, source_id)
        target = target_of(keyring, usable)
    card = usable.card
    connector = connectors.for_card(card)
    if card.api is None or not isinstance(connector, HttpConnector):
        raise Conflict(f"sources of type {card.type} have no API to proxy to", type="proxy_not_supported")
    audit = Audit("source_proxied", {"method": call.method, "path": call.raw_path.split("?")[0][:200]})
    with audited(session, source_id, audit):
        try:
            url = pinned_url(connector.base_url(target), call.raw_path)
            allowed(card.api.proxy, call.method, call.raw_path)
            response = connector.forward(target, call.method, Verbatim(
                url=url, params=tuple(call.query), body=call.body,
                headers={name: value for name, value in call.headers.items() if name.lower() in FORWARDED_HEADERS}))
        except ConnectorFailure as failure:
            raise api_error(failure) from None
        audit.status = response.status_code
        headers = [(name, value) for name, value in response.headers.items()
                   if name.lower() not in DROPPED_ANSWER_HEADERS]
        return ProxyAnswer(response.status_code, headers, response.content)
