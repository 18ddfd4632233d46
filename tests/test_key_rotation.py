"""Encryption key rotation end to end: sources of every kind of credential, cached tokens and a
handshake in flight are sealed under the old key; ``flask connect rotate-keys`` moves them to a new
one; with the old key removed from the configuration everything still works — credentials open,
a token refresh against the test provider succeeds, connection checks pass, the handshake finishes.

(tests/test_sources.py and tests/test_token_store.py check ``rotate_all`` table by table; this is
the operator's whole procedure, as README "Configuration" describes it.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from app import db
from app.cli import connect_cli
from app.connectors.models import ACCESS_TOKEN, SESSION_TOKEN
from app.crypto import KeyringError, generate_key_spec
from app.jobs.worker import Worker
from app.oauth.handshake import CALLBACK_PATH
from app.secrets_store import sealed_models
from app.wiring import services

from .conftest import TEST_KEYS
from .connectors_support import (  # noqa: F401  (fixtures)
    POST_CLIENT,
    Servers,
    _default_server_behaviour,
    call_api,
    create_source,
    servers,
    set_token_times,
    stored_properties,
    token_row,
    token_store,
)
from .servers.planted import new_secret

HANDSHAKE_TYPE = "test.oauth-provider"
HANDSHAKE_CLIENT = "rotation-handshake"


def key_ids_in_use(app) -> dict[str, set[str]]:
    with db.get_db(app).Session() as session:
        return {model.__tablename__: set(session.scalars(select(model.key_id))) for model in sealed_models()}


def check_passes(app, client, account, source_id: int) -> dict:
    queued = client.post(f"/v4/sources/{source_id}/discover", headers=account.headers)
    assert queued.status_code in (200, 202), queued.get_json()
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    while worker.run_once():
        pass
    check = client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "succeeded", check
    return check


def test_sources_work_after_rotate_keys_and_the_old_key_removed(app, make_app, account, operator,
                                                               servers: Servers):
    new_key = generate_key_spec()
    old_app = app  # the suite's app: TEST_KEYS only (building an app loads the catalog: seconds)
    public_url = old_app.config["PUBLIC_URL"]
    client = old_app.test_client()
    settings = servers.data_api.settings
    settings.api_key, settings.password = new_secret("rotation-api-key"), new_secret("rotation-password")
    settings.session_password = new_secret("rotation-session-password")
    servers.provider.settings.rotate_refresh_tokens = True

    # Under the old key: one source per kind of credential, with tokens cached by a first call.
    oauth_properties = servers.oauth_properties(POST_CLIENT)
    sources = {
        "test.oauth2-refresh": create_source(client, account, "test.oauth2-refresh", oauth_properties),
        "test.auth-apikey-header": create_source(client, account, "test.auth-apikey-header", {
            "api_url": servers.api_url, "api_key": settings.api_key}),
        "test.auth-basic": create_source(client, account, "test.auth-basic", {
            "api_url": servers.api_url, "username": settings.username, "password": settings.password}),
        "test.session-cached": create_source(client, account, "test.session-cached", {
            "api_url": servers.api_url, "username": settings.session_username,
            "password": settings.session_password}),
    }
    for source_id in sources.values():
        assert call_api(old_app, source_id).status_code == 200
    oauth_id, session_id = sources["test.oauth2-refresh"], sources["test.session-cached"]
    rotated_once = stored_properties(old_app, oauth_id)["refresh_token"]
    assert rotated_once != oauth_properties["refresh_token"]  # the first refresh rotated it
    cached_access_token = token_store(old_app, oauth_id).cached_token(ACCESS_TOKEN)
    cached_session_token = token_store(old_app, session_id).cached_token(SESSION_TOKEN)
    assert cached_access_token and cached_session_token

    # An operator OAuth app, and a handshake started (its state row sealed) before the rotation.
    client_secret = new_secret("rotation-client-secret")
    servers.provider.add_client(HANDSHAKE_CLIENT, client_secret, redirect_uris=[public_url + CALLBACK_PATH])
    assert client.put("/v4/oauth/credentials", headers=operator, json={
        "source_type": HANDSHAKE_TYPE,
        "configuration": {"client_id": HANDSHAKE_CLIENT, "client_secret": client_secret}}).status_code == 200
    port = servers.provider_url.rsplit(":", 1)[1]
    started = client.post("/v4/oauth/initiate", headers=account.headers, json={
        "source_type": HANDSHAKE_TYPE, "redirect_url": "https://app.example/done",
        "oauth_input_configuration": {"provider_port": port}})
    assert started.status_code == 200, started.get_json()
    old_id, new_id = TEST_KEYS.split(":")[0], new_key.split(":")[0]
    in_use = key_ids_in_use(old_app)
    assert {name for name, ids in in_use.items() if ids} >= {
        "source_credentials", "source_tokens", "oauth_apps", "oauth_states"}
    assert set().union(*in_use.values()) == {old_id}

    # The operator's procedure: put the new key first, rotate, then drop the old key.
    rotating = make_app(ENCRYPTION_KEYS=f"{new_key},{TEST_KEYS}")
    result = rotating.test_cli_runner().invoke(connect_cli, ["rotate-keys", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert f"all secrets are now under key {new_id!r}" in result.output
    assert "source_credentials: 5 re-encrypted" in result.output  # 2 of the OAuth source, 1 of each other
    assert "source_tokens: 2 re-encrypted" in result.output
    again = rotating.test_cli_runner().invoke(connect_cli, ["rotate-keys"])
    assert all(line.endswith(": 0 re-encrypted") for line in again.output.splitlines()[:-1]), again.output

    new_app = make_app(ENCRYPTION_KEYS=new_key)
    client = new_app.test_client()
    assert set().union(*key_ids_in_use(new_app).values()) == {new_id}
    with pytest.raises(KeyringError):  # the control: the old key alone opens nothing any more
        stored_properties(old_app, oauth_id)

    # Credentials and cached tokens open under the new key alone.
    assert stored_properties(new_app, sources["test.auth-apikey-header"])["api_key"] == settings.api_key
    assert stored_properties(new_app, sources["test.auth-basic"])["password"] == settings.password
    assert stored_properties(new_app, session_id)["password"] == settings.session_password
    assert stored_properties(new_app, oauth_id)["refresh_token"] == rotated_once
    assert stored_properties(new_app, oauth_id)["client_secret"] == servers.client_secret
    assert token_store(new_app, oauth_id).cached_token(ACCESS_TOKEN) == cached_access_token
    assert token_store(new_app, session_id).cached_token(SESSION_TOKEN) == cached_session_token

    # A refresh against the provider: the rotated refresh token is sent, and its successor sealed.
    now = datetime.now(UTC)
    set_token_times(new_app, oauth_id, now - timedelta(seconds=1), now - timedelta(hours=1))
    before = servers.provider.token_requests
    assert call_api(new_app, oauth_id).status_code == 200
    assert servers.provider.token_requests - before == 1
    assert servers.provider.last_token_request.form["refresh_token"] == rotated_once
    assert stored_properties(new_app, oauth_id)["refresh_token"] == servers.provider.last_refresh_token
    assert token_row(new_app, oauth_id).key_id == new_id

    # Every source passes a connection check, and the handshake started before the rotation finishes.
    for source_id in sources.values():
        check_passes(new_app, client, account, source_id)
    consent = requests.get(started.get_json()["consent_url"], allow_redirects=False, timeout=5)
    landing = client.get(consent.headers["Location"].removeprefix(public_url))
    assert landing.status_code == 302
    secret_id = parse_qs(urlsplit(landing.headers["Location"]).query)["secret_id"][0]
    created = client.post("/v4/sources", headers=account.headers, json={
        "type": HANDSHAKE_TYPE, "display_name": "After rotation", "secret_id": secret_id,
        "properties": {"provider_port": port}})
    assert created.status_code == 201, created.get_json()
    assert stored_properties(new_app, created.get_json()["id"])["refresh_token"] == servers.provider.last_refresh_token
