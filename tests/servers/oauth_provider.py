"""A real OAuth 2 authorization server for tests, with switches that make it misbehave.

Built from Authlib's server components so the code under test meets the same validation a
real provider applies (redirect URI matching, client authentication method, PKCE, one-time
codes, refresh-token rotation), while storage stays in memory and every answer can be bent
at run time through :class:`OAuthProvider`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, Request, Response, json, request
from werkzeug.datastructures import MultiDict

from .planted import plant

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"  # RFC 7009
RESOURCE_PATH = "/api/me"

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
ALL_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")

# Form fields whose values are credentials: kept for assertions, masked in every repr.
SECRET_FORM_FIELDS = frozenset({"client_secret", "code", "code_verifier", "refresh_token"})


class TokenFault(StrEnum):
    """Ways the token endpoint can misbehave for the next N requests."""

    INVALID_GRANT = "invalid_grant"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    HTML = "html"
    TRUNCATED_JSON = "truncated_json"
    NO_EXPIRES_IN = "no_expires_in"
    EXPIRES_AT_ABSOLUTE = "expires_at_absolute"
    LOST_RESPONSE = "lost_response"
    # Issue (and rotate) as usual, then hold the answer past the client's timeout: the same lost
    # answer as LOST_RESPONSE, seen by the client as a timeout instead of a dropped connection.
    COMMITTED_THEN_SLOW = "committed_then_slow"
    NO_ACCESS_TOKEN = "no_access_token"
    # Hold the request before answering it until ``release_hung_requests()`` (or ``delay`` seconds,
    # default 30) — a provider that hangs; then answer as usual.
    HANG = "hang"
    # Issue (and rotate) as usual, then hold the answer until released (or ``delay``, default 30 s).
    COMMITTED_THEN_HANG = "committed_then_hang"


HANGING_FAULTS = frozenset({TokenFault.HANG, TokenFault.COMMITTED_THEN_HANG})

# Answered before Authlib sees the request: nothing is issued, no refresh token is used up.
FAULTS_BEFORE_PROCESSING = frozenset(
    {
        TokenFault.INVALID_GRANT,
        TokenFault.SERVER_ERROR,
        TokenFault.RATE_LIMITED,
        TokenFault.HTML,
        TokenFault.TRUNCATED_JSON,
    }
)


@dataclass
class ProviderSettings:
    """Behaviour of the provider; fields may be changed while the server runs."""

    rotate_refresh_tokens: bool = False
    access_token_lifetime: int = 3600
    authorization_code_lifetime: int = 600
    deny_consent: bool = False
    require_pkce: bool = False
    extra_token_fields: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: int = 1
    slow_seconds: float = 0.3
    expires_at_field: str = "expires_at"
    expires_at_format: str = "%Y-%m-%dT%H:%M:%SZ"
    user_id: str = "test-user"
    # How the token endpoint takes its parameters: "form" (RFC 6749), "json" (one JSON object, as
    # Square's ObtainToken does) or "any"; a request in another encoding gets 400 invalid_request.
    token_request_encoding: Literal["any", "form", "json"] = "any"
    # A refresh token unused for longer than this is dead (Google: 6 months, Adobe Sign: 60 days).
    refresh_token_idle_seconds: float | None = None


@dataclass(frozen=True)
class ResourceOwner:
    """The one user who always approves (unless consent is denied)."""

    user_id: str

    def get_user_id(self) -> str:
        return self.user_id


@dataclass
class Client(ClientMixin):
    """A registered OAuth app; ``scope`` empty means any requested scope is granted as asked."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: list[str]
    grant_types: set[str]
    token_endpoint_auth_method: str
    scope: str = ""

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        if not scope:
            return self.scope
        if not self.scope:
            return scope
        if set(scope_to_list(scope)) <= set(scope_to_list(self.scope)):
            return scope
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str | None
    scope: str
    user_id: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


