"""The HTTP edges, against a real gunicorn started here with the repository's gunicorn.conf.py,
spoken to with raw sockets and http.client:

- errors gunicorn answers before the app (control characters or NUL in a header, a 10,000-character
  request line, a 20,000-character header, Content-Length with Transfer-Encoding, …) come in the
  service's JSON error shape, with ``Connection: close``;
- a response after a request body the app did not read (413, or a 401 before the body was read)
  says ``Connection: close`` when gunicorn will not be able to reuse the connection, and the
  client's next request works; small bodies keep the connection alive;
- the app's own edges hold under gunicorn too (ids of non-ASCII digits, security headers).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from app.serving import KEEPALIVE_DRAIN_BYTES

from .conftest import OPERATOR_TOKEN
from .live_service import ROOT, free_port, service_environment, stop, wait_until_healthy

READ_TIMEOUT = 10.0
KEEP_ALIVE_SECONDS = 60  # gunicorn's default is 2 s: longer, so that only a real close closes


@dataclass(frozen=True)
class Live:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def live(migrated_database: str) -> Iterator[Live]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--keep-alive", str(KEEP_ALIVE_SECONDS), "--log-level", "warning",
         "wsgi:app"],
        cwd=ROOT, env=service_environment(migrated_database))
    server = Live("127.0.0.1", port)
    try:
        wait_until_healthy(server.base_url, process)
        yield server
    finally:
        stop(process)


@pytest.fixture()
def account_token(live: Live) -> str:
    created = requests.post(live.base_url + "/v4/accounts", json={"name": "Edges"}, timeout=READ_TIMEOUT,
                            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert created.status_code == 201, created.text
    return created.json()["token"]


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # it said Connection: close, and the server did close the connection


def read_answer(sock: socket.socket) -> RawAnswer:
    """One HTTP/1.1 response with a Content-Length, then whether the server closed the socket."""
    data = b""
    deadline = time.monotonic() + READ_TIMEOUT
    while b"\r\n\r\n" not in data:
        assert time.monotonic() < deadline, "no complete response head"
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection before answering: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of the body"
        body += chunk
    closed = headers.get("connection") == "close" and _closed_by_server(sock)
    return RawAnswer(int(status_line.split()[1]), headers, body[:length], closed)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (within READ_TIMEOUT, well under the live server's
    keep-alive timeout, so an idle kept-alive connection does not pass for a closed one)."""
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def send_raw(live: Live, data: bytes) -> RawAnswer:
    with socket.create_connection((live.host, live.port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(data)
        return read_answer(sock)


def request_bytes(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
                  extra: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n" + extra + b"\r\n" + body


def assert_json_error(answer: RawAnswer, status: int, type_: str, field: str | None = None) -> dict:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json", answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"
    error = json.loads(answer.body)["error"]
    assert set(error) == {"type", "message", "details"}
    assert error["type"] == type_ and error["message"]
    if field is not None:
        assert [detail["field"] for detail in error["details"]] == [field], error
    return error


# --- errors gunicorn answers before the app ---------------------------------------------------------

EDGE_CASES = [
    ("control character in a header", request_bytes("GET", "/health", extra=b"X-Note: a\x01b\r\n"),
     400, "malformed_request", "request"),
    ("NUL in a header", request_bytes("GET", "/health", extra=b"X-Note: a\x00b\r\n"),
     400, "malformed_request", "request"),
    ("NUL in a header name", request_bytes("GET", "/health", extra=b"X-No\x00te: ab\r\n"),
     400, "malformed_request", "request"),
    ("request line of 10,000 characters", request_bytes("GET", "/v4/sources?q=" + "a" * 10_000),
     414, "request_line_too_long", "request line"),
    ("header of 20,000 characters", request_bytes("GET", "/health", {"X-Note": "a" * 20_000}),
     431, "headers_too_large", "headers"),
    ("101 headers", request_bytes("GET", "/health", {f"X-Note-{n}": "a" for n in range(101)}),
     431, "headers_too_large", "headers"),
    ("Content-Length with Transfer-Encoding",
     request_bytes("POST", "/v4/accounts", {"Content-Length": "5", "Transfer-Encoding": "chunked"},
                   extra=b"") + b"0\r\n\r\n", 400, "malformed_request", "request"),
    ("two Content-Lengths", request_bytes("POST", "/v4/accounts", {"Content-Length": "2"},
                                          extra=b"Content-Length: 3\r\n") + b"{}", 400, "malformed_request",
     "request"),
    ("an unknown transfer coding", request_bytes("POST", "/v4/accounts", {"Transfer-Encoding": "zstd"}),
     501, "not_implemented", "Transfer-Encoding"),
    ("a method with punctuation", b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed_request", "request"),
    ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "malformed_request", "request"),
    ("a bare LF line end", b"GET /health HTTP/1.1\nHost: x\n\n", 400, "malformed_request", "request"),
]


@pytest.mark.parametrize(("raw", "status", "type_", "field"), [case[1:] for case in EDGE_CASES],
                         ids=[case[0] for case in EDGE_CASES])
def test_errors_gunicorn_answers_come_in_the_error_shape(live: Live, raw: bytes, status: int, type_: str,
                                                         field: str):
    answer = send_raw(live, raw)
    error = assert_json_error(answer, status, type_, field)
    assert answer.headers["connection"] == "close" and answer.closed
    assert len(error["details"][0]["reason"]) <= 200
    assert b"<html" not in answer.body


def test_the_service_still_answers_after_them(live: Live):
    for _, raw, *_ in EDGE_CASES:
        send_raw(live, raw)
    assert requests.get(live.base_url + "/health", timeout=READ_TIMEOUT).status_code == 200


# --- Connection: close when a body may be left unread --------------------------------------------


def post_then_get(live: Live, path: str, body: bytes, headers: dict[str, str]) -> tuple[RawAnswer, RawAnswer | None]:
    """A POST and then, on the same socket if the server kept it open, a GET of /health."""
    with socket.create_connection((live.host, live.port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(request_bytes("POST", path, {"Content-Type": "application/json", **headers}, body))
        first = read_answer(sock)
        if first.closed:
            return first, None
        sock.sendall(request_bytes("GET", "/health"))
        return first, read_answer(sock)


def test_a_413_says_connection_close_and_closes(live: Live, account_token: str):
    body = b'{"type": "x", "display_name": "' + b"a" * 2_000_000 + b'"}'
    first, second = post_then_get(live, "/v4/sources", body, {"Authorization": f"Bearer {account_token}"})
    assert_json_error(first, 413, "payload_too_large", "body")
    assert first.headers["connection"] == "close" and first.closed and second is None


@pytest.mark.parametrize("size", [KEEPALIVE_DRAIN_BYTES, 900_000])
def test_an_unread_body_gunicorn_cannot_drain_closes_the_connection(live: Live, size: int):
    """A 401 is answered before the body is read: the same rule as a 413."""
    first, second = post_then_get(live, "/v4/sources", b"[" + b" " * (size - 2) + b"]",
                                  {"Authorization": "Bearer cn_not_a_token"})
    assert_json_error(first, 401, "unauthorized")
    assert first.headers["connection"] == "close" and first.closed and second is None


@pytest.mark.parametrize("size", [100, KEEPALIVE_DRAIN_BYTES - 1])
def test_a_small_unread_body_keeps_the_connection_alive(live: Live, size: int):
    first, second = post_then_get(live, "/v4/sources", b"[" + b" " * (size - 2) + b"]",
                                  {"Authorization": "Bearer cn_not_a_token"})
    assert_json_error(first, 401, "unauthorized")
    assert first.headers["connection"] == "keep-alive" and not first.closed
    assert second is not None and second.status == 200 and json.loads(second.body)["status"] == "ok"


def chunked(body: bytes, size: int | None = None) -> bytes:
    return f"{len(body) if size is None else size:x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def post_chunked(live: Live, chunks: bytes) -> RawAnswer:
    with socket.create_connection((live.host, live.port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(request_bytes("POST", "/v4/accounts", {
            "Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}) + chunks)
        return read_answer(sock)


def test_a_chunked_body_closes_the_connection_after_its_response(live: Live):
    answer = post_chunked(live, chunked(b'{"name": "Chunk"}'))
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["name"] == "Chunk"
    assert answer.headers["connection"] == "close" and answer.closed


@pytest.mark.parametrize("chunks", [chunked(b'{"name": "Chunk"}', size=16), b"zz\r\n{}\r\n0\r\n\r\n"],
                         ids=["chunk size too small", "chunk size not hex"])
def test_a_malformed_chunked_body_is_the_client_error(live: Live, chunks: bytes):
    answer = post_chunked(live, chunks)
    error = assert_json_error(answer, 400, "malformed_request", "body")
    assert "chunked" in error["message"]
    assert answer.headers["connection"] == "close" and answer.closed


def test_http_client_sends_its_next_request_after_a_413(live: Live, account_token: str):
    """What a client sees: http.client keeps one HTTPConnection, and the request after the 413 works
    (before, it failed with "Remote end closed connection without response")."""
    connection = http.client.HTTPConnection(live.host, live.port, timeout=READ_TIMEOUT)
    try:
        headers = {"Authorization": f"Bearer {account_token}", "Content-Type": "application/json"}
        connection.request("POST", "/v4/sources", body=b'{"x": "' + b"a" * 1_100_000 + b'"}', headers=headers)
        refused = connection.getresponse()
        assert refused.status == 413 and refused.getheader("Connection") == "close"
        assert json.loads(refused.read())["error"]["type"] == "payload_too_large"
        connection.request("POST", "/v4/sources", headers=headers, body=json.dumps({
            "type": "platform.google-analytics", "display_name": "After the 413"}))
        created = connection.getresponse()
        assert created.status == 201, created.read()
        assert json.loads(created.read())["display_name"] == "After the 413"
    finally:
        connection.close()


# --- the app's own edges, under gunicorn ----------------------------------------------------------


def test_ids_of_non_ascii_digits_are_unknown_under_gunicorn(live: Live, account_token: str):
    auth = {"Authorization": f"Bearer {account_token}"}
    created = requests.post(live.base_url + "/v4/sources", headers=auth, timeout=READ_TIMEOUT, json={
        "type": "platform.google-analytics", "display_name": "Digits"})
    assert created.status_code == 201, created.text
    source_id = str(created.json()["id"])
    fullwidth = source_id.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    arabic = source_id.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for spelling in (fullwidth, arabic):
        for method in ("GET", "DELETE"):
            answer = requests.request(method, f"{live.base_url}/v4/sources/{spelling}", headers=auth,
                                      timeout=READ_TIMEOUT)
            assert answer.status_code == 404 and answer.json()["error"]["type"] == "not_found"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert requests.get(f"{live.base_url}/v4/sources/{source_id}", headers=auth,
                        timeout=READ_TIMEOUT).status_code == 200  # not deleted
