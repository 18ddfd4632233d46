"""The private sections of a report card, ``oauth``, ``auth`` and ``api``, as frozen dataclasses.

This file is where a card's shape is visible: every key a section may have, with its default.
:func:`parse_oauth`, :func:`parse_auth` and :func:`parse_api` run at load, after the file passed
``report_card.schema.json`` (so the types of known keys are right); a key a section does not have
— a typo, or a key of another ``auth.type`` — is a :class:`SectionProblem`, reported like every
other catalog problem with the file and the JSON path. Strings may be Jinja templates
(app/templating.py): they are kept as written and rendered per call (app/connectors/context.py).

``connector`` is kept as the kind's name, and ``database``/``singer`` stay frozen mappings: their
connector modules parse them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .frozen import freeze

EMPTY: Mapping[str, str] = MappingProxyType({})
AUTH_TYPES = ("none", "basic", "bearer", "api_key", "oauth2", "session_token")
TOKEN_AUTH_TYPES = ("oauth2", "session_token")
INJECT_INTO = ("header", "request_parameter", "body_data", "body_json")


class SectionProblem(Exception):
    def __init__(self, json_path: str, reason: str) -> None:
        super().__init__(f"{json_path}: {reason}")
        self.json_path = json_path
        self.reason = reason


class _Reader:
    """Reads one JSON object of a section, remembering which keys were read."""

    def __init__(self, raw: Mapping[str, Any], path: str) -> None:
        self.raw = raw
        self.path = path
        self.read: set[str] = set()

    def get(self, key: str) -> Any:
        self.read.add(key)
        return self.raw.get(key)

    def text(self, key: str, default: str = "") -> str:
        value = self.get(key)
        return default if value is None else str(value)

    def optional_text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None else str(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        return default if value is None else bool(value)

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in self.get(key) or ())

    def string_map(self, key: str) -> Mapping[str, str]:
        value = self.get(key)
        return MappingProxyType({str(k): str(v) for k, v in value.items()}) if value else EMPTY

    def done(self, what: str) -> None:
        """Refuse keys that were not read: the section does not have them."""
        unknown = sorted(set(self.raw) - self.read)
        if unknown:
            raise SectionProblem(f"{self.path}.{unknown[0]}",
                                 f"{what} has no key {unknown[0]!r} (its keys: {', '.join(sorted(self.read))})")


# --- oauth --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientProperties:
    """The card's properties that hold a source's own OAuth app (both optional)."""

    client_id: str | None = None
    client_secret: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.client_id, self.client_secret) if name)


@dataclass(frozen=True)
class HandshakeProperties:
    """The card's properties that get what the handshake itself used (both optional)."""

    redirect_uri: str | None = None
    scope: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in (self.redirect_uri, self.scope) if name)


@dataclass(frozen=True)
class OAuthSection:
    """The managed authorization-code handshake (app/oauth/handshake.py)."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    authorize_params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    token_params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    pkce: bool = True
    client_auth: str = "client_secret_post"
    client_properties: ClientProperties = field(default_factory=ClientProperties)
    # Where the token response's and the callback's fields go: field (or dotted path) → property.
    token_properties: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    callback_properties: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # Properties the handshake fills with what it knows itself: the redirect URI and scope it used.
    handshake_properties: HandshakeProperties = field(default_factory=lambda: HandshakeProperties())
    # Properties the authorize and token URL templates need, given at initiate.
    input_properties: tuple[str, ...] = ()
    docs_url: str | None = None
    # RFC 7009: where a deleted source's tokens are revoked (a template like token_url).
    revocation_url: str | None = None


def parse_oauth(raw: Mapping[str, Any], path: str = "$.oauth") -> OAuthSection:
    read = _Reader(raw, path)
    clients = _Reader(read.get("client_properties") or {}, f"{path}.client_properties")
    own = _Reader(read.get("handshake_properties") or {}, f"{path}.handshake_properties")
    section = OAuthSection(
        authorize_url=read.text("authorize_url"),
        token_url=read.text("token_url"),
        scopes=read.strings("scopes"),
        scope_separator=read.text("scope_separator", " "),
        authorize_params=read.string_map("authorize_params"),
        token_params=read.string_map("token_params"),
        pkce=read.flag("pkce", True),
        client_auth=read.text("client_auth", "client_secret_post"),
        client_properties=ClientProperties(clients.optional_text("client_id"), clients.optional_text("client_secret")),
        token_properties=read.string_map("token_properties"),
        callback_properties=read.string_map("callback_properties"),
        handshake_properties=HandshakeProperties(own.optional_text("redirect_uri"), own.optional_text("scope")),
        input_properties=read.strings("input_properties"),
        docs_url=read.optional_text("docs_url"),
        revocation_url=read.optional_text("revocation_url"),
    )
    clients.done("oauth.client_properties")
    own.done("oauth.handshake_properties")
    read.done("an oauth section")
    return section


# --- requests and auth --------------------------------------------------------------------------


@dataclass(frozen=True)
class InjectSpec:
    """Where a session token goes: ``as`` bearer, or as an API key at ``inject_into``/``field_name``."""

    as_: str
    inject_into: str = "header"
    field_name: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class RequestSpec:
    """One request to a source's API (``api.check``, a session login): templates, rendered per call."""

    url: str | None = None
    path: str = ""
    method: str | None = None
    params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    json: Any = None  # frozen JSON; sent only when ``has_json``
    has_json: bool = False
    data: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    auth: AuthSection | None = None  # the request's own auth instead of the card's


