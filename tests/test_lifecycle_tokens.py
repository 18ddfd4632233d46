"""Keeping OAuth sources alive and letting them go, against the Authlib test provider
(tests/servers/oauth_provider.py) and the data API: keep-alive refresh of idle refresh tokens,
a grant revoked at the provider found by the scheduled re-check (and announced to the webhook),
and revocation (RFC 7009) on delete."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app import db, webhooks
from app.config import DEFAULT_REPORT_CARDS
from app.connectors.models import SourceToken
from app.connectors.urls import render_url
from app.jobs.periodic import PeriodicJobState
from app.jobs.worker import Worker
from app.models import Source, SourceCredential, SourceEvent
from app.wiring import services

from .conftest import report_figure
from .connectors_support import (  # noqa: F401  (fixtures)
    Servers,
    _default_server_behaviour,
    create_source,
    servers,
    set_token_times,
    stored_properties,
    token_row,
)
from .servers import TokenFault
from .test_lifecycle import kinds, make_checks_old, make_rechecks_due, register, work
from .test_oauth import TYPE as OAUTH_TYPE
from .test_oauth import connect, connect_app, operator_app, provider, provider_app, provider_port  # noqa: F401
from .test_oauth import create_source as create_oauth_source
from .test_oauth import secret_id_of as oauth_secret_id_of

REFRESHING = "test.oauth2-refresh"
REVOCABLE = "test.oauth-revocable"
IDLE_LIMIT = 3600.0  # the provider's: a refresh token unused for an hour lapses (Google: 6 months)


def periodic_app(make_app, **config: object) -> Flask:  # type: ignore[no-untyped-def]
    return make_app(WEBHOOK_ALLOW_LOOPBACK=True, WEBHOOK_TIMEOUT=2.0, **config)


def run_periodic(app: Flask, name: str) -> dict:
    """Make the periodic job due and let a worker run it, as the worker loop would."""
    with db.get_db(app).Session() as session, session.begin():
        state = session.get(PeriodicJobState, name)
        if state is not None:
            state.next_run_at = datetime.now(UTC) - timedelta(seconds=1)
    assert name in Worker(app, services(app).jobs).run_due_periodic_jobs()
    with db.get_db(app).Session() as session:
        found = session.get_one(PeriodicJobState, name)
        assert found.last_error is None, found.last_error
        return dict(found.last_result or {})


HOUR = IDLE_LIMIT / 30  # the provider's idle limit stands for 30 hours


def idle_for(app: Flask, servers: Servers, source_id: int, hours: float) -> None:
    """``hours`` pass with the source unused: its cached token (expired) and, scaled, the provider."""
    now = datetime.now(UTC)
    set_token_times(app, source_id, now - timedelta(hours=hours - 1), now - timedelta(hours=hours))
    servers.provider.idle_refresh_tokens(hours * HOUR)


def refresh_by_check(app: Flask, client, account, source_id: int) -> dict:  # type: ignore[no-untyped-def]
    """Use the source (its connection check, which needs a fresh access token) and return it."""
    assert client.post(f"/v4/sources/{source_id}/discover", headers=account.headers).status_code in (200, 201, 202)
    work(app)
    return client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()


KEPT = {"refreshed": 1, "failed": 0, "probed": 0, "skipped_min_interval": 0}


# --- keep-alive ---------------------------------------------------------------------------------


def test_keep_alive_keeps_a_refresh_token_that_lapses_when_idle(make_app, account, servers):
    """Idle 25 h: keep-alive (24 h) refreshes; 25 h more: refreshed again, and the source still works
    after 50 idle hours, though the provider drops a refresh token unused for 30."""
    servers.provider.settings.refresh_token_idle_seconds = IDLE_LIMIT
    kept = periodic_app(make_app, TOKEN_KEEPALIVE_HOURS=24.0)
    client = kept.test_client()
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    work(kept)
    requests_before = servers.provider.token_requests
    idle_for(kept, servers, source_id, 25)
    assert run_periodic(kept, "keep_tokens_alive") == KEPT
    assert servers.provider.token_requests == requests_before + 1
    assert run_periodic(kept, "keep_tokens_alive")["refreshed"] == 0  # just refreshed: not due
    idle_for(kept, servers, source_id, 25)
    assert run_periodic(kept, "keep_tokens_alive") == KEPT
    idle_for(kept, servers, source_id, 10)  # 60 h since the source was last used by anyone
    body = refresh_by_check(kept, client, account, source_id)
    assert body["setup_state"] == "connected", body["report_card"].get("setup_error")
    report_figure(f"keep-alive: refresh token alive after 60 idle hours (the provider drops one idle 30 h), "
                  f"{servers.provider.token_requests - requests_before} token requests")


def test_without_keep_alive_the_idle_refresh_token_lapses(make_app, account, servers):
    servers.provider.settings.refresh_token_idle_seconds = IDLE_LIMIT
    off = periodic_app(make_app, TOKEN_KEEPALIVE_HOURS=0)
    client = off.test_client()
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    work(off)
    assert run_periodic(off, "keep_tokens_alive") == {"off": True}
    idle_for(off, servers, source_id, 31)
    body = refresh_by_check(off, client, account, source_id)
    assert body["setup_state"] == "broken"
    assert body["report_card"]["setup_error"]["error"] == "invalid_grant"


def test_keep_alive_respects_a_cards_minimum_interval(make_app, account, servers):
    kept = periodic_app(make_app, TOKEN_KEEPALIVE_HOURS=24.0)
    client = kept.test_client()
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    work(kept)
    card = kept.extensions["connect.catalog"].get(REFRESHING)
    object.__setattr__(card.auth, "min_refresh_interval_seconds", 48 * 3600)  # the frozen card, for this test
    try:
        idle_for(kept, servers, source_id, 25)
        assert run_periodic(kept, "keep_tokens_alive")["skipped_min_interval"] == 1
        idle_for(kept, servers, source_id, 49)
        assert run_periodic(kept, "keep_tokens_alive") == KEPT
    finally:
        object.__setattr__(card.auth, "min_refresh_interval_seconds", 0)


def test_a_token_answer_without_expires_in_is_probed_with_the_check_request(make_app, account, servers):
    kept = periodic_app(make_app, TOKEN_KEEPALIVE_HOURS=24.0)
    client = kept.test_client()
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    work(kept)
    checks_before = servers.data_api.requests["/oauth/check"]
    idle_for(kept, servers, source_id, 25)
    servers.provider.fail_next_token_requests(TokenFault.NO_EXPIRES_IN)
    assert run_periodic(kept, "keep_tokens_alive") == {**KEPT, "probed": 1}
    row = token_row(kept, source_id)
    assert row is not None and row.expiry_stated is False
    assert servers.data_api.requests["/oauth/check"] == checks_before + 1


# --- a grant revoked at the provider ------------------------------------------------------------


def test_a_grant_revoked_at_the_provider_turns_the_source_broken_and_fires_the_webhook(
        make_app, account, servers, receiver):
    app = periodic_app(make_app, RECHECK_HOURS=1.0)
    client = app.test_client()
    register(client, account, receiver)
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    work(app)
    servers.provider.revoke_refresh_tokens()  # the user removes the app at the provider
    servers.provider.expire_access_tokens()
    make_checks_old(app, source_id, timedelta(hours=2))
    run_periodic(app, "recheck_connected_sources")
    make_rechecks_due(app)
    work(app)
    body = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert body["setup_state"] == "broken"
    seen = kinds(receiver.of_source(source_id))
    # The refresh refused (the token store marks the source broken in the same transaction), then
    # the check that needed it fails.
    assert seen[-3:] == [
        ("token.refresh_failed", {"error": "invalid_grant", "transient": False}),
        ("source.setup_state_changed", {"from": "connected", "to": "broken",
                                        "reason": body["report_card"]["setup_error"]}),
        ("connection_check.completed", {"check_id": seen[-1][1]["check_id"], "status": "failed",
                                        "error": seen[-1][1]["error"]}),
    ]
    assert ("source.step_changed", {"from": "form", "to": "discover_schema"}) in seen
    assert all(r.verified_by == {"current"} for r in receiver.of_source(source_id))


# --- revocation on delete -----------------------------------------------------------------------


def test_deleting_a_source_revokes_its_grant_at_the_provider_and_erases_its_credentials(
        app, client, account, servers):
    properties = servers.oauth_properties()
    source_id = create_source(client, account, REVOCABLE, properties)
    work(app)
    assert servers.provider.find_refresh_token(properties["refresh_token"]) is not None
    with db.get_db(app).Session() as session:
        assert session.scalars(select(SourceCredential).where(SourceCredential.source_id == source_id)).all()

    response = client.delete(f"/v4/sources/{source_id}", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    assert servers.provider.revocations[-1] == ("refresh_token", "refresh_token")
    assert servers.provider.find_refresh_token(properties["refresh_token"]) is None
    with db.get_db(app).Session() as session:
        assert session.scalars(select(SourceCredential).where(SourceCredential.source_id == source_id)).all() == []
        assert session.scalars(select(SourceToken).where(SourceToken.source_id == source_id)).all() == []
        deleted = session.scalars(select(SourceEvent).where(SourceEvent.source_id == source_id,
                                                            SourceEvent.type == "deleted")).one()
    assert deleted.detail == {"erased": ["client_secret", "refresh_token"]}  # names, never values
    assert properties["refresh_token"] not in str(deleted.detail)


def test_a_provider_that_fails_the_revocation_does_not_stop_the_delete(app, client, account, servers):
    properties = servers.oauth_properties()
    source_id = create_source(client, account, REVOCABLE, properties)
    revoked_before = len(servers.provider.revocations)
    with db.get_db(app).Session() as session, session.begin():
        credential = session.scalars(select(SourceCredential).where(
            SourceCredential.source_id == source_id, SourceCredential.name == "client_secret")).one()
        credential_id = credential.id
    # A wrong client secret: the provider answers 401 invalid_client to the revocation.
    response = client.put(f"/v4/sources/{source_id}", headers=account.headers,
                          json={"properties": {"client_secret": "wrong-" + str(time.time_ns())}})
    assert response.status_code == 200, response.get_json()
    response = client.delete(f"/v4/sources/{source_id}", headers=account.headers)
    assert response.status_code == 200
    assert len(servers.provider.revocations) == revoked_before
    with db.get_db(app).Session() as session:
        assert session.get(SourceCredential, credential_id) is None


def test_a_card_without_a_revocation_endpoint_deletes_without_asking_the_provider(app, client, account, servers):
    source_id = create_source(client, account, REFRESHING, servers.oauth_properties())
    revoked_before = len(servers.provider.revocations)
    assert client.delete(f"/v4/sources/{source_id}", headers=account.headers).status_code == 200
    assert len(servers.provider.revocations) == revoked_before


def _shipped_revocable() -> list[str]:
    return sorted(path.stem for path in DEFAULT_REPORT_CARDS.glob("*.json")
                  if json.loads(path.read_text()).get("oauth", {}).get("revocation_url"))


SHIPPED_REVOCABLE = _shipped_revocable()


def test_the_shipped_catalog_revokes_at_the_providers_documented_endpoints():
    assert SHIPPED_REVOCABLE == sorted([
        "platform.adwords", "platform.doubleclick-campaign-manager", "platform.ga4", "platform.google-ads",
        "platform.google-analytics", "platform.google-search-console", "platform.google-sheets",
        "platform.pardot", "platform.salesforce", "platform.xero"])
    salesforce = json.loads((DEFAULT_REPORT_CARDS / "platform.salesforce.json").read_text())["oauth"]
    assert [render_url(salesforce["revocation_url"], {"properties": {"is_sandbox": sandbox}})
            for sandbox in ("true", "false")] == ["https://test.salesforce.com/services/oauth2/revoke",
                                                  "https://login.salesforce.com/services/oauth2/revoke"]


@pytest.mark.parametrize("source_type", SHIPPED_REVOCABLE)
def test_deleting_a_source_of_a_shipped_type_revokes_its_grant_with_the_cards_oauth_section(
        make_app, account, servers, tmp_path: Path, source_type: str):
    """The shipped card as it is (its client authentication, which property holds which token), only
    its revocation endpoint pointed at the test provider: the integrator's own grant is revoked."""
    card = json.loads((DEFAULT_REPORT_CARDS / f"{source_type}.json").read_text())
    card["oauth"]["revocation_url"] = servers.token_url.replace("/oauth/token", "/oauth/revoke")
    (tmp_path / f"{source_type}.json").write_text(json.dumps(card))
    app = make_app(REPORT_CARDS=f"{DEFAULT_REPORT_CARDS}:{tmp_path}", ALLOWED_DEPRECATED_TYPES=source_type)
    oauth = card["oauth"]
    issued = servers.oauth_properties()
    properties = {oauth["client_properties"]["client_id"]: issued["client_id"],
                  oauth["client_properties"]["client_secret"]: issued["client_secret"],
                  oauth["token_properties"]["refresh_token"]: issued["refresh_token"]}
    client = app.test_client()
    source_id = create_source(client, account, source_type, properties)

    assert client.delete(f"/v4/sources/{source_id}", headers=account.headers).status_code == 200
    assert servers.provider.revocations[-1] == ("refresh_token", "refresh_token")
    assert servers.provider.find_refresh_token(issued["refresh_token"]) is None


