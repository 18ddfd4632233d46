"""CONNECT_RATE_LIMIT: one budget per account across the API, 429 in the one error shape with
Retry-After, other accounts and the operator unaffected, off unless configured."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import func, select

from app import create_app, db
from app.config import settings_from_environment
from app.models import Source
from app.ratelimit import EXTENSION_KEY

from .conftest import AccountHandle, base_config
from .test_service_basics import assert_error

GA = "platform.google-analytics"


@pytest.fixture()
def limited(make_app, operator):
    """An app limited to 3 requests a minute per account, and a way to make accounts on it."""
    app = make_app(RATE_LIMIT="3/minute")
    client = app.test_client()

    def account() -> AccountHandle:
        response = client.post("/v4/accounts", json={"name": "Limited"}, headers=operator)
        assert response.status_code == 201, response.get_json()
        return AccountHandle(response.get_json()["id"], response.get_json()["token"])

    return app, client, account


def test_over_the_limit_is_429_with_retry_after_and_changes_nothing(limited):
    _, client, new_account = limited
    headers = new_account().headers
    for _ in range(3):
        assert client.get("/v4/source-types", headers=headers).status_code == 200
    refused = client.post("/v4/sources", headers=headers, json={"type": GA, "display_name": "GA"})
    error = assert_error(refused, 429, "rate_limited")
    assert "3 per 1 minute" in error["message"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.headers.get("X-Request-Id")  # the usual response machinery still ran
    # Nothing was created: the refused request never reached the view. The account cannot look
    # (it is over its limit), so the database is asked.
    with limited[0].app_context():
        assert db.session().scalar(select(func.count()).select_from(Source)) == 0


def test_the_budget_is_shared_by_every_endpoint_and_every_token_of_the_account(limited, operator):
    app, client, new_account = limited
    account = new_account()
    headers = account.headers
    second = client.post(f"/v4/accounts/{account.id}/tokens", headers=operator)
    assert second.status_code == 201
    other_token = {"Authorization": f"Bearer {second.get_json()['token']}"}
    assert client.get("/v4/source-types", headers=headers).status_code == 200
    assert client.get("/v4/sources", headers=other_token).status_code == 200
    assert client.get(f"/v4/source-types/{GA}", headers=headers).status_code == 200
    assert_error(client.get("/v4/sources", headers=other_token), 429, "rate_limited")
    assert_error(client.get("/v4/source-types", headers=headers), 429, "rate_limited")


def test_another_account_and_the_operator_are_unaffected(limited, operator):
    _, client, new_account = limited
    noisy, quiet = new_account().headers, new_account().headers
    for _ in range(3):
        assert client.get("/v4/sources", headers=noisy).status_code == 200
    assert_error(client.get("/v4/sources", headers=noisy), 429, "rate_limited")
    for _ in range(3):
        assert client.get("/v4/sources", headers=quiet).status_code == 200
    assert_error(client.get("/v4/sources", headers=quiet), 429, "rate_limited")
    for _ in range(10):
        assert client.get("/v4/accounts", headers=operator).status_code == 200


def test_health_docs_and_the_openapi_document_are_not_limited(limited):
    _, client, _ = limited
    for _ in range(10):
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


def test_a_public_endpoint_is_counted_by_remote_address(limited):
    """The OAuth callback needs no token; a browser flood from one address is limited on its own
    budget, and an account's budget is not spent by it."""
    _, client, new_account = limited
    headers = new_account().headers
    for _ in range(3):
        assert_error(client.get("/v4/oauth/callback"), 400, "invalid_state")
    assert_error(client.get("/v4/oauth/callback"), 429, "rate_limited")
    other_address = client.get("/v4/oauth/callback", environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert_error(other_address, 400, "invalid_state")
    assert client.get("/v4/sources", headers=headers).status_code == 200


def test_a_bad_token_is_401_and_spends_no_budget(limited):
    _, client, new_account = limited
    headers = new_account().headers
    for _ in range(5):
        assert_error(client.get("/v4/sources", headers={"Authorization": "Bearer cn_wrong"}),
                     401, "unauthorized")
    for _ in range(3):
        assert client.get("/v4/sources", headers=headers).status_code == 200


def test_requests_pass_again_after_retry_after(make_app, new_account):
    app = make_app(RATE_LIMIT="2/second")
    client = app.test_client()
    headers = new_account("Fast").headers
    deadline = time.monotonic() + 10
    while True:  # find a refusal (two requests may straddle a window boundary)
        response = client.get("/v4/sources", headers=headers)
        if response.status_code == 429:
            break
        assert response.status_code == 200
        assert time.monotonic() < deadline, "never refused"
    assert response.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert client.get("/v4/sources", headers=headers).status_code == 200


def test_off_by_default(app, client, account):
    assert settings_from_environment({})["RATE_LIMIT"] == ""
    assert settings_from_environment({})["RATE_LIMIT_STORAGE_URI"] == "memory://"
    assert EXTENSION_KEY not in app.extensions
    for _ in range(60):
        assert client.get("/v4/sources", headers=account.headers).status_code == 200


def test_a_limit_from_the_environment_applies(monkeypatch, migrated_database, operator):
    monkeypatch.setenv("CONNECT_RATE_LIMIT", "1/minute")
    app = create_app(base_config(migrated_database))
    client = app.test_client()
    token = client.post("/v4/accounts", json={"name": "Env"}, headers=operator).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v4/sources", headers=headers).status_code == 200
    assert_error(client.get("/v4/sources", headers=headers), 429, "rate_limited")


@pytest.mark.parametrize("value", ["100", "lots/minute", "10/fortnight"])
def test_a_limit_that_does_not_parse_stops_start_up(migrated_database, value):
    with pytest.raises(RuntimeError, match="CONNECT_RATE_LIMIT"):
        create_app(base_config(migrated_database, RATE_LIMIT=value))


def test_an_unreachable_counter_store_lets_requests_through(limited, caplog):
    """No real store can be made to fail here (memory:// cannot go down and no redis is
    installed), so the storage's counter call is made to raise as a dead connection would."""
    app, client, new_account = limited
    headers = new_account().headers
    storage = app.extensions[EXTENSION_KEY].limiter.storage

    def unreachable(*args, **kwargs):
        raise ConnectionError("counter store down")

    storage.incr = unreachable
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert client.get("/v4/sources", headers=headers).status_code == 200
    assert any("rate limit" in r.getMessage().lower() for r in caplog.records)