@dataclass(frozen=True)
class AuthSection:
    """How the service authenticates to a source's API, one ``type`` of :data:`AUTH_TYPES`, with
    the keys of that type (app/connectors/authenticators.py says what each does)."""

    type: str = "none"
    # basic
    username: str = ""
    password: str = ""
    # bearer, api_key
    token: str = ""
    # api_key
    inject_into: str = "header"
    field_name: str = ""
    prefix: str = ""
    # oauth2
    grant_type: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    refresh_token: str = ""
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    access_token_name: str = "access_token"
    expires_in_name: str = "expires_in"
    expires_in_unit: str = "seconds"
    expiry_date_format: str | None = None
    refresh_token_name: str = "refresh_token"
    refresh_token_property: str | None = None
    rotate_refresh_token: bool = False
    default_expires_in: int | None = None
    # The provider's cap on refreshes: keep-alive refreshes no more often than this.
    min_refresh_interval_seconds: int = 0
    client_auth: str = "client_secret_post"
    token_params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    token_request_encoding: str = "form"  # or "json": how the token request's fields travel
    # session_token
    login: RequestSpec | None = None
    token_path: tuple[str | int, ...] = ()
    expiration: str | None = None
    inject: InjectSpec | None = None

    @property
    def uses_tokens(self) -> bool:
        """Tokens obtained and cached by the token store (app/connectors/tokens.py)."""
        return self.type in TOKEN_AUTH_TYPES


NO_AUTH = AuthSection()


def _basic(read: _Reader) -> dict[str, Any]:
    return {"username": read.text("username"), "password": read.text("password")}


def _bearer(read: _Reader) -> dict[str, Any]:
    return {"token": read.text("token")}


def _api_key(read: _Reader) -> dict[str, Any]:
    return {"token": read.text("token"), "inject_into": read.text("inject_into", "header"),
            "field_name": read.text("field_name"), "prefix": read.text("prefix")}


def _oauth2(read: _Reader) -> dict[str, Any]:
    default_expires_in = read.get("default_expires_in")
    return {
        "grant_type": read.text("grant_type"), "token_url": read.text("token_url"),
        "client_id": read.text("client_id"), "client_secret": read.text("client_secret"),
        "refresh_token": read.text("refresh_token"), "scopes": read.strings("scopes"),
        "scope_separator": read.text("scope_separator", " "),
        "access_token_name": read.text("access_token_name", "access_token"),
        "expires_in_name": read.text("expires_in_name", "expires_in"),
        "expires_in_unit": read.text("expires_in_unit", "seconds"),
        "expiry_date_format": read.optional_text("expiry_date_format"),
        "refresh_token_name": read.text("refresh_token_name", "refresh_token"),
        "refresh_token_property": read.optional_text("refresh_token_property"),
        "rotate_refresh_token": read.flag("rotate_refresh_token", False),
        "default_expires_in": None if default_expires_in is None else int(default_expires_in),
        "min_refresh_interval_seconds": int(read.get("min_refresh_interval_seconds") or 0),
        "client_auth": read.text("client_auth", "client_secret_post"),
        "token_params": read.string_map("token_params"),
        "token_request_encoding": read.text("token_request_encoding", "form"),
    }