@dataclass
class IssuedToken(TokenMixin):
    """One token response's worth of credentials, as the provider remembers it."""

    client_id: str
    user_id: str | None
    grant_type: str
    scope: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int
    access_token_expires_at: float
    access_token_revoked: bool = False
    refresh_token_revoked: bool = False
    refresh_token_used_at: float = field(default_factory=time.time)  # issued or last exchanged

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.access_token_expires_at

    def is_revoked(self) -> bool:
        return self.access_token_revoked

    def get_user(self) -> ResourceOwner | None:
        return ResourceOwner(self.user_id) if self.user_id else None


@dataclass(frozen=True)
class TokenRequestRecord:
    """What a client sent to the token endpoint, for asserting how it authenticated."""

    grant_type: str | None
    form: dict[str, str] = field(repr=False)
    auth_scheme: str | None
    basic_client_id: str | None
    content_type: str

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.form)

    @property
    def client_auth(self) -> str:
        """The client authentication method the request used, in RFC 7591 terms."""
        if self.auth_scheme == "basic":
            return "client_secret_basic"
        if "client_secret" in self.form:
            return "client_secret_post"
        return "none"

    def masked_form(self) -> dict[str, str]:
        return {k: "***" if k in SECRET_FORM_FIELDS else v for k, v in self.form.items()}

    def __repr__(self) -> str:
        return (
            f"TokenRequestRecord(grant_type={self.grant_type!r}, form={self.masked_form()!r}, "
            f"client_auth={self.client_auth!r})"
        )


@dataclass
class _PendingFault:
    mode: TokenFault
    remaining: int | None
    delay: float | None


