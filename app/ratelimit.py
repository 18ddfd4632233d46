"""Per-account rate limiting of the API (``CONNECT_RATE_LIMIT``), with Flask-Limiter.

Off unless ``CONNECT_RATE_LIMIT`` holds a limit such as ``100/minute`` (or ``10/second;500/hour``):
then every account has one budget across all ``/v4`` endpoints, however many tokens it holds. A
request over it gets 429 in the one error shape with ``Retry-After`` (whole seconds).

Who is counted:

- an account token: by account, so the limit follows the tenant and not the token it sends;
- the operator token: not limited (it administers the service; throttling it could lock the
  operator out while cleaning up after a misbehaving account);
- a public ``/v4`` endpoint (the OAuth callback a browser follows): by remote address;
- everything outside ``/v4`` (health, ``/openapi.json``, the docs): not limited.

The limiter's ``before_request`` hook must run after app/auth.py's, which sets ``g.principal``:
Flask runs ``before_request`` hooks in registration order, so :func:`init_app` is called after
``auth.init_app``. A request with a missing or bad token is refused by authentication before it
reaches the limiter, so it costs no budget (tokens are 256-bit random; guessing is no threat).

Counters live in ``CONNECT_RATE_LIMIT_STORAGE_URI`` (``memory://`` by default): each process
counts on its own, so with N gunicorn workers an account can make up to N times the limit. A
shared store (``redis://host:6379``, with the ``redis`` package installed) makes the limit exact
across workers and hosts. If that store is unreachable, requests are let through (and the error
logged) rather than refused: an outage of the counter store must not take the API down.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many

from .errors import error_response
from .paths import is_api_path

EXTENSION_KEY = "connect.ratelimit"


def rate_limit_key() -> str:
    """The bucket a request is counted in (see the module docstring)."""
    principal = g.get("principal")
    if principal is not None and principal.account_id is not None:
        return f"account:{principal.account_id}"
    return f"address:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    if not is_api_path(request.path):
        return True
    principal = g.get("principal")
    return principal is not None and principal.is_operator


def _rate_limited(error: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions[EXTENSION_KEY]
    retry_after = _seconds_until_reset(limiter, error)
    return error_response(
        429, "rate_limited",
        f"rate limit of {error.limit.limit} exceeded for this account; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)})


def _seconds_until_reset(limiter: Limiter, error: RateLimitExceeded) -> int:
    try:
        breached = limiter.current_limit
        if breached is not None:
            return max(1, math.ceil(breached.window.reset_time - time.time()))
    except Exception:  # noqa: BLE001  the counter store failed between the check and now
        pass
    return max(1, error.limit.limit.get_expiry())


def init_app(app: Flask) -> Limiter | None:
    """Limit the app's API by ``RATE_LIMIT``; do nothing when it is empty.

    A limit that does not parse stops start-up, naming the setting, rather than failing later on
    every request.
    """
    value = (app.config.get("RATE_LIMIT") or "").strip()
    if not value:
        return None
    try:
        parse_many(value)
    except ValueError as error:
        raise RuntimeError(f"CONNECT_RATE_LIMIT={value!r} is not a rate limit such as '100/minute': "
                           f"{error}") from None
    limiter = Limiter(
        rate_limit_key,
        application_limits=[value],
        storage_uri=app.config.get("RATE_LIMIT_STORAGE_URI") or "memory://",
        strategy="fixed-window",
        # A store outage lets requests through (and is logged) instead of turning them into 500s.
        swallow_errors=True,
        # Limit headers on every response would add a store read to each request; 429s carry
        # Retry-After, which is what a client needs.
        headers_enabled=False,
    )
    limiter.request_filter(_exempt)
    limiter.init_app(app)
    app.extensions[EXTENSION_KEY] = limiter
    # More specific than the HTTPException handler of app/errors.py, so it wins for 429s from here.
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter
