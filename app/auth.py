"""Bearer tokens → the caller: the operator, or one account.

Account tokens are random and stored as SHA-256 hashes; a lookup hashes the presented token and
finds the row by hash, then compares in constant time. The operator token comes from
``CONNECT_OPERATOR_TOKEN`` or ``instance/operator_token`` and is compared the same way.
Views declare who may call them with :func:`operator_only` / :func:`account_only`; everything under
``/v4`` needs a token unless the view is marked :func:`public`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from sqlalchemy import select

from . import db
from .errors import AccessDenied, Unauthorized
from .models import AccountToken

TOKEN_PREFIX = "cn_"
F = TypeVar("F", bound=Callable[..., Any])


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
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def resolve_principal(token: str) -> Principal | None:
    operator_token = current_app.config.get("OPERATOR_TOKEN")
    presented_hash = hash_token(token)
    if operator_token and hmac.compare_digest(presented_hash, hash_token(operator_token)):
        return Principal("operator")
    session = db.session()
    with session.begin():
        row = session.execute(
            select(AccountToken.id, AccountToken.account_id, AccountToken.token_hash).where(
                AccountToken.token_hash == presented_hash, AccountToken.revoked_at.is_(None)
            )
        ).first()
    if row is None or not hmac.compare_digest(row.token_hash, presented_hash):
        return None
    return Principal("account", account_id=row.account_id, token_id=row.id)


def authenticate_request() -> None:
    g.principal = None
    if not request.path.startswith("/v4/") or _is_public(request.endpoint):
        return
    token = _bearer_token()
    if token is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = resolve_principal(token)
    if principal is None:
        raise Unauthorized("invalid or revoked token")
    g.principal = principal


def current_principal() -> Principal:
    principal = g.get("principal")
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

    return wrapper  # type: ignore[return-value]


def account_only(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_account_id()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    app.before_request(authenticate_request)