# --- oauth.completed ----------------------------------------------------------------------------


def test_an_oauth_handshake_is_announced_before_and_after_its_source_exists(
        connect_app, connect, account, operator_app, provider_port, receiver):
    connect_app.config["WEBHOOK_ALLOW_LOOPBACK"] = True
    webhooks.init_app(connect_app)  # this module's instance of the app: take the loopback rule
    register(connect, account, receiver)
    secret_id = oauth_secret_id_of(connect, account, provider_port)
    work(connect_app)
    assert kinds(receiver.received) == [("oauth.completed", {"source_type": OAUTH_TYPE})]
    assert receiver.received[0].source_id is None
    created = create_oauth_source(connect, account, provider_port, secret_id)
    assert created.status_code == 201, created.get_json()
    work(connect_app)
    seen = kinds(receiver.of_source(created.get_json()["id"]))
    assert seen[:2] == [("source.created", {"source_type": OAUTH_TYPE, "name": created.get_json()["name"]}),
                        ("oauth.completed", {"source_type": OAUTH_TYPE})]
    assert ("source.step_changed", {"from": "form", "to": "discover_schema"}) in seen
    assert not any(value in str([r.payload for r in receiver.received]) for value in (secret_id, operator_app[1]))


def test_keep_alive_refreshes_a_managed_oauth_grant_from_the_cards_oauth_section(
        connect_app, connect, account, operator_app, provider, provider_port):
    """A managed-OAuth card (a tap refreshes its own tokens when it runs, maybe months away) with no
    ``auth`` section: keep-alive uses the grant the handshake stored, rotation included."""
    provider.settings.refresh_token_idle_seconds = IDLE_LIMIT
    provider.settings.rotate_refresh_tokens = True
    connect_app.config["TOKEN_KEEPALIVE_HOURS"] = 24.0
    created = create_oauth_source(connect, account, provider_port, oauth_secret_id_of(connect, account, provider_port))
    assert created.status_code == 201, created.get_json()
    source_id = created.get_json()["id"]
    with db.get_db(connect_app).Session() as session, session.begin():
        source = session.get_one(Source, source_id)
        source.created_at = source.created_at - timedelta(hours=25)
    provider.idle_refresh_tokens(25 * HOUR)
    first = provider.last_refresh_token
    refreshes = provider.token_requests_by_grant["refresh_token"]
    assert run_periodic(connect_app, "keep_tokens_alive") == KEPT
    assert provider.token_requests_by_grant["refresh_token"] == refreshes + 1
    assert stored_properties(connect_app, source_id)["refresh_token"] == provider.last_refresh_token != first
    assert provider.find_refresh_token(provider.last_refresh_token) is not None