def _session_token(read: _Reader) -> dict[str, Any]:
    inject_raw = read.get("inject") or {}
    inject = _Reader(inject_raw, f"{read.path}.inject")
    spec = InjectSpec(inject.text("as"), inject.text("inject_into", "header"), inject.text("field_name"),
                      inject.text("prefix"))
    inject.done("auth.inject")
    login = read.get("login")
    return {
        "login": parse_request(login, f"{read.path}.login") if login is not None else None,
        "token_path": tuple(read.get("token_path") or ()),
        "expiration": read.optional_text("expiration"),
        "inject": spec if inject_raw else None,
    }


_AUTH_KEYS = {"none": lambda read: {}, "basic": _basic, "bearer": _bearer, "api_key": _api_key,
              "oauth2": _oauth2, "session_token": _session_token}


def parse_auth(raw: Mapping[str, Any], path: str = "$.auth") -> AuthSection:
    read = _Reader(raw, path)
    kind = read.text("type", "none")
    section = AuthSection(type=kind, **_AUTH_KEYS[kind](read))
    read.done(f"auth of type {kind!r}")
    return section


def parse_request(raw: Mapping[str, Any], path: str) -> RequestSpec:
    read = _Reader(raw, path)
    auth = read.get("auth")
    spec = RequestSpec(
        url=read.optional_text("url"), path=read.text("path"), method=read.optional_text("method"),
        params=read.string_map("params"), headers=read.string_map("headers"),
        json=freeze(read.get("json")), has_json="json" in raw, data=read.string_map("data"),
        auth=parse_auth(auth, f"{path}.auth") if auth is not None else None,
    )
    read.done("a request")
    return spec


# --- api ----------------------------------------------------------------------------------------


PAGINATION_TYPES = ("none", "cursor", "next_link", "offset", "page", "link_header")
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class PaginationSpec:
    """How a stream's list pages (execute ``list``, app/connectors/http_records.py):

    * ``cursor``: the next page's cursor is in the body at ``cursor_path``, sent back as the query
      parameter ``cursor_param``;
    * ``next_link``: the next page's URL is in the body at ``next_link_path``;
    * ``link_header``: the next page's URL is the ``Link`` header's ``rel="next"`` (RFC 8288);
    * ``offset``: ``offset_param`` counts records skipped; ``page``: ``page_param`` counts pages
      from ``first_page``; both end at a page shorter than the limit;
    * ``none``: one page.

    ``limit_param`` (when given) carries the page size, at most ``max_limit``. A next URL must be
    on the card's ``base_url`` (same scheme, host, port and path prefix), or the list stops there.
    """

    type: str = "none"
    limit_param: str | None = None
    cursor_param: str = "cursor"
    cursor_path: tuple[str | int, ...] = ()
    next_link_path: tuple[str | int, ...] = ()
    offset_param: str = "offset"
    page_param: str = "page"
    first_page: int = 1
    max_limit: int | None = None


@dataclass(frozen=True)
class GetSpec:
    """How to fetch one record by key: ``path`` (and ``params``) render with ``params.<key>``, each
    key value URL-quoted; the record is at ``record_path`` in the body (``[]``: the body)."""

    path: str
    params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    record_path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class ProxySpec:
    """What ``/v4/sources/{id}/proxy/<path>`` may reach: everything under ``base_url`` by default;
    ``paths`` (prefixes, ``/`` first) and ``methods`` restrict it; ``enabled: false`` turns it off."""

    enabled: bool = True
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = PROXY_METHODS


