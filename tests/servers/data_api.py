"""A small source API that checks each authenticator's credentials exactly.

Every authentication scheme has its own prefix, so a test report card points ``api.base_url``
at ``<base>/<scheme>`` and uses the same ``/check`` and ``/streams/<name>`` paths whatever the
scheme: ``/basic``, ``/bearer``, ``/apikey/header``, ``/apikey/query``, ``/apikey/form``,
``/apikey/json``, ``/session``, ``/oauth`` and ``/public`` (no credentials). The bare
``/streams/<name>`` accepts any one valid credential.

For execute and the proxy, under each prefix too: ``/pages/<style>/<name>`` serves a stream in
pages for each pagination style (``cursor``, ``next_link``, ``offset``, ``page``,
``link_header``), ``/records/<name>/<id>`` one record, ``/big`` an answer of
``settings.big_answer_bytes`` and ``/echo/<path>`` what reached it (method, path, query and header
names, body length, never a value).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from flask import Flask, Request, Response, json, request

from .planted import plant


class AuthScheme(StrEnum):
    """How a request proves who it is; the value is the URL prefix."""

    PUBLIC = "public"
    BASIC = "basic"
    BEARER = "bearer"
    API_KEY_HEADER = "apikey/header"
    API_KEY_QUERY = "apikey/query"
    API_KEY_FORM = "apikey/form"
    API_KEY_JSON = "apikey/json"
    SESSION = "session"
    OAUTH = "oauth"


class ApiFault(StrEnum):
    """Ways the data API can misbehave for the next N requests."""

    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    HTML = "html"
    TRUNCATED_JSON = "truncated_json"


def _items() -> list[dict[str, Any]]:
    return [{"id": f"i{n:03}", "name": f"Item {n}", "note": f"private note {n}"} for n in range(1, 121)]


def _default_streams() -> dict[str, list[dict[str, Any]]]:
    return {
        "items": _items(),
        "contacts": [
            {"id": "1", "email": "ada@example.com", "updatedAt": "2024-01-02T00:00:00Z"},
            {"id": "2", "email": "alan@example.com", "updatedAt": "2024-01-03T00:00:00Z"},
        ],
        "deals": [{"id": "10", "amount": 1200, "updatedAt": "2024-01-04T00:00:00Z"}],
    }


@dataclass
class DataApiSettings:
    """Expected credentials and stream contents; fields may be changed while the server runs."""

    username: str = "user"
    password: str = "pass"
    bearer_token: str = "bearer-token"
    api_key: str = "api-key"
    api_key_header: str = "X-Api-Key"
    api_key_field: str = "api_key"
    session_username: str = "session-user"
    session_password: str = "session-pass"
    session_login_via: Literal["json", "basic"] = "json"
    session_token_header: str = "X-Session-Token"
    session_token_lifetime: float | None = None
    oauth_token_validator: Callable[[str], bool] | None = None
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=_default_streams)
    forbidden_streams: set[str] = field(default_factory=lambda: {"secret_stuff"})
    missing_streams: set[str] = field(default_factory=lambda: {"gone"})
    retry_after_seconds: int = 1
    slow_seconds: float = 0.3
    big_answer_bytes: int = 11 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """Where a request carried things, without the values (they may be credentials)."""

    method: str
    path: str
    query_keys: frozenset[str]
    header_names: frozenset[str]
    form_keys: frozenset[str]
    json_keys: frozenset[str]


@dataclass
class _PendingFault:
    mode: ApiFault
    remaining: int | None
    delay: float | None
    path_prefix: str | None

    def applies_to(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _authorization(req: Request) -> tuple[str, str]:
    scheme, _, credentials = req.headers.get("Authorization", "").partition(" ")
    return scheme.lower(), credentials.strip()


def _basic_credentials(req: Request) -> tuple[str, str] | None:
    """The username and password of a Basic header, with an empty password kept as ``""``."""
    scheme, credentials = _authorization(req)
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    if ":" not in decoded:
        return None
    username, _, password = decoded.partition(":")
    return username, password


def _bearer_token(req: Request) -> str | None:
    scheme, credentials = _authorization(req)
    return credentials if scheme == "bearer" and credentials else None


class DataApi:
    """State, counters and fault switches of one data API."""

    def __init__(self, settings: DataApiSettings | None = None) -> None:
        self.settings = settings or DataApiSettings()
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.session_logins = 0
        self.last_request: RequestRecord | None = None
        self._session_tokens: dict[str, float | None] = {}
        self._oauth_tokens: set[str] = set()
        self._faults: deque[_PendingFault] = deque()
        # Faults actually served, by mode (tests count what they injected from this).
        self.faults_served: Counter[str] = Counter()

    def register_oauth_token(self, access_token: str) -> None:
        """Accept ``access_token`` on ``/oauth`` without asking a validator."""
        with self.lock:
            self._oauth_tokens.add(access_token)

    def expire_session_tokens(self) -> None:
        with self.lock:
            for token in self._session_tokens:
                self._session_tokens[token] = 0.0

    @property
    def last_session_token(self) -> str | None:
        with self.lock:
            return next(reversed(self._session_tokens), None)

    def fail_next_requests(
        self,
        mode: ApiFault | str,
        count: int | None = 1,
        *,
        delay: float | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Make the next ``count`` requests (under ``path_prefix`` if given) misbehave.

        ``count=None`` keeps the fault until :meth:`clear_faults`; ``delay`` applies to ``slow``.
        """
        with self.lock:
            self._faults.append(_PendingFault(ApiFault(mode), count, delay, path_prefix))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, path: str) -> _PendingFault | None:
        with self.lock:
            for fault in self._faults:
                if fault.applies_to(path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    self.faults_served[fault.mode.value] += 1
                    return fault
        return None

    def record_request(self, req: Request) -> None:
        body = req.get_json(silent=True) if req.is_json else None
        record = RequestRecord(
            method=req.method,
            path=req.path,
            query_keys=frozenset(req.args),
            header_names=frozenset(name.lower() for name in req.headers.keys()),
            form_keys=frozenset(req.form),
            json_keys=frozenset(body) if isinstance(body, dict) else frozenset(),
        )
        with self.lock:
            self.requests[req.path] += 1
            self.last_request = record

    def start_session(self, req: Request) -> str | None:
        """A new session token if the login request carries the expected credentials."""
        settings = self.settings
        if settings.session_login_via == "basic":
            given = _basic_credentials(req)
        else:
            body = req.get_json(silent=True)
            given = (body.get("username"), body.get("password")) if isinstance(body, dict) else None
        if not given or not (
            _matches(given[0], settings.session_username)
            and _matches(given[1], settings.session_password)
        ):
            return None
        token = secrets.token_urlsafe(24)
        plant(token, "data_api:session_token")
        lifetime = settings.session_token_lifetime
        with self.lock:
            self.session_logins += 1
            self._session_tokens[token] = None if lifetime is None else time.time() + lifetime
        return token

    def _is_live_session(self, token: str | None) -> bool:
        with self.lock:
            if token is None or token not in self._session_tokens:
                return False
            expires_at = self._session_tokens[token]
        return expires_at is None or time.time() < expires_at

    def _is_valid_oauth_token(self, token: str | None) -> bool:
        if token is None:
            return False
        with self.lock:
            if token in self._oauth_tokens:
                return True
        validator = self.settings.oauth_token_validator
        return bool(validator and validator(token))

    def authenticates(self, scheme: AuthScheme, req: Request) -> bool:
        """Whether ``req`` carries exactly the credentials ``scheme`` expects."""
        settings = self.settings
        if scheme is AuthScheme.PUBLIC:
            return True
        if scheme is AuthScheme.BASIC:
            given = _basic_credentials(req)
            return bool(
                given
                and _matches(given[0], settings.username)
                and _matches(given[1], settings.password)
            )
        if scheme is AuthScheme.BEARER:
            return _matches(_bearer_token(req), settings.bearer_token)
        if scheme is AuthScheme.API_KEY_HEADER:
            return _matches(req.headers.get(settings.api_key_header), settings.api_key)
        if scheme is AuthScheme.API_KEY_QUERY:
            return _matches(req.args.get(settings.api_key_field), settings.api_key)
        if scheme is AuthScheme.API_KEY_FORM:
            return _matches(req.form.get(settings.api_key_field), settings.api_key)
        if scheme is AuthScheme.API_KEY_JSON:
            body = req.get_json(silent=True)
            value = body.get(settings.api_key_field) if isinstance(body, dict) else None
            return isinstance(value, str) and _matches(value, settings.api_key)
        if scheme is AuthScheme.SESSION:
            token = _bearer_token(req) or req.headers.get(settings.session_token_header)
            return self._is_live_session(token)
        if scheme is AuthScheme.OAUTH:
            return self._is_valid_oauth_token(_bearer_token(req))
        raise ValueError(f"unknown scheme {scheme}")

    def authenticates_any(self, req: Request) -> bool:
        return any(
            self.authenticates(scheme, req)
            for scheme in AuthScheme
            if scheme is not AuthScheme.PUBLIC
        )


def _json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _unauthorized(scheme: AuthScheme | None) -> Response:
    headers = {}
    if scheme is AuthScheme.BASIC:
        headers["WWW-Authenticate"] = 'Basic realm="data-api"'
    elif scheme in (AuthScheme.BEARER, AuthScheme.OAUTH):
        headers["WWW-Authenticate"] = 'Bearer realm="data-api"'
    body = {"error": "unauthorized", "message": "Missing or wrong credentials."}
    return _json_response(body, 401, headers)


def _fault_response(fault: ApiFault, settings: DataApiSettings) -> Response | None:
    """The response a fault replaces the real one with; ``None`` for faults that only delay."""
    if fault is ApiFault.SERVER_ERROR:
        return _json_response({"error": "server_error"}, 500)
    if fault is ApiFault.RATE_LIMITED:
        return _json_response(
            {"error": "rate_limited"}, 429, {"Retry-After": str(settings.retry_after_seconds)}
        )
    if fault is ApiFault.HTML:
        return Response("<html><body><h1>Maintenance</h1></body></html>", 200, mimetype="text/html")
    if fault is ApiFault.TRUNCATED_JSON:
        return Response('{"results": [{"id": "1", "em', 200, mimetype="application/json")
    return None


def create_data_api(settings: DataApiSettings | None = None) -> Flask:
    """Build the data API app; its :class:`DataApi` is ``app.extensions["data_api"]``."""
    app = Flask(__name__, static_folder=None)
    api = DataApi(settings)
    app.extensions["data_api"] = api

    @app.before_request
    def count_and_misbehave() -> Response | None:
        api.record_request(request)
        pending = api.take_fault(request.path)
        if pending is None:
            return None
        if pending.mode is ApiFault.SLOW:
            time.sleep(pending.delay if pending.delay is not None else api.settings.slow_seconds)
            return None
        return _fault_response(pending.mode, api.settings)

    @app.post("/session/login")
    def log_in() -> Response:
        token = api.start_session(request)
        if token is None:
            return _unauthorized(None)
        return _json_response({"data": {"session": {"token": token}}})

    def stream_page(name: str) -> Response:
        settings = api.settings
        if name in settings.forbidden_streams:
            return _json_response({"error": "forbidden", "message": f"No access to {name}."}, 403)
        if name in settings.missing_streams or name not in settings.streams:
            return _json_response({"error": "not_found", "message": f"No stream {name}."}, 404)
        return _json_response({"results": settings.streams[name]})

    for scheme in AuthScheme:
        register_scheme_routes(app, api, scheme, stream_page)

    @app.route("/streams/<name>", methods=["GET", "POST"])
    def any_credential_stream(name: str) -> Response:
        if not api.authenticates_any(request):
            return _unauthorized(None)
        return stream_page(name)

    return app


def register_scheme_routes(
    app: Flask, api: DataApi, scheme: AuthScheme, stream_page: Callable[[str], Response]
) -> None:
    """``/<scheme>/check`` and ``/<scheme>/streams/<name>``, both demanding ``scheme``."""
    endpoint = scheme.value.replace("/", "_")

    def check() -> Response:
        if not api.authenticates(scheme, request):
            return _unauthorized(scheme)
        return _json_response({"ok": True, "scheme": scheme.value})

    def stream(name: str) -> Response:
        if not api.authenticates(scheme, request):
            return _unauthorized(scheme)
        return stream_page(name)

    def guarded(view: Callable[..., Response]) -> Callable[..., Response]:
        def checked(**kwargs: Any) -> Response:
            if not api.authenticates(scheme, request):
                return _unauthorized(scheme)
            return view(**kwargs)

        return checked

    methods = ["GET", "POST"]
    app.add_url_rule(f"/{scheme.value}/check", f"{endpoint}_check", check, methods=methods)
    app.add_url_rule(
        f"/{scheme.value}/streams/<name>", f"{endpoint}_stream", stream, methods=methods
    )
    app.add_url_rule(f"/{scheme.value}/pages/<style>/<name>", f"{endpoint}_pages",
                     guarded(lambda style, name: paged(api, style, name)), methods=methods)
    app.add_url_rule(f"/{scheme.value}/records/<name>/<record_id>", f"{endpoint}_record",
                     guarded(lambda name, record_id: one_record(api, name, record_id)), methods=methods)
    app.add_url_rule(f"/{scheme.value}/big", f"{endpoint}_big",
                     guarded(lambda: Response(b"x" * api.settings.big_answer_bytes, mimetype="text/plain")))
    app.add_url_rule(f"/{scheme.value}/echo/<path:rest>", f"{endpoint}_echo", guarded(lambda rest: echo(rest)),
                     methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


def paged(api: DataApi, style: str, name: str) -> Response:
    """A page of stream ``name`` as the pagination ``style`` serves it (limit at most 100)."""
    records = api.settings.streams.get(name)
    if records is None:
        return _json_response({"error": "not_found"}, 404)
    limit = min(int(request.args.get("limit") or request.args.get("per_page") or 10), 100)
    if style == "page":
        start = (int(request.args.get("page", 1)) - 1) * limit
    elif style == "offset":
        start = int(request.args.get("offset", 0))
    else:  # cursor, next_link, link_header: the position is the next record's index, base64 so it is opaque
        token = request.args.get("after") or request.args.get("page_token")
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
    chunk, end = records[start:start + limit], start + limit
    following = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(records) else None
    body: dict[str, Any] = {"results": chunk}
    headers = {}
    if style == "cursor":
        body["paging"] = {"next": {"after": following}} if following else {}
    elif style == "next_link" and following:
        body["next"] = f"{request.base_url}?limit={limit}&after={following}"
    elif style == "link_header" and following:
        headers["Link"] = f'<{request.base_url}?limit={limit}&page_token={following}>; rel="next"'
    return _json_response(body, headers=headers)


def one_record(api: DataApi, name: str, record_id: str) -> Response:
    found = next((r for r in api.settings.streams.get(name, []) if str(r.get("id")) == record_id), None)
    if found is None:
        return _json_response({"error": "not_found"}, 404)
    return _json_response({"record": found})


def echo(rest: str) -> Response:
    return _json_response({
        "method": request.method, "path": request.path, "query_keys": sorted(request.args),
        "header_names": sorted(name.lower() for name in request.headers.keys()),
        "body_bytes": len(request.get_data()), "content_type": request.content_type},
        headers={"Set-Cookie": "provider_session=abc; Path=/", "X-Provider": "data-api"})


def get_data_api(app: Flask) -> DataApi:
    return app.extensions["data_api"]
