"""The access line: one JSON line per request, the same whether it is written straight to the
service's handler (nothing else listening) or formatted from a LogRecord (a test or a deployment
listening too), and with caller text redacted either way."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app import logs, redaction


@pytest.fixture()
def only_our_handler(monkeypatch):
    """The production set-up: the root logger's one handler is the service's JSON line handler."""
    stream = io.StringIO()
    handler = logs.JsonLineHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    monkeypatch.setattr(logging.root, "handlers", [handler])
    assert logs._direct_handler() is handler
    return stream


def _access_lines(stream: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "connect.access"]


def test_one_line_per_request_written_directly(client, account, only_our_handler):
    response = client.get("/v4/source-types", headers={**account.headers, "X-Request-Id": "req-1"})
    assert response.status_code == 200
    [line] = _access_lines(only_our_handler)
    assert line["request_id"] == "req-1" == response.headers["X-Request-Id"]
    assert line["method"] == "GET" and line["path"] == "/v4/source-types" and line["status"] == 200
    assert line["account_id"] == account.id and line["level"] == "info" and line["message"] == "request"
    assert isinstance(line["duration_ms"], float) and line["ts"].endswith("+00:00")


def test_caller_text_in_the_line_is_redacted(client, account, only_our_handler):
    secret = "planted-secret-for-the-access-line"
    redaction.remember(secret)
    response = client.get(f"/v4/source-types/{secret}", headers={**account.headers, "X-Request-Id": secret})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == secret  # the caller's own id is echoed to the caller
    text = only_our_handler.getvalue()
    assert secret not in text
    [line] = _access_lines(only_our_handler)
    assert line["path"] == f"/v4/source-types/{redaction.MASK}" and line["request_id"] == redaction.MASK


def test_a_listener_gets_the_same_line_from_a_record(client, account, caplog):
    caplog.set_level(logging.INFO, logger="connect.access")
    assert logs._direct_handler() is None  # caplog listens: records are made
    client.get("/v4/source-types", headers={**account.headers, "X-Request-Id": "req-2"})
    [record] = [r for r in caplog.records if r.name == "connect.access"]
    formatted = logs.JsonFormatter().format(record)
    direct = logs._access_line(record.created, "req-2", False, "GET", "/v4/source-types", 200,
                               record.duration_ms, record.account_id)
    assert formatted == direct
    assert json.loads(formatted)["request_id"] == "req-2"