@dataclass(frozen=True)
class StreamSpec:
    """One stream discovery asks the API for (``path``), and its Singer catalog entry."""

    tap_stream_id: str
    schema: Mapping[str, Any]
    stream_name: str | None = None
    path: str = ""
    method: str = "GET"
    params: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    records_path: tuple[str | int, ...] = ()
    key_properties: tuple[str, ...] = ()
    valid_replication_keys: tuple[str, ...] = ()
    forced_replication_method: str | None = None
    selected_by_default: bool = False
    pagination: PaginationSpec = field(default_factory=PaginationSpec)
    get: GetSpec | None = None

    @property
    def request(self) -> RequestSpec:
        return RequestSpec(path=self.path, method=self.method, params=self.params)


@dataclass(frozen=True)
class ApiSection:
    """The source's own API: where it is, what proves the credentials work, what to discover."""

    base_url: str
    check: RequestSpec
    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    timeout_seconds: float | None = None
    streams: tuple[StreamSpec, ...] = ()
    proxy: ProxySpec = field(default_factory=ProxySpec)


def parse_stream(raw: Mapping[str, Any], path: str = "$.api.streams[0]") -> StreamSpec:
    read = _Reader(raw, path)
    spec = StreamSpec(
        tap_stream_id=read.text("tap_stream_id"), schema=freeze(read.get("schema") or {}),
        stream_name=read.optional_text("stream_name"), path=read.text("path"),
        method=read.text("method", "GET"), params=read.string_map("params"),
        records_path=tuple(read.get("records_path") or ()), key_properties=read.strings("key_properties"),
        valid_replication_keys=read.strings("valid_replication_keys"),
        forced_replication_method=read.optional_text("forced_replication_method"),
        selected_by_default=read.flag("selected_by_default", False),
        pagination=parse_pagination(read.get("pagination") or {}, f"{path}.pagination"),
        get=_parse_get(read.get("get"), f"{path}.get"),
    )
    read.done("a stream")
    return spec


def parse_pagination(raw: Mapping[str, Any], path: str) -> PaginationSpec:
    read = _Reader(raw, path)
    first_page, max_limit = read.get("first_page"), read.get("max_limit")
    spec = PaginationSpec(
        type=read.text("type", "none"), limit_param=read.optional_text("limit_param"),
        cursor_param=read.text("cursor_param", "cursor"), cursor_path=tuple(read.get("cursor_path") or ()),
        next_link_path=tuple(read.get("next_link_path") or ()), offset_param=read.text("offset_param", "offset"),
        page_param=read.text("page_param", "page"), first_page=1 if first_page is None else int(first_page),
        max_limit=None if max_limit is None else int(max_limit))
    read.done("a pagination")
    if spec.type == "cursor" and not spec.cursor_path:
        raise SectionProblem(f"{path}.cursor_path", "a cursor pagination needs cursor_path")
    if spec.type == "next_link" and not spec.next_link_path:
        raise SectionProblem(f"{path}.next_link_path", "a next_link pagination needs next_link_path")
    if spec.type in ("offset", "page") and not spec.limit_param:
        raise SectionProblem(f"{path}.limit_param", f"an {spec.type} pagination needs limit_param")
    return spec


def _parse_get(raw: Mapping[str, Any] | None, path: str) -> GetSpec | None:
    if raw is None:
        return None
    read = _Reader(raw, path)
    spec = GetSpec(path=read.text("path"), params=read.string_map("params"),
                   record_path=tuple(read.get("record_path") or ()))
    read.done("a get")
    return spec


def parse_proxy(raw: Mapping[str, Any], path: str = "$.api.proxy") -> ProxySpec:
    read = _Reader(raw, path)
    spec = ProxySpec(enabled=read.flag("enabled", True), paths=read.strings("paths"),
                     methods=read.strings("methods") or PROXY_METHODS)
    read.done("a proxy section")
    return spec


def parse_api(raw: Mapping[str, Any], path: str = "$.api") -> ApiSection:
    read = _Reader(raw, path)
    timeout = read.get("timeout_seconds")
    section = ApiSection(
        base_url=read.text("base_url"),
        check=parse_request(read.get("check") or {}, f"{path}.check"),
        headers=read.string_map("headers"),
        timeout_seconds=None if timeout is None else float(timeout),
        streams=tuple(parse_stream(s, f"{path}.streams[{i}]") for i, s in enumerate(read.get("streams") or ())),
        proxy=parse_proxy(read.get("proxy") or {}, f"{path}.proxy"),
    )
    read.done("an api section")
    return section
