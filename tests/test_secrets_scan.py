"""The suite-wide secrets scan (tests/conftest.py) itself: it finds what it must, skips only what the
contract hands over, and sees the responses and log lines of the service."""

from __future__ import annotations

import logging

from flask import Response

from app import redaction

from .conftest import SCAN, Scanned, _response_text, find_planted
from .servers.planted import MIN_LENGTH, new_secret, plant, planted_values


def scanned(text: str) -> Scanned:
    return Scanned("test", "log", "[x]", text)


def test_every_planted_value_is_found_wherever_it_hides():
    token, odd = new_secret("scan-token"), "a pass phrase with spaces " + new_secret("scan")[:8]
    values = {token: "token", odd: "odd"}
    texts = [
        scanned(f'{{"refresh_token": "{token}"}}'),
        scanned(f"GET /cb?code=x&refresh_token={token}&state=y"),  # inside a longer run of token characters
        scanned(f"Authorization: Bearer {token}"),
        scanned(f"message: {odd}."),
        scanned(f"only a prefix: {token[:MIN_LENGTH]} and {token[:-1]}"),
        scanned("nothing here"),
    ]
    hits = find_planted(texts, values)
    assert [(texts.index(hit.scanned), hit.origin) for hit in hits] == [(0, "token"), (1, "token"), (2, "token"),
                                                                         (3, "odd")]
    assert token not in hits[0].describe()  # the report names the value by its origin, not in full


def test_short_or_empty_values_are_not_planted():
    before = len(planted_values())
    for value in ("pass", "test-secret", "x" * (MIN_LENGTH - 1), None, 12345678901234567):
        plant(value, "test")
    assert len(planted_values()) == before


def test_each_response_of_the_service_is_kept_with_its_test(client, account, request):
    before = len(SCAN.responses)
    assert client.get("/v4/source-types", headers=account.headers).status_code == 200
    [kept] = SCAN.responses[before:]
    assert kept.test == request.node.nodeid and kept.label == "GET /v4/source-types → 200"
    assert kept.text.startswith("HTTP 200\n") and "X-Request-Id: " in kept.text and "test.oauth2-refresh" in kept.text


def test_a_new_account_token_is_handed_over_once_and_searched_for_everywhere_else(client, operator):
    before = len(SCAN.responses)
    created = client.post("/v4/accounts", headers=operator, json={"name": "Scanned"})
    token = created.get_json()["token"]
    assert planted_values()[token] == "service:account_token"
    kept = SCAN.responses[before].text
    assert token not in kept and "<handed over by contract>" in kept and '"Scanned"' in kept


def test_the_secret_id_of_a_callback_redirect_is_handed_over(app):
    secret_id = "sec_" + new_secret("scan-secret-id")
    target = f"https://app.example/done?secret_id={secret_id}&tab=1"
    with app.test_request_context("/v4/oauth/callback?state=s&code=c"):
        text = _response_text(Response(f'<a href="{target}">', status=302, headers={"Location": target}))
    assert secret_id not in text and text.count("<handed over by contract>") == 2
    assert planted_values()[secret_id] == "service:secret_id"


def test_credentials_a_request_hands_over_are_planted(client, account):
    api_key = "scan-key-" + "7" * 20
    created = client.post("/v4/sources", headers=account.headers, json={
        "type": "test.auth-apikey-header", "display_name": "Scan",
        "properties": {"api_url": "http://127.0.0.1:9/api-url-is-not-a-secret", "api_key": api_key}})
    assert created.status_code == 201, created.get_json()
    values = planted_values()
    assert values[api_key] == "request:properties.api_key"
    assert "http://127.0.0.1:9/api-url-is-not-a-secret" not in values


def test_log_lines_are_kept_as_the_service_writes_them(request):
    secret = new_secret("scan-log")
    redaction.remember(secret)  # as the keyring does for every value it opens
    before = len(SCAN.log_lines)
    logging.getLogger("connect.tokens").warning("refresh failed for %s", secret)
    [line] = SCAN.log_lines[before:]
    assert line.test == request.node.nodeid and secret not in line.text and redaction.MASK in line.text
