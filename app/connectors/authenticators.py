"""Authenticators: how a request to a source's API proves who it is, one per ``auth.type``.

Every authenticator is a ``requests.auth.AuthBase``: requests calls it on the prepared request
(after the body is built, before Content-Length is settled), so the same object serves the
connection check, discovery and any later call. The specs they are built from are the card's
``auth`` section *already rendered* with the source's properties (see app/connectors/http.py);
nothing here reads the database.

Static credentials (``none``, ``basic``, ``bearer``, ``api_key``) are applied as given. Tokens
that are obtained and expire (``oauth2``, ``session_token``) come from a callable — the token
store (app/connectors/tokens.py) — which decides when to refresh; this module only knows how to
ask the provider (:class:`OAuth2Grant`, :class:`SessionLogin`) and how to read its answer.

Every credential value an authenticator handles is handed to :mod:`app.redaction`, so a log line
that happens to contain one shows ``[REDACTED]``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import requests
from requests.auth import AuthBase
from requests.models import PreparedRequest

from .. import redaction
from ..catalog.frozen import thaw
from ..catalog.sections import INJECT_INTO, AuthSection
from .errors import AuthConfigurationError, TokenRequestError

log = logging.getLogger("connect.authenticators")

# The lifetime assumed for an access token whose response states none (and whose card sets no
# ``default_expires_in``). One hour is what most providers issue; if a token dies sooner the API
# answers 401 and the request is retried once with a forced refresh (app/connectors/http.py).
DEFAULT_EXPIRES_IN = 3600
TOKEN_REQUEST_ENCODINGS = ("form", "json")
# Error codes from a provider are kept (in events and the source's setup_error) only if they look
# like codes; anything else becomes ``http_<status>``.
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:\-]{1,60}$")
_DESCRIPTION_LIMIT = 200
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True)
class IssuedToken:
    """A token a provider handed out. ``expires_at`` None: valid for this request only."""

    value: str = field(repr=False)
    expires_at: datetime | None
    # A refresh token that came back with it (rotation), if any.
    refresh_token: str | None = field(default=None, repr=False)
    # False when the answer said nothing of the lifetime: ``expires_at`` is then an assumption.
    expiry_stated: bool = True


# --- where a credential goes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Injection:
    """Where a credential is put: a header, a query parameter, a form field or a JSON field.

    ``prefix`` is put verbatim before the value (include its trailing space: ``"Token "``).
    """

    inject_into: str
    field_name: str
    prefix: str = ""

    @classmethod
    def of(cls, inject_into: str, field_name: str, prefix: str, where: str) -> Injection:
        if inject_into not in INJECT_INTO:
            raise AuthConfigurationError(f"{where}.inject_into must be one of {', '.join(INJECT_INTO)}")
        if not field_name:
            raise AuthConfigurationError(f"{where}.field_name is required")
        return cls(inject_into, field_name, prefix)

    def apply(self, request: PreparedRequest, value: str) -> None:
        credential = self.prefix + value
        redaction.remember(value)
        redaction.remember(credential)
        if self.inject_into == "header":
            request.headers[self.field_name] = credential
        elif self.inject_into == "request_parameter":
            request.prepare_url(request.url, {self.field_name: credential})
        elif self.inject_into == "body_data":
            _set_form_field(request, self.field_name, credential)
        else:
            _set_json_field(request, self.field_name, credential)


BEARER = Injection("header", "Authorization", "Bearer ")


def _body_text(request: PreparedRequest) -> str:
    body = request.body
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode()
    if isinstance(body, str):
        return body
    raise AuthConfigurationError("cannot add a credential to a streamed request body")


def _set_form_field(request: PreparedRequest, name: str, value: str) -> None:
    text = _body_text(request)
    content_type = request.headers.get("Content-Type", "")
    if text and not content_type.startswith("application/x-www-form-urlencoded"):
        raise AuthConfigurationError("inject_into body_data needs a form body (the request has another)")
    pairs = [(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k != name]
    request.body = urlencode([*pairs, (name, value)])
    request.headers["Content-Type"] = "application/x-www-form-urlencoded"


def _set_json_field(request: PreparedRequest, name: str, value: str) -> None:
    text = _body_text(request)
    document: Any = {}
    if text:
        try:
            document = json.loads(text)
        except ValueError:
            document = None
    if not isinstance(document, dict):
        raise AuthConfigurationError("inject_into body_json needs a JSON object body (the request has another)")
    document[name] = value
    request.body = json.dumps(document).encode()
    request.headers["Content-Type"] = "application/json"


# --- authenticators -------------------------------------------------------------------------------

class Authenticator(AuthBase):
    """Applies a credential to a prepared request.

    ``renew`` is asked after the API answered 401: an authenticator whose credential can be
    replaced (a cached token) gets a fresh one and says whether resending is worth it.
    """

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        return request

    def renew(self) -> bool:
        return False


class NoAuth(Authenticator):
    """``none``: the request goes out as it is (and, unlike ``auth=None``, ignores ~/.netrc)."""


class BasicAuth(Authenticator):
    """``basic``: RFC 7617 with UTF-8; an empty password is sent as ``user:``."""

    def __init__(self, username: str, password: str = "") -> None:
        self.header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        redaction.remember(password)
        redaction.remember(self.header.removeprefix("Basic "))

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


class InjectedAuth(Authenticator):
    """``bearer`` and ``api_key``: a fixed value put where the injection says."""

    def __init__(self, value: str, injection: Injection) -> None:
        if not value:
            raise AuthConfigurationError("the credential is empty")
        self.value = value
        self.injection = injection
        redaction.remember(value)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        self.injection.apply(request, self.value)
        return request


class TokenAuth(Authenticator):
    """A token from ``fetch`` (the token store), injected as bearer or API key.

    ``fetch(None)`` returns the current token; ``fetch(token)`` returns one other than ``token``
    (which the API just refused), refreshing only if no other caller has done so already.
    """

    def __init__(self, fetch: Callable[[str | None], str], injection: Injection, *,
                 renewable: bool = True) -> None:
        self.fetch = fetch
        self.injection = injection
        self.renewable = renewable
        self.used: str | None = None
        self._renewed: str | None = None

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        token, self._renewed = self._renewed or self.fetch(None), None
        self.used = token
        self.injection.apply(request, token)
        return request

    def renew(self) -> bool:
        if not self.renewable or self.used is None:
            return False
        self._renewed = self.fetch(self.used)
        return self._renewed != self.used


def static_authenticator(auth: AuthSection | None, where: str = "auth") -> Authenticator:
    """The authenticator of a rendered ``none``/``basic``/``bearer``/``api_key`` section."""
    if auth is None or auth.type == "none":
        return NoAuth()
    if auth.type == "basic":
        return BasicAuth(_required(auth.username, "username", where), auth.password)
    if auth.type == "bearer":
        return InjectedAuth(_required(auth.token, "token", where), BEARER)
    if auth.type == "api_key":
        return InjectedAuth(_required(auth.token, "token", where),
                            Injection.of(auth.inject_into, auth.field_name, auth.prefix, where))
    raise AuthConfigurationError(f"{where}.type {auth.type!r} is not a static authenticator")


def token_injection(auth: AuthSection, where: str = "auth") -> Injection:
    """Where a session token goes (``inject``); OAuth access tokens are always bearer."""
    if auth.type == "oauth2":
        return BEARER
    inject = auth.inject
    if inject is not None and inject.as_ == "bearer":
        return BEARER
    if inject is not None and inject.as_ == "api_key":
        return Injection.of(inject.inject_into, inject.field_name, inject.prefix, f"{where}.inject")
    raise AuthConfigurationError(f"{where}.inject.as must be bearer or api_key")


def _required(value: str, key: str, where: str) -> str:
    if not value:
        raise AuthConfigurationError(f"{where}.{key} is required (is the property it names provided?)")
    return value


# --- answers of token and login endpoints ---------------------------------------------------------

def retry_after_seconds(response: requests.Response, now: datetime) -> float | None:
    """``Retry-After`` as seconds from now (it may be seconds or an HTTP date)."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _error_code(payload: Any, status: int) -> str:
    code = payload.get("error") if isinstance(payload, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else f"http_{status}"


def _description(payload: Any) -> str:
    text = payload.get("error_description") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text:
        return ""
    return ": " + redaction.redact(text[:_DESCRIPTION_LIMIT])


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def classify_failure(response: requests.Response, what: str, now: datetime) -> TokenRequestError | None:
    """The error a non-2xx answer of a token or login endpoint stands for (None for 2xx).

    400, 401, 403 and other 4xx: the provider refused these credentials, and sending them again
    cannot help (permanent). 408, 425, 429, 5xx and anything unexpected: transient.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    payload = _json_or_none(response)
    code = _error_code(payload, status)
    transient = status in (408, 425, 429) or status >= 500 or status < 400
    return TokenRequestError(
        f"{what} answered HTTP {status} ({code}){_description(payload)}",
        error=code, permanent=not transient, status=status,
        retry_after=retry_after_seconds(response, now) if transient else None,
    )


def network_failure(error: requests.RequestException, what: str) -> TokenRequestError:
    """Timeouts and dropped connections: transient (the error text names no secret: bodies are
    never part of requests' exception messages)."""
    code = "timeout" if isinstance(error, requests.Timeout) else "connection_error"
    return TokenRequestError(f"{what} could not be reached ({code})", error=code, permanent=False)


# --- OAuth 2 --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OAuth2Grant:
    """The token request of an ``oauth2`` auth spec (``refresh_token`` or ``client_credentials``).

    The POST is built with plain ``requests`` rather than Authlib's ``OAuth2Session``: cards name
    the response fields (``access_token_name``, ``expires_in_name``, ``refresh_token_name``),
    give expiry in milliseconds or as an absolute date, and the token store must classify each
    failure by status, error code and ``Retry-After`` and commit a rotated refresh token before
    anything uses the new access token. Authlib's client parses the answer into its own token
    type with the standard names, raises before the raw response can be inspected, and offers
    an ``update_token`` hook that would run outside the store's transaction. Redirects are not
    followed, so a client secret is never re-posted to another host.
    """

    grant_type: str
    token_url: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    access_token_name: str = "access_token"
    expires_in_name: str = "expires_in"
    expires_in_unit: str = "seconds"
    expiry_date_format: str | None = None
    refresh_token_name: str = "refresh_token"
    default_expires_in: int = DEFAULT_EXPIRES_IN
    client_auth: str = "client_secret_post"
    token_params: tuple[tuple[str, str], ...] = ()
    # How the token request's parameters travel: "form" (RFC 6749's application/x-www-form-urlencoded)
    # or "json" (one JSON object with the same fields, as Square's ObtainToken takes them).
    request_encoding: str = "form"

    @classmethod
    def from_spec(cls, auth: AuthSection, where: str = "auth") -> OAuth2Grant:
        """The grant of a rendered ``oauth2`` auth section."""
        grant_type = auth.grant_type
        if grant_type not in ("refresh_token", "client_credentials"):
            raise AuthConfigurationError(f"{where}.grant_type must be refresh_token or client_credentials")
        request_encoding = auth.token_request_encoding or "form"
        if request_encoding not in TOKEN_REQUEST_ENCODINGS:
            raise AuthConfigurationError(f"{where}.token_request_encoding must be form or json")
        grant = cls(
            grant_type=grant_type,
            token_url=_required(auth.token_url, "token_url", where),
            client_id=_required(auth.client_id, "client_id", where),
            client_secret=auth.client_secret,
            refresh_token=(_required(auth.refresh_token, "refresh_token", where)
                           if grant_type == "refresh_token" else ""),
            scopes=tuple(auth.scopes),
            scope_separator=auth.scope_separator or " ",
            access_token_name=auth.access_token_name or "access_token",
            expires_in_name=auth.expires_in_name or "expires_in",
            expires_in_unit=auth.expires_in_unit or "seconds",
            expiry_date_format=auth.expiry_date_format or None,
            refresh_token_name=auth.refresh_token_name or "refresh_token",
            default_expires_in=auth.default_expires_in or DEFAULT_EXPIRES_IN,
            client_auth=auth.client_auth or "client_secret_post",
            token_params=tuple(auth.token_params.items()),
            request_encoding=request_encoding,
        )
        for secret in (grant.client_secret, grant.refresh_token):
            redaction.remember(secret)
        return grant

    def request_parts(self) -> tuple[dict[str, str], dict[str, str]]:
        """The fields (form fields, or the JSON object's members) and headers of the token request."""
        form: dict[str, str] = {"grant_type": self.grant_type}
        if self.grant_type == "refresh_token":
            form[self.refresh_token_name] = self.refresh_token
        if self.scopes:
            form["scope"] = self.scope_separator.join(self.scopes)
        form.update(self.token_params)
        headers = {"Accept": "application/json"}
        if self.client_auth == "client_secret_basic":
            # RFC 6749 2.3.1: each part form-encoded before joining (Authlib's client skips this).
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            redaction.remember(headers["Authorization"].removeprefix("Basic "))
        else:
            form["client_id"] = self.client_id
            if self.client_secret:
                form["client_secret"] = self.client_secret
        return form, headers

    def request_token(self, http: requests.Session, timeout: float, now: Callable[[], datetime]) -> IssuedToken:
        """POST to the token endpoint once; the answer or a classified :class:`TokenRequestError`."""
        fields, headers = self.request_parts()
        as_json = self.request_encoding == "json"
        sent_at = now()
        try:
            response = http.post(self.token_url, data=None if as_json else fields, json=fields if as_json else None,
                                 headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise network_failure(error, "the token endpoint") from None
        with response:
            failure = classify_failure(response, "the token endpoint", now())
            if failure is not None:
                raise failure
            return self.read_token_response(_json_or_none(response), sent_at)

    def read_token_response(self, payload: Any, sent_at: datetime) -> IssuedToken:
        """The token in a 2xx answer, with its expiry measured from when the request was sent."""
        if not isinstance(payload, dict):
            raise TokenRequestError("the token endpoint answered 2xx without a JSON object",
                                    error="invalid_response", permanent=False)
        refresh_token = payload.get(self.refresh_token_name)
        refresh_token = refresh_token if isinstance(refresh_token, str) and refresh_token else None
        redaction.remember(refresh_token)
        access_token = payload.get(self.access_token_name)
        if not isinstance(access_token, str) or not access_token:
            raise TokenRequestError(
                f"the token endpoint answered without {self.access_token_name!r}",
                error="no_access_token", permanent=False, refresh_token=refresh_token)
        redaction.remember(access_token)
        return IssuedToken(access_token, self.expiry(payload, sent_at), refresh_token,
                           expiry_stated=payload.get(self.expires_in_name) not in (None, ""))

    def expiry(self, payload: Mapping[str, Any], sent_at: datetime) -> datetime:
        """When the token expires: seconds or milliseconds from ``sent_at``, or an absolute time in
        ``expiry_date_format`` (naive times are UTC); the default lifetime when absent or unreadable
        (an unreadable value is logged by field name, never by value)."""
        raw = payload.get(self.expires_in_name)
        default = sent_at + timedelta(seconds=self.default_expires_in)
        if raw is None or raw == "":
            return default
        try:
            if self.expiry_date_format:
                moment = datetime.strptime(str(raw), self.expiry_date_format)
                return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
            amount = float(raw)
        except (TypeError, ValueError):
            log.warning("token expiry field not understood; using the default lifetime",
                        extra={"field": self.expires_in_name, "default_expires_in": self.default_expires_in})
            return default
        seconds = amount / 1000 if self.expires_in_unit == "milliseconds" else amount
        return sent_at + timedelta(seconds=seconds)


# --- session tokens -------------------------------------------------------------------------------

def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (``PT1H``, ``P1DT12H``).

    Years and months are refused: their length depends on the calendar, and a session lifetime
    that silently means 28 or 31 days is worse than an error at the card.
    """
    match = _DURATION.match(text or "")
    if not match:
        raise AuthConfigurationError(
            f"expiration {text!r} is not an ISO 8601 duration of W/D/H/M/S (e.g. PT1H)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def _dig(document: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(document, Mapping) and key in document:
            document = document[key]
        elif isinstance(document, list) and isinstance(key, int) and -len(document) <= key < len(document):
            document = document[key]
        else:
            return None
    return document


@dataclass(frozen=True)
class SessionLogin:
    """The login request of a ``session_token`` spec and where its answer holds the token."""

    url: str
    method: str
    token_path: tuple[str | int, ...]
    expiration: timedelta | None
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    json_body: Any = field(default=None, repr=False)
    form_body: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    auth: Authenticator = field(default_factory=NoAuth, repr=False)

    @classmethod
    def from_spec(cls, auth: AuthSection, base_url: str | None = None,
                  where: str = "auth") -> SessionLogin:
        """The login of a rendered ``session_token`` auth section."""
        login = auth.login
        if login is None:
            raise AuthConfigurationError(f"{where}.login is required")
        url = login.url
        if not url and login.path and base_url:
            url = base_url.rstrip("/") + "/" + login.path.lstrip("/")
        if not url:
            raise AuthConfigurationError(f"{where}.login.url is required")
        token_path = tuple(auth.token_path)
        if not token_path:
            raise AuthConfigurationError(f"{where}.token_path is required")
        expiration = auth.expiration
        json_body = thaw(login.json) if login.has_json else None
        form_body = tuple(login.data.items())
        for secret in _strings(json_body):
            redaction.remember(secret)
        for _, value in form_body:
            redaction.remember(value)
        return cls(
            url=url,
            method=login.method or "POST",
            token_path=token_path,
            expiration=parse_duration(expiration) if expiration else None,
            params=tuple(login.params.items()),
            headers=tuple(login.headers.items()),
            json_body=json_body,
            form_body=form_body,
            auth=static_authenticator(login.auth, f"{where}.login.auth"),
        )

    def log_in(self, http: requests.Session, timeout: float, now: Callable[[], datetime]) -> IssuedToken:
        """Send the login request once; the session token or a classified error."""
        started = now()
        try:
            response = http.request(
                self.method, self.url, params=dict(self.params) or None, headers=dict(self.headers),
                json=self.json_body, data=dict(self.form_body) or None, auth=self.auth,
                timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise network_failure(error, "the login endpoint") from None
        with response:
            failure = classify_failure(response, "the login endpoint", now())
            if failure is not None:
                raise failure
            token = _dig(_json_or_none(response), self.token_path)
        if not isinstance(token, str) or not token:
            raise TokenRequestError("the login answer holds no token at token_path",
                                    error="no_session_token", permanent=False)
        redaction.remember(token)
        return IssuedToken(token, started + self.expiration if self.expiration else None)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []
