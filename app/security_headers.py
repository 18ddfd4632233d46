"""Security headers of every response, set here and nowhere else (one ``after_request``).

- ``X-Content-Type-Options: nosniff`` on every response: a browser never guesses a type, so a JSON
  answer that echoes user text cannot be sniffed into HTML.
- ``Cache-Control: no-store`` on every response of a view that hands over a token or a secret once
  (the new account token, a connect session's token, the OAuth callback's ``secret_id``…): no
  browser, proxy or client cache keeps the one copy. A view opts in with :func:`shows_secret_once`.
- A ``Content-Security-Policy`` on every response that has none of its own (the connect page sets
  its own): ``default-src 'none'; frame-ancestors 'none'`` for the API, which serves no active
  content and is never framed, and for the Swagger UI of ``/docs`` a policy that lets it run (scripts
  and styles from this service only, its inline script by hash, ``/openapi.json`` fetched from here)
  and never be framed.

Flask-Talisman was considered: its defaults (HTTPS redirects, HSTS, a policy for every page) would
all have to be turned off for a service that runs on plain HTTP behind a proxy, and its last
release is from 2023; these three rules fit in one function.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request

View = TypeVar("View", bound=Callable[..., Any])

_MARK = "_shows_secret_once"
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's Swagger UI page
# The Swagger UI page: flask-smorest's template, with its assets served by this service (app/docs.py);
# its one inline script (the SwaggerUIBundle call) is allowed by hash, its images may be data: URLs.
# tests/test_security_headers.py renders it in Chromium under this policy and finds no violation.
_DOCS_POLICY = ("default-src 'none'; script-src 'self' {scripts}; style-src 'self'; "
                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def shows_secret_once(view: View) -> View:
    """Mark a view (or a ``MethodView`` method) whose responses carry a token or secret once."""
    setattr(view, _MARK, True)
    return view


def _handler(endpoint: str | None) -> Any:
    """The function that served the request: the view, or the method of a ``MethodView``."""
    view = current_app.view_functions.get(endpoint) if endpoint else None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = request.method.lower()
        return getattr(view_class, method, None) or (getattr(view_class, "get", None) if method == "head" else None)
    return view


def docs_policy(page: bytes) -> str:
    """The policy of the Swagger UI page: its inline scripts allowed by their SHA-256 only."""
    hashes = [base64.b64encode(hashlib.sha256(body).digest()).decode() for body in _INLINE_SCRIPT.findall(page)]
    return _DOCS_POLICY.format(scripts=" ".join(f"'sha256-{digest}'" for digest in hashes))


def _shows_secret(endpoint: str | None, method: str) -> bool:
    """Whether the view serving ``endpoint`` for ``method`` is marked, remembered per app (its views
    are all registered before it serves)."""
    known: dict[tuple[str | None, str], bool] = current_app.extensions.setdefault("connect.secret_views", {})
    key = (endpoint, method)
    marked = known.get(key)
    if marked is None:
        marked = known[key] = bool(getattr(_handler(endpoint), _MARK, False))
    return marked


def set_security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if _shows_secret(request.endpoint, request.method):
        response.headers["Cache-Control"] = "no-store"
    if "Content-Security-Policy" not in response.headers:
        if request.endpoint == DOCS_ENDPOINT and not response.direct_passthrough:
            response.headers["Content-Security-Policy"] = docs_policy(response.get_data())
        else:
            response.headers["Content-Security-Policy"] = API_POLICY
    return response


def init_app(app: Flask) -> None:
    app.after_request(set_security_headers)