class OAuthProvider:
    """In-memory state, counters and fault switches of one test provider.

    Every mutation happens under ``lock``; the token endpoint holds it for the whole
    exchange so two refreshes racing on one refresh token behave like a strict provider:
    with rotation on, only the first one wins.
    """

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        self.settings = settings or ProviderSettings()
        self.lock = threading.RLock()
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._by_access_token: dict[str, IssuedToken] = {}
        self._by_refresh_token: dict[str, IssuedToken] = {}
        self._faults: deque[_PendingFault] = deque()
        self.token_requests = 0
        self.token_requests_by_grant: Counter[str] = Counter()
        # Faults actually served, by mode (tests count what they injected from this).
        self.faults_served: Counter[str] = Counter()
        self.refresh_tokens_issued: list[str] = []
        self.access_tokens_issued: list[str] = []
        self.last_token_request: TokenRequestRecord | None = None
        self.authorization_requests = 0
        self.last_authorization_request: dict[str, str] | None = None
        # (token_type_hint, which token) of each RFC 7009 revocation that found its token.
        self.revocations: list[tuple[str | None, str]] = []
        self._hung_released = threading.Event()

    @property
    def user(self) -> ResourceOwner:
        return ResourceOwner(self.settings.user_id)

    @property
    def last_refresh_token(self) -> str | None:
        with self.lock:
            return self.refresh_tokens_issued[-1] if self.refresh_tokens_issued else None

    @property
    def last_access_token(self) -> str | None:
        with self.lock:
            return self.access_tokens_issued[-1] if self.access_tokens_issued else None

    def add_client(
        self,
        client_id: str = "test-client",
        client_secret: str = "test-secret",
        redirect_uris: Iterable[str] = ("http://127.0.0.1/callback",),
        grant_types: Iterable[str] = ALL_GRANT_TYPES,
        token_endpoint_auth_method: str = "client_secret_post",
        scope: str = "",
    ) -> Client:
        """Register (or replace) an OAuth app."""
        if token_endpoint_auth_method not in CLIENT_AUTH_METHODS:
            raise ValueError(f"unsupported token_endpoint_auth_method {token_endpoint_auth_method}")
        plant(client_secret, f"provider:client_secret:{client_id}")
        client = Client(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=list(redirect_uris),
            grant_types=set(grant_types),
            token_endpoint_auth_method=token_endpoint_auth_method,
            scope=scope,
        )
        with self.lock:
            self._clients[client_id] = client
        return client

    def find_client(self, client_id: str) -> Client | None:
        with self.lock:
            return self._clients.get(client_id)

    def fail_next_token_requests(
        self, mode: TokenFault | str, count: int | None = 1, *, delay: float | None = None
    ) -> None:
        """Make the next ``count`` token requests misbehave (``None``: until cleared).

        Faults queue up in order, so ``server_error`` then ``slow`` is two calls.
        ``delay`` applies to ``slow`` and ``committed_then_slow`` (default ``settings.slow_seconds``).
        """
        with self.lock:
            if TokenFault(mode) in HANGING_FAULTS and self._hung_released.is_set():
                self._hung_released = threading.Event()
            self._faults.append(_PendingFault(TokenFault(mode), count, delay))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
        self.release_hung_requests()

    def release_hung_requests(self) -> None:
        """Let every request held by a ``hang`` fault be answered now."""
        self._hung_released.set()

    def hang(self, seconds: float) -> None:
        self._hung_released.wait(seconds)

    def take_fault(self) -> _PendingFault | None:
        """The fault for the request being answered, using up one of its count."""
        with self.lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.popleft()
            self.faults_served[fault.mode.value] += 1
            return fault

    def record_token_request(self, form: Mapping[str, str], headers: Mapping[str, str]) -> None:
        scheme, _, credentials = headers.get("Authorization", "").partition(" ")
        basic_client_id = None
        if scheme.lower() == "basic":
            basic_client_id = _basic_username(credentials)
        record = TokenRequestRecord(
            grant_type=form.get("grant_type"),
            form=dict(form),
            auth_scheme=scheme.lower() or None,
            basic_client_id=basic_client_id,
            content_type=headers.get("Content-Type", ""),
        )
        for name in SECRET_FORM_FIELDS:
            plant(form.get(name), f"provider:token_request:{name}")
        with self.lock:
            self.token_requests += 1
            self.token_requests_by_grant[record.grant_type or ""] += 1
            self.last_token_request = record

    def record_authorization_request(self, args: Mapping[str, str]) -> None:
        with self.lock:
            self.authorization_requests += 1
            self.last_authorization_request = dict(args)

    def generate_token(
        self,
        grant_type: str,
        client: Client,
        user: ResourceOwner | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """Authlib token generator that always states ``expires_in``, even 0 (already expired)."""
        granted_scope = client.get_allowed_scope(scope)
        if granted_scope is None:
            raise InvalidScopeError()
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": generate_token(42),
            "expires_in": self.settings.access_token_lifetime if expires_in is None else expires_in,
        }
        if include_refresh_token:
            token["refresh_token"] = generate_token(48)
        if granted_scope:
            token["scope"] = granted_scope
        return token

    def save_token(self, token: Mapping[str, Any], oauth_request: OAuth2Request) -> None:
        user = oauth_request.user
        self._store_token(
            token,
            client_id=oauth_request.client.get_client_id(),
            user_id=user.get_user_id() if user else None,
            grant_type=oauth_request.payload.grant_type,
        )

    def _store_token(
        self, token: Mapping[str, Any], *, client_id: str, user_id: str | None, grant_type: str
    ) -> IssuedToken:
        issued = IssuedToken(
            client_id=client_id,
            user_id=user_id,
            grant_type=grant_type,
            scope=token.get("scope", ""),
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_in=token["expires_in"],
            access_token_expires_at=time.time() + token["expires_in"],
        )
        plant(issued.access_token, "provider:access_token")
        plant(issued.refresh_token, "provider:refresh_token")
        with self.lock:
            self._by_access_token[issued.access_token] = issued
            self.access_tokens_issued.append(issued.access_token)
            if issued.refresh_token:
                self._by_refresh_token[issued.refresh_token] = issued
                self.refresh_tokens_issued.append(issued.refresh_token)
        return issued

    def issue_token(self, client_id: str = "test-client", scope: str = "") -> dict[str, Any]:
        """Issue a token pair directly, as if the handshake had happened (for fixtures)."""
        client = self.find_client(client_id)
        if client is None:
            raise KeyError(f"no client {client_id!r}")
        token = self.generate_token("authorization_code", client, self.user, scope)
        self._store_token(
            token, client_id=client_id, user_id=self.user.user_id, grant_type="authorization_code"
        )
        return token

    def save_authorization_code(self, code: AuthorizationCode) -> None:
        plant(code.code, "provider:authorization_code")
        with self.lock:
            self._codes[code.code] = code

    def find_authorization_code(self, code: str, client: ClientMixin) -> AuthorizationCode | None:
        with self.lock:
            found = self._codes.get(code)
        if found and found.client_id == client.get_client_id() and not found.is_expired():
            return found
        return None

    def delete_authorization_code(self, code: AuthorizationCode) -> None:
        with self.lock:
            self._codes.pop(code.code, None)

    def find_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        with self.lock:
            issued = self._by_refresh_token.get(refresh_token)
        idle = self.settings.refresh_token_idle_seconds
        if issued and idle is not None and time.time() - issued.refresh_token_used_at > idle:
            return None  # lapsed from disuse
        if issued and not issued.refresh_token_revoked:
            return issued
        return None

    def idle_refresh_tokens(self, seconds: float) -> None:
        """Let ``seconds`` of disuse pass for every refresh token (a test's clock for idleness)."""
        with self.lock:
            for issued in self._by_refresh_token.values():
                issued.refresh_token_used_at -= seconds

    def find_issued(self, token: str, hint: str | None) -> IssuedToken | None:
        with self.lock:
            if hint != "refresh_token" and token in self._by_access_token:
                return self._by_access_token[token]
            return self._by_refresh_token.get(token) or self._by_access_token.get(token)

    def revoke_issued(self, issued: IssuedToken, token: str, hint: str | None) -> None:
        """RFC 7009: revoking a refresh token revokes its grant's access token too."""
        with self.lock:
            which = "refresh_token" if token == issued.refresh_token else "access_token"
            issued.access_token_revoked = True
            if which == "refresh_token":
                issued.refresh_token_revoked = True
            self.revocations.append((hint, which))

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self.lock:
            issued = self._by_refresh_token.get(refresh_token)
            if issued:
                issued.refresh_token_revoked = True

    def revoke_refresh_tokens(self) -> None:
        """Forget every grant, as when the user removes the app at the provider."""
        with self.lock:
            for issued in self._by_refresh_token.values():
                issued.refresh_token_revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired, forcing a refresh."""
        with self.lock:
            for issued in self._by_access_token.values():
                issued.access_token_expires_at = 0.0

    def issued_to(self, client_id: str) -> list[IssuedToken]:
        """Every token response issued to ``client_id``, oldest first."""
        with self.lock:
            return [issued for issued in self._by_access_token.values() if issued.client_id == client_id]

    def find_access_token(self, access_token: str) -> IssuedToken | None:
        with self.lock:
            return self._by_access_token.get(access_token)

    def is_valid_access_token(self, access_token: str) -> bool:
        """True for an access token this provider issued that is neither expired nor revoked."""
        issued = self.find_access_token(access_token)
        return bool(issued and not issued.is_expired() and not issued.is_revoked())


def _basic_username(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def _provider_of(server: AuthorizationServer) -> OAuthProvider:
    return server.provider  # type: ignore[attr-defined]


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(self, code: str, oauth_request: OAuth2Request) -> None:
        provider = _provider_of(self.server)
        data = oauth_request.payload.data
        provider.save_authorization_code(
            AuthorizationCode(
                code=code,
                client_id=oauth_request.client.get_client_id(),
                redirect_uri=oauth_request.payload.redirect_uri,
                scope=oauth_request.scope or "",
                user_id=oauth_request.user.get_user_id(),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                expires_at=time.time() + provider.settings.authorization_code_lifetime,
            )
        )

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthorizationCode | None:
        return _provider_of(self.server).find_authorization_code(code, client)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        _provider_of(self.server).delete_authorization_code(authorization_code)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> ResourceOwner:
        return ResourceOwner(authorization_code.user_id)


class RefreshGrant(grants.RefreshTokenGrant):
    """Rotation follows ``settings.rotate_refresh_tokens`` at the moment of each refresh."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    rotating = False

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        return _provider_of(self.server).find_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: IssuedToken) -> ResourceOwner | None:
        return refresh_token.get_user()

    def issue_token(self, user: ResourceOwner, refresh_token: IssuedToken) -> dict[str, Any]:
        self.rotating = _provider_of(self.server).settings.rotate_refresh_tokens
        refresh_token.refresh_token_used_at = time.time()
        return self.generate_token(
            user=user,
            scope=self.request.payload.scope or refresh_token.get_scope(),
            include_refresh_token=self.rotating,
        )

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        if self.rotating and refresh_token.refresh_token:
            _provider_of(self.server).revoke_refresh_token(refresh_token.refresh_token)


class TokenRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return _provider_of(self.server).find_issued(token_string, token_type_hint)

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        _provider_of(self.server).revoke_issued(token, request.form["token"], request.form.get("token_type_hint"))


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; a challenge without a method is refused rather than taken as plain."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__(required=True)
        self.provider = provider

    def validate_code_challenge(self, grant: grants.BaseGrant, redirect_uri: str) -> None:
        super().validate_code_challenge(grant, redirect_uri)
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            if self.provider.settings.require_pkce:
                raise InvalidRequestError("Missing 'code_challenge'")
            return
        if not data.get("code_challenge_method"):
            raise InvalidRequestError("Missing 'code_challenge_method'; only S256 is supported")


class ProviderTokenValidator(BearerTokenValidator):
    def __init__(self, provider: OAuthProvider) -> None:
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        return self.provider.find_access_token(token_string)


def token_request_fields(req: Request) -> MultiDict[str, str]:
    """The parameters of a token request: its form fields, or the string members of its JSON object."""
    if not req.is_json:
        return req.form
    body = req.get_json(silent=True)
    if not isinstance(body, dict):
        return MultiDict()
    return MultiDict({key: value for key, value in body.items() if isinstance(value, str)})


class JsonBodyRequest(FlaskOAuth2Request):
    """A token request whose parameters came as a JSON object: Authlib reads form fields (for the
    grant and for client_secret_post), so the object's members stand in for them."""

    def __init__(self, req: Request) -> None:
        super().__init__(req)
        self._fields = token_request_fields(req)
        self.payload = BasicOAuth2Payload(self._fields)

    @property
    def form(self) -> MultiDict[str, str]:
        return self._fields


