"""Bearer tokens → the caller: the operator, or one account.

Account tokens are random and stored as SHA-256 hashes; a lookup hashes the presented token and
finds the row by hash, then compares in constant time. The operator token comes from
``CONNECT_OPERATOR_TOKEN`` or ``instance/operator_token`` and is compared the same way (its hash is
computed once, not per request).
Views declare who may call them with :func:`operator_only` / :func:`account_only`; everything under
``/v4``, ``/api/v1`` and ``/v1`` (app/paths.py) needs a token unless the view is marked :func:`public`.

Every request of an account would otherwise cost a database round trip before the view runs, so
each process keeps the principals of recently seen tokens for ``CONNECT_TOKEN_CACHE_SECONDS``
(default 5; 0 turns the cache off). The process that revokes a token drops it from its own cache at
once (:func:`forget_token`); another process may accept it until its entry expires, at most that
many seconds. Only tokens that resolved are cached: a bad token is looked up every time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy import bindparam, select

from . import db
from .errors import AccessDenied, Unauthorized
from .extensions import REFUSES_SOME_CALLERS
from .models import AccountToken
from .paths import is_api_path

TOKEN_PREFIX = "cn_"
EXTENSION_KEY = "connect.auth"
F = TypeVar("F", bound=Callable[..., Any])

# One statement for every lookup: built (and so compiled and cached by SQLAlchemy) once.
_TOKEN_LOOKUP = select(AccountToken.id, AccountToken.account_id, AccountToken.token_hash).where(
    AccountToken.token_hash == bindparam("token_hash"), AccountToken.revoked_at.is_(None))


@dataclass(frozen=True)
class Principal:
    kind: str  # "operator" | "account"
    account_id: int | None = None
    token_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


def new_token() -> tuple[str, str, str]:
    """A fresh token: (the token shown once, its hash to store, a hint to recognise it by)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token), token[-4:]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Every cache in this process (one per app), so a revocation reaches all of them.
_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()


class TokenCache:
    """Token hash → :class:`Principal`, each entry for ``ttl`` seconds (per process; thread-safe).

    Bounded: past ``max_entries`` expired entries are dropped, and if that is not enough, all.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        # Bumped by every drop: a lookup that started before a revocation committed must not put
        # what it read into the cache after the revocation dropped it.
        self.generation = 0
        _caches.add(self)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            with self._lock:
                if self._entries.get(token_hash) is entry:
                    del self._entries[token_hash]
            return None
        return entry[1]

    def put(self, token_hash: str, principal: Principal, generation: int | None = None) -> None:
        """Remember a principal; with ``generation`` (read before the lookup), only if no token
        was dropped since."""
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            if len(self._entries) >= self.max_entries:
                live = {k: v for k, v in self._entries.items() if v[0] > now}
                self._entries = live if len(live) < self.max_entries else {}
            self._entries[token_hash] = (now + self.ttl, principal)

    def drop(self, token_hash: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(token_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def forget_token(token_hash: str) -> None:
    """Drop a token from every cache of this process: call it once its revocation is committed."""
    for cache in list(_caches):
        cache.drop(token_hash)


class _AuthState:
    """Per app: the token cache and the operator token's hash (recomputed if the setting changes)."""

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache
        self._operator: tuple[str | None, str | None] = (None, None)
        self.public_endpoints: dict[str, bool] = {}  # endpoint → marked public (views are fixed once serving)

    def operator_hash(self, operator_token: str | None) -> str | None:
        token, token_hash = self._operator
        if token != operator_token:
            token_hash = hash_token(operator_token) if operator_token else None
            self._operator = (operator_token, token_hash)
        return token_hash


def token_cache(app: Flask | None = None) -> TokenCache:
    cache: TokenCache = (app or current_app).extensions[EXTENSION_KEY].cache
    return cache


def public(view: F) -> F:
    """Mark a view (function or MethodView class) as needing no token."""
    view.connect_public = True  # type: ignore[attr-defined]
    return view


def _is_public(endpoint: str | None) -> bool:
    if endpoint is None:
        return True  # routing failed: let the 404/405 handler answer
    view = current_app.view_functions.get(endpoint)
    if view is None:
        return True
    view_class = getattr(view, "view_class", None)
    return bool(getattr(view, "connect_public", False) or getattr(view_class, "connect_public", False))


def _bearer_token() -> str | None:
    header: str = request.environ.get("HTTP_AUTHORIZATION", "")  # the Authorization header
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _lookup(presented_hash: str) -> Principal | None:
    # A connection of its own, outside the request's ORM session, so the view's transactions
    # start as they would without authentication.
    with db.get_db().engine.connect() as connection:
        row = connection.execute(_TOKEN_LOOKUP, {"token_hash": presented_hash}).first()
    if row is None or not hmac.compare_digest(row.token_hash, presented_hash):
        return None
    return Principal("account", account_id=row.account_id, token_id=row.id)


def resolve_principal(token: str) -> Principal | None:
    state: _AuthState = current_app.extensions[EXTENSION_KEY]
    presented_hash = hash_token(token)
    operator_hash = state.operator_hash(current_app.config.get("OPERATOR_TOKEN"))
    if operator_hash and hmac.compare_digest(presented_hash, operator_hash):
        return Principal("operator")
    cache = state.cache
    principal = cache.get(presented_hash)  # keyed by the full hash: a hit is an exact match
    if principal is None:
        generation = cache.generation
        principal = _lookup(presented_hash)
        if principal is not None:
            cache.put(presented_hash, principal, generation)
    return principal


def authenticate_request() -> None:
    g.principal = None
    if not is_api_path(request.path):
        return
    endpoint = request.endpoint
    if endpoint is None:
        return  # routing failed: let the 404/405 handler answer
    known = current_app.extensions[EXTENSION_KEY].public_endpoints
    public_view = known.get(endpoint)
    if public_view is None:
        public_view = known[endpoint] = _is_public(endpoint)
    if public_view:
        return
    token = _bearer_token()
    if token is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = resolve_principal(token)
    if principal is None:
        raise Unauthorized("invalid or revoked token")
    g.principal = principal


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return principal


def current_account_id() -> int:
    principal = current_principal()
    if principal.account_id is None:
        raise AccessDenied("this call needs an account token, not the operator token")
    return principal.account_id


def operator_only(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_principal().is_operator:
            raise AccessDenied("this call needs the operator token")
        return view(*args, **kwargs)

    setattr(wrapper, REFUSES_SOME_CALLERS, True)  # its operations document 403 (app/extensions.py)
    return wrapper  # type: ignore[return-value]


def account_only(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_account_id()
        return view(*args, **kwargs)

    setattr(wrapper, REFUSES_SOME_CALLERS, True)
    return wrapper  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    cache = TokenCache(float(app.config.get("TOKEN_CACHE_SECONDS", 0) or 0))
    app.extensions[EXTENSION_KEY] = _AuthState(cache)
    app.before_request(authenticate_request)
