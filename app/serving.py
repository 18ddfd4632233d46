"""What the service asks of gunicorn, its HTTP server (wired by ``gunicorn.conf.py``).

**Errors gunicorn answers before the app** — a request line over ``limit_request_line`` (4094
bytes: 414), a header over ``limit_request_field_size`` (8190 bytes) or more than
``limit_request_fields`` (100: 431), control characters or NUL in a header, ``Content-Length`` with
``Transfer-Encoding``, a malformed request line, method or version (400), an unknown transfer coding
(501) — come from gunicorn's ``util.write_error`` as an HTML page. gunicorn has no setting for that
page, and the app never sees such requests (nor should it: they are what request smuggling is made
of), so each worker replaces that one function, once it has started, with one that writes the
service's error shape. gunicorn still decides the status and closes the connection, as before.
``write_error(sock, status, reason, message)`` has been gunicorn's only writer of these errors since
19.x; ``tests/test_http_edges.py`` proves the JSON against a real gunicorn, so a gunicorn that
changes it fails the suite rather than silently going back to HTML.

**Keep-alive after a body the app did not read** (a 413 for a body over ``CONNECT_MAX_BODY_BYTES``,
or a 401/404/415 answered before the body is read): before it reuses the connection, gunicorn's
threaded worker reads and discards at most 64 KiB of the rest, and closes the connection if more is
left — after it has already answered ``Connection: keep-alive``, so the client's next request meets
a closed socket (for a POST it cannot know whether it ran). A WSGI app may not send ``Connection``
itself (PEP 3333: hop-by-hop headers are the server's), so the ``pre_request`` hook asks gunicorn to
close the connection after the response (``Connection: close``) when the body is declared larger
than what gunicorn will drain, or is chunked (its size is known only once read). A client that sends
such bodies opens a new connection for its next request; small bodies keep theirs.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from .errors import DEFAULT_TYPES, error_body

# gunicorn's gthread worker reuses a connection only if less than this much of the body was left
# unread (gunicorn.http.parser._DRAIN_MAX_BYTES in gunicorn 27: it gives up once it has drained that
# much, even if nothing more was left).
KEEPALIVE_DRAIN_BYTES = 64 * 1024

# What each status gunicorn answers with means, in the service's words.
_EDGE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("request", "the request is not valid HTTP/1.1 (its request line, a header, or how its body is "
                     "framed), so the service did not read it"),
    403: ("request", "the server refused the connection (proxy protocol or TLS)"),
    414: ("request line", "the request line (method, path and query) is longer than the server accepts "
                          "(gunicorn's limit_request_line)"),
    417: ("Expect", "the server supports no expectation but 100-continue"),
    431: ("headers", "a header is longer than the server accepts, or there are too many (gunicorn's "
                     "limit_request_field_size and limit_request_fields)"),
    501: ("Transfer-Encoding", "the server supports no transfer coding but chunked"),
}
_MAX_REASON = 200


def error_page(status: int, reason: str, detail: str) -> bytes:
    """The whole HTTP response for an error gunicorn answers itself, in the service's error shape.

    ``detail`` is gunicorn's own description (e.g. ``Invalid HTTP Header: 'X-A'``): it names what is
    wrong, and may quote the request line back to the client that sent it (cut to 200 characters)."""
    field, message = _EDGE_ERRORS.get(status, ("request", "internal error; see the service log"))
    type_ = DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "malformed_request")
    details = [{"field": field, "reason": detail[:_MAX_REASON]}] if detail and status != 500 else []
    body = json.dumps(error_body(status, type_, message, details)).encode()  # ASCII: escapes the rest
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Stands in for ``gunicorn.util.write_error`` (same arguments)."""
    from gunicorn import util

    util.write_nonblock(sock, error_page(status_int, reason, mesg))


def use_json_error_pages(worker: Any) -> None:
    """gunicorn's ``post_worker_init`` hook: this worker's own error pages are JSON."""
    from gunicorn import util

    util.write_error = write_json_error


def close_after_an_unread_body(worker: Any, req: Any) -> None:
    """gunicorn's ``pre_request`` hook: ``Connection: close`` when the body may be left unread
    beyond what gunicorn drains (see the module's docstring)."""
    for name, value in req.headers:  # names in upper case; gunicorn has refused bad framing already
        if name == "TRANSFER-ENCODING" or (name == "CONTENT-LENGTH" and _longer_than_drained(value)):
            req.force_close()
            return


def _longer_than_drained(content_length: str) -> bool:
    try:
        return int(content_length) >= KEEPALIVE_DRAIN_BYTES
    except ValueError:
        return True
