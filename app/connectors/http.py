"""Requests to a source's own API, built from its card's ``api`` section and authenticated by its
``auth`` section: what the connection check and discovery send.

The source's properties are decrypted for the call only and rendered into the templates of
``api`` (``base_url``, ``headers``, the request's ``path``/``url``, ``params``, ``headers``,
``json``, ``data``) and ``auth``. A 401 from the API is answered once: a token-based authenticator
gets a fresh token (refreshing only if nobody else has) and the request is sent again, so a token
revoked or expired early does not stop a job.

Parts that are data and never templates (:class:`Verbatim`: a provider's next-page URL or
cursor, a proxied call's query, headers and body) are laid over the rendered request unrendered,
so a value the provider or a caller chose cannot reach the template sandbox; the body can be read
under a byte cap and an overall deadline (execute and the proxy).

Redirects are followed only within the origin of the request: requests strips the
``Authorization`` header on a cross-host redirect, but not an API key in another header, the query
or the body, so a redirect elsewhere is returned as it is instead of being followed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.cards import ReportCard
from ..catalog.sections import AuthSection, RequestSpec
from ..crypto import Keyring
from ..models import Source
from .authenticators import Authenticator, TokenAuth, static_authenticator, token_injection
from .context import rendered, rendered_url, template_context
from .errors import AuthConfigurationError, ResponseTooLarge
from .network import network_policy
from .tokens import TokenSettings, TokenStore


class SameOriginSession(requests.Session):
    """A requests session that stops at a redirect to another scheme, host or port."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        return target if _origin(urljoin(resp.url, target)) == _origin(resp.url) else None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


@dataclass(frozen=True)
class Verbatim:
    """What a request carries as it is (see the module docstring). ``url`` replaces the rendered
    URL; ``params`` and ``headers`` are added; ``body`` replaces the body; ``max_bytes`` caps the
    body read (beyond: :class:`ResponseTooLarge`), ``deadline`` bounds the whole exchange in
    seconds (beyond: ``requests.Timeout``), a provider trickling bytes included."""

    url: str | None = None
    params: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    max_bytes: int | None = None
    deadline: float | None = None


def build_authenticator(card: ReportCard, auth: AuthSection, context: Mapping[str, Any],
                        store: TokenStore | None) -> Authenticator:
    """The authenticator for one call: static credentials rendered now; tokens from the store."""
    where = f"{card.type}: auth"
    if not auth.uses_tokens:
        return static_authenticator(rendered(auth, context, where), where)
    if store is None:
        raise AuthConfigurationError(f"{where}: {auth.type} needs the token store")
    injection = token_injection(rendered(auth, context, where), where)
    if auth.type == "oauth2":
        return TokenAuth(store.access_token, injection)
    # Without an expiration every call logs in afresh, so a refused token is not worth renewing.
    return TokenAuth(store.session_token, injection, renewable=bool(auth.expiration))


def request_arguments(card: ReportCard, request: RequestSpec, context: Mapping[str, Any],
                      verbatim: Verbatim | None = None) -> dict[str, Any]:
    """The ``requests`` arguments of a request (``api.check`` or a stream's), rendered."""
    api = card.api
    if api is None:
        raise AuthConfigurationError(f"{card.type}: the card has no api section")
    where = f"{card.type}: api"
    spec = rendered(replace(request, auth=None), context, where)  # its own auth is rendered apart
    url = spec.url
    if not url:
        base_url = rendered_url(api.base_url, context, f"{where}.base_url")
        url = base_url.rstrip("/") + "/" + spec.path.lstrip("/")
    headers = {**rendered(api.headers, context, f"{where}.headers"), **spec.headers}
    arguments: dict[str, Any] = {
        "method": spec.method or "GET",
        "url": url,
        "params": dict(spec.params) or None,
        "headers": headers,
    }
    if spec.has_json:
        arguments["json"] = spec.json
    if spec.data:
        arguments["data"] = dict(spec.data)
    return arguments if verbatim is None else _with_verbatim(arguments, verbatim)


def _with_verbatim(arguments: dict[str, Any], verbatim: Verbatim) -> dict[str, Any]:
    if verbatim.url is not None:
        arguments["url"] = verbatim.url
    if verbatim.params:
        arguments["params"] = [*(arguments["params"] or {}).items(), *verbatim.params]
    arguments["headers"] = {**arguments["headers"], **verbatim.headers}
    if verbatim.body is not None:
        arguments.pop("json", None)
        arguments["data"] = verbatim.body
    return arguments


def send_api_request(
    session_factory: sessionmaker[Session],
    keyring: Keyring,
    source: Source,
    card: ReportCard,
    request: RequestSpec,
    *,
    settings: TokenSettings | None = None,
) -> requests.Response:
    """Send one request of ``card``'s API for ``source`` and return the response, whatever its status.

    Raises :class:`~app.connectors.errors.CredentialsRejected` when the provider refuses the
    source's credentials at the token or login endpoint (the source is then marked broken),
    :class:`~app.connectors.errors.TokenUnavailable` when no token can be had for now,
    :class:`~app.connectors.errors.AuthConfigurationError` when the card cannot produce the
    request, and ``requests.RequestException`` when the API itself cannot be reached.
    ``settings`` default to the current app's ``TOKEN_REFRESH_MARGIN`` and ``HTTP_TIMEOUT``.

    Call it outside any transaction that locks the source: a refresh takes the source's row lock
    (on SQLite, the write lock) in a transaction of its own.
    """
    settings = settings or TokenSettings.from_config(current_app.config, network=network_policy(current_app))
    return send_rendered_request(session_factory, keyring, card, source.id, template_context(keyring, source, card),
                                 request, settings)


def send_rendered_request(
    session_factory: sessionmaker[Session],
    keyring: Keyring,
    card: ReportCard,
    source_id: int,
    context: Mapping[str, Any],
    request: RequestSpec,
    settings: TokenSettings,
    verbatim: Verbatim | None = None,
    http: requests.Session | None = None,
) -> requests.Response:
    """:func:`send_api_request` with the template context already built (properties opened), and
    parts of the request taken as they are (:class:`Verbatim`). ``http``, when given, is a session
    made by ``settings.http_session`` that the caller keeps (its connections are reused); by
    default a session is made for the call and closed after it.

    Every connection it opens (to the API, and the token store's to the token or login endpoint)
    goes through ``settings.network``: a refused address raises
    :class:`~app.connectors.network.DestinationRefused`.
    """
    auth = card.auth if request.auth is None else request.auth
    if request.auth is not None and request.auth.uses_tokens:
        # The token store caches the tokens of the card's own auth section, one per source and kind.
        raise AuthConfigurationError(f"{card.type}: a request's own auth must be none/basic/bearer/api_key")
    store = TokenStore(session_factory, keyring, card, source_id, settings) if auth.uses_tokens else None
    authenticator = build_authenticator(card, auth, context, store)
    arguments = request_arguments(card, request, context, verbatim)
    timeout = (card.api.timeout_seconds if card.api is not None else None) or settings.http_timeout
    capped = verbatim is not None and (verbatim.max_bytes is not None or verbatim.deadline is not None)
    with ExitStack() as closing:
        if http is None:
            http = closing.enter_context(settings.http_session(SameOriginSession))
        response = http.request(**arguments, auth=authenticator, timeout=timeout, stream=capped)
        if response.status_code == 401 and authenticator.renew():
            response.close()
            response = http.request(**arguments, auth=authenticator, timeout=timeout, stream=capped)
        if capped and verbatim is not None:
            _read_capped(response, verbatim)
    return response


def kept_session(settings: TokenSettings) -> requests.Session:
    """A session to keep for many calls (execute, the proxy): vetted like every other, same-origin
    redirects only, and no cookie jar, so a cookie one source's API sets never reaches another call."""
    http = settings.http_session(SameOriginSession)
    http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return http


def _read_capped(response: requests.Response, verbatim: Verbatim) -> None:
    """Read the body while within the byte cap and the deadline (requests' own timeout is per read)."""
    limit = verbatim.max_bytes
    ends = None if verbatim.deadline is None else time.monotonic() + verbatim.deadline
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if limit is not None and size > limit:
                raise ResponseTooLarge(limit)
            if ends is not None and time.monotonic() > ends:
                raise requests.Timeout(f"the answer took longer than {verbatim.deadline} s")
            chunks.append(chunk)
    finally:
        response.close()
    response._content = b"".join(chunks)  # what .content and .json() read from here on