class ProviderAuthorizationServer(AuthorizationServer):
    """Authlib's Flask server wired to an :class:`OAuthProvider`'s storage."""

    def __init__(self, app: Flask, provider: OAuthProvider) -> None:
        self.provider = provider
        super().__init__(app, query_client=provider.find_client, save_token=provider.save_token)
        self.register_token_generator("default", provider.generate_token)
        self.register_grant(CodeGrant, [S256CodeChallenge(provider)])
        self.register_grant(RefreshGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(TokenRevocation)

    def create_oauth2_request(self, req: Any) -> OAuth2Request:
        if request.is_json:
            return JsonBodyRequest(request)
        return super().create_oauth2_request(req)


def _fault_response(fault: TokenFault, settings: ProviderSettings) -> Response:
    if fault is TokenFault.INVALID_GRANT:
        body = {"error": "invalid_grant", "error_description": "Injected invalid_grant."}
        return Response(json.dumps(body), status=400, mimetype="application/json")
    if fault is TokenFault.SERVER_ERROR:
        return Response(json.dumps({"error": "server_error"}), 500, mimetype="application/json")
    if fault is TokenFault.RATE_LIMITED:
        return Response(
            json.dumps({"error": "rate_limited"}),
            status=429,
            mimetype="application/json",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    if fault is TokenFault.HTML:
        return Response("<html><body><h1>Sign in</h1></body></html>", 200, mimetype="text/html")
    if fault is TokenFault.TRUNCATED_JSON:
        return Response('{"access_token": "abc', status=200, mimetype="application/json")
    raise ValueError(f"{fault} is not answered before processing")


def _reshape_token_response(
    response: Response, fault: TokenFault | None, settings: ProviderSettings
) -> Response:
    """Apply extra fields and shape faults to a successful (already committed) token response."""
    if response.status_code != 200 or (fault is None and not settings.extra_token_fields):
        return response
    payload = response.get_json()
    payload.update(settings.extra_token_fields)
    if fault is TokenFault.NO_EXPIRES_IN:
        payload.pop("expires_in", None)
    elif fault is TokenFault.EXPIRES_AT_ABSOLUTE:
        expires_at = datetime.now(UTC) + timedelta(seconds=payload.pop("expires_in"))
        payload[settings.expires_at_field] = expires_at.strftime(settings.expires_at_format)
    elif fault is TokenFault.NO_ACCESS_TOKEN:
        payload.pop("access_token", None)
    response.set_data(json.dumps(payload))
    return response


def _drop_connection() -> Response:
    """Lose the response after the token was committed, as a proxy or network failure would.

    Under werkzeug's server the socket is shut down so the client sees a dropped connection;
    elsewhere (Flask's test client) a 502 stands in.
    """
    connection = request.environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response("Bad Gateway", status=502, mimetype="text/plain")


def create_oauth_provider(settings: ProviderSettings | None = None) -> Flask:
    """Build the provider app; its :class:`OAuthProvider` is ``app.extensions["provider"]``."""
    app = Flask(__name__, static_folder=None)
    provider = OAuthProvider(settings)
    app.extensions["provider"] = provider
    server = ProviderAuthorizationServer(app, provider)
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(ProviderTokenValidator(provider))

    @app.get(AUTHORIZE_PATH)
    def authorize() -> Response:
        """Auto-approves the fixed user: no login page, no consent form."""
        provider.record_authorization_request(request.args)
        try:
            grant = server.get_consent_grant(end_user=provider.user)
        except OAuth2Error as error:
            return server.handle_error_response(request, error)
        grant_user = None if provider.settings.deny_consent else provider.user
        with provider.lock:
            return server.create_authorization_response(grant_user=grant_user, grant=grant)

    @app.post(TOKEN_PATH)
    def issue_token() -> Response:
        provider.record_token_request(token_request_fields(request), request.headers)
        wanted = provider.settings.token_request_encoding
        if wanted != "any" and wanted != ("json" if request.is_json else "form"):
            body = {"error": "invalid_request", "error_description": f"Send the parameters as {wanted}."}
            return Response(json.dumps(body), status=400, mimetype="application/json")
        pending = provider.take_fault()
        fault = pending.mode if pending else None
        if fault in FAULTS_BEFORE_PROCESSING:
            return _fault_response(fault, provider.settings)
        delay = pending.delay if pending and pending.delay is not None else provider.settings.slow_seconds
        if fault is TokenFault.SLOW:
            time.sleep(delay)
        if fault is TokenFault.HANG:
            provider.hang(pending.delay if pending and pending.delay is not None else 30.0)
        with provider.lock:
            response = server.create_token_response()
        if fault is TokenFault.LOST_RESPONSE and response.status_code == 200:
            return _drop_connection()
        if fault is TokenFault.COMMITTED_THEN_SLOW:
            time.sleep(delay)  # outside the lock: the provider's other clients go on
        if fault is TokenFault.COMMITTED_THEN_HANG:
            provider.hang(pending.delay if pending and pending.delay is not None else 30.0)
        return _reshape_token_response(response, fault, provider.settings)

    @app.post(REVOKE_PATH)
    def revoke() -> Response:
        with provider.lock:
            return server.create_endpoint_response(TokenRevocation.ENDPOINT_NAME)

    @app.get(RESOURCE_PATH)
    @require_oauth()
    def me() -> dict[str, Any]:
        return {
            "user": current_token.user_id,
            "client_id": current_token.client_id,
            "scope": current_token.scope,
        }

    return app


def get_provider(app: Flask) -> OAuthProvider:
    return app.extensions["provider"]
