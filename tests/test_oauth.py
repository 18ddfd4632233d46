"""The managed OAuth handshake against a real Authlib authorization server on 127.0.0.1.

Where a browser would travel (the consent URL, the provider's redirect), the tests travel over
real HTTP with ``requests``; the callback is then called on the service through the Flask test
client (its public URL is ``PUBLIC_URL``), except in the first test, which serves the service
itself on 127.0.0.1 and never leaves HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import create_app, db
from app.crypto import get_keyring
from app.models import Source, SourceEvent, utcnow
from app.oauth.apps import OAuthAppsFileError
from app.oauth.handshake import CALLBACK_PATH
from app.oauth.models import OAuthApp, OAuthSecret, OAuthState
from app.secrets_store import sealed_models
from app.sources.credentials import decrypted_properties

from .conftest import base_config
from .servers import OAuthProvider, ServerThread, create_oauth_provider, get_provider, serve
from .test_service_basics import assert_error

PUBLIC_URL = "https://connect.example"
CALLBACK = PUBLIC_URL + CALLBACK_PATH
REDIRECT = "https://app.example/oauth/done?tab=sources"
TYPE = "test.oauth-provider"
BASIC_TYPE = "test.oauth-provider-basic"
TIMEOUT = 5


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def provider_app() -> Flask:
    return create_oauth_provider()


@pytest.fixture
def provider(provider_app: Flask) -> OAuthProvider:
    return get_provider(provider_app)


@pytest.fixture
def provider_port(provider_app: Flask) -> Iterator[str]:
    with serve(provider_app) as base_url:
        yield base_url.rsplit(":", 1)[1]


@pytest.fixture(scope="module")
def connect_app(migrated_database: str) -> Iterator[Flask]:
    """The service, with a public URL of its own (one app for the module: building one loads the catalog)."""
    application = create_app(base_config(migrated_database, PUBLIC_URL=PUBLIC_URL, HTTP_TIMEOUT=2.0))
    yield application
    db.get_db(application).dispose()


@pytest.fixture
def connect(connect_app: Flask) -> FlaskClient:
    return connect_app.test_client()


def secret_value(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def register_app(provider: OAuthProvider, client_id: str, auth: str = "client_secret_post",
                 redirect_uri: str = CALLBACK, client_secret: str | None = None) -> tuple[str, str]:
    """An OAuth app at the provider: (client_id, client_secret)."""
    client_secret = client_secret or secret_value(client_id + "-secret")
    provider.add_client(client_id, client_secret, redirect_uris=[redirect_uri], token_endpoint_auth_method=auth)
    return client_id, client_secret


def put_app(connect: FlaskClient, headers: dict[str, str], source_type: str, client_id: str,
            client_secret: str, **extra: Any):
    configuration = {"client_id": client_id, "client_secret": client_secret, **extra}
    return connect.put("/v4/oauth/credentials", headers=headers,
                       json={"source_type": source_type, "configuration": configuration})


@pytest.fixture
def operator_app(connect: FlaskClient, operator: dict[str, str], provider: OAuthProvider) -> tuple[str, str]:
    """The operator's OAuth app for both test types, registered at the provider and in the service."""
    client_id, client_secret = register_app(provider, "operator-app")
    for source_type in (TYPE, BASIC_TYPE):
        assert put_app(connect, operator, source_type, client_id, client_secret).status_code == 200
    return client_id, client_secret


def initiate(connect: FlaskClient, account, port: str | None, source_type: str = TYPE,
             redirect_url: str = REDIRECT, **body: Any):
    inputs = body.pop("oauth_input_configuration", {})
    if port is not None:
        inputs = {"provider_port": port, **inputs}
    return connect.post("/v4/oauth/initiate", headers=account.headers, json={
        "source_type": source_type, "redirect_url": redirect_url, "oauth_input_configuration": inputs, **body})


def consent_url(connect: FlaskClient, account, port: str, **kwargs: Any) -> str:
    response = initiate(connect, account, port, **kwargs)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["consent_url"]


def visit(url: str) -> str:
    """What the user's browser does at the provider: the provider answers with a redirect."""
    answer = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def call_back(connect: FlaskClient, location: str):
    """The browser following the provider's redirect to the service's callback."""
    assert location.startswith(CALLBACK + "?"), location
    return connect.get(location.removeprefix(PUBLIC_URL))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def run_handshake(connect: FlaskClient, account, port: str, **kwargs: Any) -> str:
    """Initiate → consent → callback; returns the integrator redirect's Location."""
    answer = call_back(connect, visit(consent_url(connect, account, port, **kwargs)))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"]


def secret_id_of(connect: FlaskClient, account, port: str, **kwargs: Any) -> str:
    location = run_handshake(connect, account, port, **kwargs)
    assert "error" not in query(location), query(location)
    return query(location)["secret_id"]


def create_source(connect: FlaskClient, account, port: str, secret_id: str | None, source_type: str = TYPE,
                  **body: Any):
    payload: dict[str, Any] = {"type": source_type, "display_name": body.pop("display_name", "Provider"),
                               "properties": {"provider_port": port, **body.pop("properties", {})}, **body}
    if secret_id is not None:
        payload["secret_id"] = secret_id
    return connect.post("/v4/sources", headers=account.headers, json=payload)


def step(source: dict[str, Any], step_type: str) -> dict[str, dict[str, Any]]:
    found = next(s for s in source["report_card"]["steps"] if s["type"] == step_type)
    return {p["name"]: p for p in found["properties"]}


def stored_values(app: Flask, source_id: int) -> dict[str, Any]:
    with app.app_context():
        session = db.session()
        with session.begin():
            return decrypted_properties(get_keyring(app), session.get(Source, source_id))


def expire(app: Flask, model: type) -> None:
    with app.app_context():
        session = db.session()
        with session.begin():
            session.execute(update(model).values(expires_at=utcnow() - timedelta(seconds=1)))


def rows(app: Flask, model: type) -> list[Any]:
    with app.app_context():
        session = db.session()
        with session.begin():
            return list(session.scalars(select(model)))


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


# -- the whole flow -------------------------------------------------------------------------------


def test_the_whole_flow_over_http(make_app, operator, new_account, provider: OAuthProvider,
                                  provider_port: str) -> None:
    """initiate → consent → callback → integrator redirect → source with the secret_id, all over HTTP."""
    app = make_app()
    thread = ServerThread(app)
    app.config["PUBLIC_URL"] = thread.base_url
    thread.start()
    try:
        base = thread.base_url
        client_id, client_secret = register_app(provider, "operator-app", redirect_uri=base + CALLBACK_PATH)
        op = requests.put(base + "/v4/oauth/credentials", headers=operator, timeout=TIMEOUT, json={
            "source_type": TYPE, "configuration": {"client_id": client_id, "client_secret": client_secret}})
        assert op.status_code == 200 and client_secret not in op.text
        account = new_account("Acme")

        started = requests.post(base + "/v4/oauth/initiate", headers=account.headers, timeout=TIMEOUT, json={
            "source_type": TYPE, "redirect_url": REDIRECT,
            "oauth_input_configuration": {"provider_port": provider_port}})
        assert started.status_code == 200, started.text
        consent = started.json()["consent_url"]
        at_provider = visit(consent)
        assert at_provider.startswith(base + CALLBACK_PATH + "?code=")
        back = requests.get(at_provider, allow_redirects=False, timeout=TIMEOUT)
        assert back.status_code == 302
        assert back.headers["Cache-Control"] == "no-store"
        landing = back.headers["Location"]
        assert landing.startswith("https://app.example/oauth/done?")
        assert query(landing)["tab"] == "sources"  # the integrator's own parameter survives
        secret_id = query(landing)["secret_id"]

        created = requests.post(base + "/v4/sources", headers=account.headers, timeout=TIMEOUT, json={
            "type": TYPE, "display_name": "Provider", "properties": {"provider_port": provider_port},
            "secret_id": secret_id})
        assert created.status_code == 201, created.text
        source = created.json()
        assert all(p["provided"] for name, p in step(source, "oauth").items()
                   if name in {"client_id", "client_secret", "access_token", "refresh_token"})
        assert source["report_card"]["current_step_type"] == "discover_schema"
        events = requests.get(f"{base}/v4/sources/{source['id']}/events", headers=account.headers,
                              timeout=TIMEOUT)
        completed = [e for e in events.json() if e["type"] == "oauth_completed"]
        assert completed and completed[0]["detail"]["app_scope"] == "operator"

        credentials = [client_secret, provider.last_access_token, provider.last_refresh_token]
        for response in (started, back, created, events):
            text = response.text + json.dumps(dict(response.headers))
            for value in credentials:
                assert value not in text
        stored = stored_values(app, source["id"])
        assert stored["refresh_token"] == provider.last_refresh_token
        assert stored["access_token"] == provider.last_access_token
        assert (stored["client_id"], stored["client_secret"]) == (client_id, client_secret)
    finally:
        thread.stop()


def test_no_log_line_carries_a_secret_of_the_handshake(connect, account, operator_app, provider,
                                                        provider_port, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = consent_url(connect, account, provider_port)
    location = visit(url)
    secret_id = query(call_back(connect, location).headers["Location"])["secret_id"]
    create_source(connect, account, provider_port, secret_id)
    from app.logs import JsonFormatter

    lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "oauth handshake completed" in lines
    for value in (operator_app[1], provider.last_access_token, provider.last_refresh_token, secret_id,
                  query(url)["state"], query(location)["code"], provider.last_token_request.form["code_verifier"]):
        assert value not in lines


def test_consent_url_follows_the_contract(connect, account, operator_app, provider_port) -> None:
    response = initiate(connect, account, provider_port)
    body = response.get_json()
    url = body["consent_url"]
    assert url.startswith(f"http://127.0.0.1:{provider_port}/oauth/authorize?")
    params = query(url)
    assert params["response_type"] == "code"
    assert params["client_id"] == operator_app[0]
    assert params["redirect_uri"] == CALLBACK
    assert params["scope"] == "contacts.read deals.read"
    assert params["access_type"] == "offline"
    assert len(base64.urlsafe_b64decode(params["state"] + "==")) >= 16  # at least 128 random bits
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43 and "=" not in params["code_challenge"]
    assert "code_verifier" not in params
    assert body["expires_at"].endswith("Z")
    # Only a hash of the state is stored.
    [state] = rows(connect.application, OAuthState)
    assert state.state_hash == hashlib.sha256(params["state"].encode()).hexdigest()
    assert params["state"] not in json.dumps([str(getattr(state, c.name)) for c in OAuthState.__table__.columns])


def test_pkce_verifier_goes_to_the_token_endpoint_only(connect, account, operator_app, provider,
                                                       provider_port) -> None:
    url = consent_url(connect, account, provider_port)
    call_back(connect, visit(url))
    sent = provider.last_token_request
    verifier = sent.form["code_verifier"]
    assert s256(verifier) == query(url)["code_challenge"]
    assert verifier not in url
    assert sent.client_auth == "client_secret_post"
    assert sent.form["audience"] == "connect-tests"  # the card's token_params
    assert sent.form["redirect_uri"] == CALLBACK


def test_client_secret_basic_without_pkce(connect, account, operator_app, provider, provider_port) -> None:
    register_app(provider, "operator-app", auth="client_secret_basic", client_secret=operator_app[1])
    url = consent_url(connect, account, provider_port, source_type=BASIC_TYPE)
    assert "code_challenge" not in query(url)
    assert query(url)["scope"] == "contacts.read,deals.read"  # the card's separator
    location = call_back(connect, visit(url)).headers["Location"]
    sent = provider.last_token_request
    assert sent.client_auth == "client_secret_basic" and sent.basic_client_id == "operator-app"
    assert "client_secret" not in sent.form and "code_verifier" not in sent.form
    created = create_source(connect, account, provider_port, query(location)["secret_id"], source_type=BASIC_TYPE)
    assert created.status_code == 201
    assert all(p["provided"] for p in step(created.get_json(), "oauth").values())


def test_values_from_the_callback_and_nested_token_fields(connect, account, operator_app, provider,
                                                          provider_port) -> None:
    provider.settings.extra_token_fields = {"instance": {"url": "https://eu.provider.example"}}
    location = visit(consent_url(connect, account, provider_port)) + "&realmId=realm-42"
    secret_id = query(call_back(connect, location).headers["Location"])["secret_id"]
    source = create_source(connect, account, provider_port, secret_id).get_json()
    assert source["properties"]["instance_url"] == "https://eu.provider.example"
    assert source["properties"]["realm_id"] == "realm-42"


def test_secret_id_on_update_fills_the_oauth_step(connect, account, operator_app, provider_port) -> None:
    source = create_source(connect, account, provider_port, None).get_json()
    assert source["report_card"]["current_step_type"] == "oauth"
    secret_id = secret_id_of(connect, account, provider_port)
    updated = connect.put(f"/v4/sources/{source['id']}", headers=account.headers, json={"secret_id": secret_id})
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["report_card"]["current_step_type"] == "discover_schema"


# -- which OAuth app --------------------------------------------------------------------------------


def test_white_label_override_puts_the_accounts_client_id_in_the_consent_url(
        connect, operator_app, new_account, provider, provider_port) -> None:
    acme, other = new_account("Acme"), new_account("Other")
    own_id, own_secret = register_app(provider, "acme-own-app")
    response = put_app(connect, acme.headers, TYPE, own_id, own_secret)
    assert response.status_code == 200
    body = response.get_json()
    assert body["scope_type"] == "account" and body["client_id"] == own_id
    assert own_secret not in response.get_data(as_text=True)

    url = consent_url(connect, acme, provider_port)
    assert query(url)["client_id"] == own_id
    assert query(consent_url(connect, other, provider_port))["client_id"] == operator_app[0]

    location = call_back(connect, visit(url)).headers["Location"]
    assert provider.last_token_request.form["client_id"] == own_id  # exchanged with the account's app
    source = create_source(connect, acme, provider_port, query(location)["secret_id"]).get_json()
    assert stored_values(connect.application, source["id"])["client_id"] == own_id
    events = connect.get(f"/v4/sources/{source['id']}/events", headers=acme.headers).get_json()
    assert [e["detail"]["app_scope"] for e in events if e["type"] == "oauth_completed"] == ["account"]


def test_override_scopes_replace_the_cards(connect, account, operator_app, provider, provider_port) -> None:
    own_id, own_secret = register_app(provider, "scoped-app")
    put_app(connect, account.headers, TYPE, own_id, own_secret, scopes=["contacts.read"])
    assert query(consent_url(connect, account, provider_port))["scope"] == "contacts.read"


def test_the_sources_own_client_credentials_win(connect, account, operator_app, provider, provider_port) -> None:
    own_id, own_secret = register_app(provider, "source-own-app")
    url = consent_url(connect, account, provider_port, oauth_input_configuration={
        "client_id": own_id, "client_secret": own_secret})
    assert query(url)["client_id"] == own_id
    assert own_secret not in url
    location = call_back(connect, visit(url)).headers["Location"]
    assert "secret_id" in query(location)
    assert provider.last_token_request.form["client_secret"] == own_secret


def test_own_client_id_without_its_secret_is_422(connect, account, operator_app, provider_port) -> None:
    error = assert_error(initiate(connect, account, provider_port, oauth_input_configuration={
        "client_id": "someone-else"}), 422, "invalid_configuration")
    assert error["details"][0]["field"] == "oauth_input_configuration.client_secret"


def test_operator_app_from_the_config_file(make_app, tmp_path, new_account, provider, provider_port) -> None:
    client_id, client_secret = register_app(provider, "file-app")
    path = tmp_path / "oauth_apps.json"
    path.write_text(json.dumps({TYPE: {"client_id": client_id, "client_secret": client_secret}}))
    app = make_app(PUBLIC_URL=PUBLIC_URL, OAUTH_APPS=str(path))
    connect = app.test_client()
    account = new_account("Acme")
    secret_id = secret_id_of(connect, account, provider_port)
    assert create_source(connect, account, provider_port, secret_id).status_code == 201
    from .conftest import OPERATOR_TOKEN

    listed = connect.get("/v4/oauth/credentials", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert [(a["source_type"], a["origin"], a["client_id"]) for a in listed.get_json()] == [
        (TYPE, "config_file", client_id)]
    assert client_secret not in listed.get_data(as_text=True)


@pytest.mark.parametrize("document, reason", [
    ({"no.such-type": {"client_id": "a", "client_secret": "b"}}, "unknown source type"),
    ({"test.many-fields": {"client_id": "a", "client_secret": "b"}}, "no managed OAuth"),
    ({TYPE: {"client_id": "a"}}, "client_secret: is required"),
    (["not", "an", "object"], "must hold an object"),
])
def test_a_bad_oauth_apps_file_stops_start_up(migrated_database, tmp_path, document, reason) -> None:
    path = tmp_path / "oauth_apps.json"
    path.write_text(json.dumps(document))
    with pytest.raises(OAuthAppsFileError, match=reason):
        create_app(base_config(migrated_database, OAUTH_APPS=str(path)))


def test_no_app_at_all_is_422_naming_the_missing_configuration(connect, account, provider_port) -> None:
    error = assert_error(initiate(connect, account, provider_port), 422, "oauth_app_missing")
    assert "PUT /v4/oauth/credentials" in error["message"] and TYPE in error["message"]
    assert error["details"] == [{"field": "configuration",
                                 "reason": f"no OAuth app (client_id, client_secret) configured for {TYPE}"}]


# -- OAuth app credentials API ------------------------------------------------------------------------


def test_override_configuration_without_client_secret_is_422(connect, account) -> None:
    response = connect.put("/v4/oauth/credentials", headers=account.headers,
                           json={"source_type": TYPE, "configuration": {"client_id": "x"}})
    error = assert_error(response, 422, "invalid_configuration")
    assert error["details"] == [{"field": "configuration.client_secret", "reason": "is required"}]
    assert rows(connect.application, OAuthApp) == []


def test_credentials_are_scoped_sealed_and_never_returned(connect, account, new_account, operator) -> None:
    other = new_account("Other")
    secret = secret_value("acme-secret")
    put_app(connect, account.headers, TYPE, "acme-app", secret)
    put_app(connect, operator, TYPE, "operator-app", secret_value("op-secret"))
    mine = connect.get("/v4/oauth/credentials", headers=account.headers)
    assert [(a["scope_type"], a["client_id"]) for a in mine.get_json()] == [("account", "acme-app")]
    assert secret not in mine.get_data(as_text=True)
    assert connect.get("/v4/oauth/credentials", headers=other.headers).get_json() == []
    ops = connect.get("/v4/oauth/credentials", headers=operator).get_json()
    assert [(a["scope_type"], a["client_id"], a["origin"]) for a in ops] == [("operator", "operator-app", "api")]

    replaced = put_app(connect, account.headers, TYPE, "acme-app-2", secret_value("acme-secret"))
    assert replaced.get_json()["id"] == mine.get_json()[0]["id"]
    stored = rows(connect.application, OAuthApp)
    assert len(stored) == 2 and all(secret.encode() not in row.ciphertext for row in stored)

    assert connect.delete(f"/v4/oauth/credentials/{TYPE}", headers=other.headers).status_code == 404
    assert connect.delete(f"/v4/oauth/credentials/{TYPE}", headers=account.headers).status_code == 204
    assert connect.delete(f"/v4/oauth/credentials/{TYPE}", headers=account.headers).status_code == 404
    assert len(connect.get("/v4/oauth/credentials", headers=operator).get_json()) == 1


def test_credentials_spec_is_the_json_schema_of_configuration(connect, account) -> None:
    spec = connect.get(f"/v4/oauth/credentials/spec?source_type={TYPE}", headers=account.headers).get_json()
    assert spec["type"] == "object"
    assert spec["required"] == ["client_id", "client_secret"]
    assert set(spec["properties"]) == {"client_id", "client_secret", "scopes"}
    assert spec["x-redirect-uri"] == CALLBACK
    assert_error(connect.get("/v4/oauth/credentials/spec?source_type=test.many-fields", headers=account.headers),
                 422, "oauth_not_supported")


def test_credentials_for_a_type_without_oauth_are_422(connect, operator) -> None:
    assert_error(put_app(connect, operator, "test.many-fields", "a", "b"), 422, "oauth_not_supported")


# -- initiate: bad input ----------------------------------------------------------------------------


def test_initiate_for_a_type_with_no_oauth_section_is_422(connect, account, operator_app) -> None:
    error = assert_error(initiate(connect, account, None, source_type="test.many-fields"), 422,
                         "oauth_not_supported")
    assert error["details"][0]["field"] == "source_type"
    assert_error(initiate(connect, account, None, source_type="no.such-type"), 422, "invalid_type")


def test_initiate_needs_the_cards_input_properties(connect, account, operator_app) -> None:
    error = assert_error(initiate(connect, account, None), 422, "missing_input")
    assert error["details"] == [{"field": "oauth_input_configuration.provider_port", "reason": "is required"}]


def test_initiate_refuses_inputs_that_are_not_the_handshakes(connect, account, operator_app) -> None:
    inputs = {"provider_port": "8080", "start_date": "2020-01-01T00:00:00Z", "provider_url": "x"}
    error = assert_error(initiate(connect, account, None, oauth_input_configuration=inputs), 422, "invalid_input")
    assert {d["field"] for d in error["details"]} == {
        "oauth_input_configuration.start_date", "oauth_input_configuration.provider_url"}


@pytest.mark.parametrize("port", ["80@evil.example", "80/../x?", "80#", "80 ", "80\\evil.example"])
def test_an_input_cannot_move_the_provider_urls_to_another_host(connect, account, operator_app, provider,
                                                                 port) -> None:
    """The input lands in ``http://127.0.0.1:{{ properties.provider_port }}/oauth/token``: with '@' the
    token request, and the client secret in it, would go to evil.example."""
    error = assert_error(initiate(connect, account, port), 422, "invalid_input")
    assert error["details"][0]["field"] == "oauth_input_configuration.provider_port"
    assert rows(connect.application, OAuthState) == []


@pytest.mark.parametrize("redirect_url", [
    "http://evil.example/callback",
    "javascript:alert(document.cookie)",
    "https://app.example/done#fragment",
    "https://app.example/done#",
    "https://app.example@evil.example/done",
    "https://evil.example\\@app.example/done",
    "ftp://app.example/done",
    "//evil.example/done",
    "https:///done",
    "https://app.example/ done",
])
def test_redirect_urls_that_could_leak_a_secret_are_refused(connect, account, operator_app, provider_port,
                                                            redirect_url) -> None:
    error = assert_error(initiate(connect, account, provider_port, redirect_url=redirect_url), 422,
                         "invalid_redirect_url")
    assert error["details"][0]["field"] == "redirect_url"
    assert rows(connect.application, OAuthState) == []


@pytest.mark.parametrize("redirect_url", [
    "http://127.0.0.1:3000/done", "http://localhost/done", "http://[::1]:8080/done?x=1", REDIRECT])
def test_https_and_loopback_http_redirect_urls_are_accepted(connect, account, operator_app, provider_port,
                                                            redirect_url) -> None:
    assert initiate(connect, account, provider_port, redirect_url=redirect_url).status_code == 200


def test_the_accounts_allowlist_must_match_exactly(connect, account, new_account, operator, operator_app,
                                                   provider_port) -> None:
    path = f"/v4/accounts/{account.id}"
    set_by_account = connect.put(path, headers=account.headers, json={"redirect_url_allowlist": [REDIRECT]})
    assert set_by_account.status_code == 200
    assert set_by_account.get_json()["redirect_url_allowlist"] == [REDIRECT]
    assert connect.get(path, headers=operator).get_json()["redirect_url_allowlist"] == [REDIRECT]
    assert initiate(connect, account, provider_port).status_code == 200
    for near_miss in ("https://app.example/oauth/done", REDIRECT + "&x=1", "https://app.example/other"):
        assert_error(initiate(connect, account, provider_port, redirect_url=near_miss), 422, "invalid_redirect_url")

    other = new_account("Other")
    assert_error(connect.put(path, headers=other.headers, json={"redirect_url_allowlist": []}), 404, "not_found")
    bad = connect.put(path, headers=operator, json={"redirect_url_allowlist": ["http://evil.example/"]})
    assert assert_error(bad, 422, "invalid_redirect_url")["details"][0]["field"] == "redirect_url_allowlist.0"
    cleared = connect.put(path, headers=operator, json={"redirect_url_allowlist": None})
    assert cleared.get_json()["redirect_url_allowlist"] is None
    assert initiate(connect, account, provider_port, redirect_url="https://app.example/other").status_code == 200


# -- callback: bad state ----------------------------------------------------------------------------


def test_missing_or_tampered_state_is_400_without_redirect(connect, account, operator_app, provider_port) -> None:
    location = visit(consent_url(connect, account, provider_port))
    params = query(location)
    tampered = params["state"][:-2] + ("AA" if not params["state"].endswith("AA") else "BB")
    for path in (f"{CALLBACK_PATH}?code={params['code']}",
                 f"{CALLBACK_PATH}?code={params['code']}&state={tampered}",
                 f"{CALLBACK_PATH}?error=access_denied&state=forged"):
        response = connect.get(path)
        assert_error(response, 400, "invalid_state")
        assert "Location" not in response.headers
    # The genuine state still works after the forgeries.
    assert "secret_id" in query(call_back(connect, location).headers["Location"])


def test_replayed_state_is_400(connect, account, operator_app, provider, provider_port) -> None:
    location = visit(consent_url(connect, account, provider_port))
    assert call_back(connect, location).status_code == 302
    exchanges = provider.token_requests
    replay = call_back(connect, location)
    assert assert_error(replay, 400, "invalid_state")["details"][0]["reason"] == "already used"
    assert provider.token_requests == exchanges  # no second exchange


def test_expired_state_is_400(connect, account, operator_app, provider, provider_port) -> None:
    location = visit(consent_url(connect, account, provider_port))
    expire(connect.application, OAuthState)
    assert assert_error(call_back(connect, location), 400, "invalid_state")["details"][0]["reason"] == "expired"
    assert provider.token_requests == 0


# -- callback: the provider or its token endpoint fails ---------------------------------------------------


def failed(connect, location: str) -> dict[str, str]:
    """The integrator redirect of a failed handshake: its parameters, after checking its shape."""
    response = call_back(connect, location)
    assert response.status_code == 302
    landing = response.headers["Location"]
    assert landing.startswith("https://app.example/oauth/done?")
    params = query(landing)
    assert params["tab"] == "sources" and "secret_id" not in params
    assert params["error"] and params["error_description"]
    assert rows(connect.application, OAuthSecret) == []
    return params


def test_access_denied_goes_back_to_the_integrator(connect, account, operator_app, provider, provider_port,
                                                   caplog) -> None:
    provider.settings.deny_consent = True
    location = visit(consent_url(connect, account, provider_port))
    assert query(location)["error"] == "access_denied"
    with caplog.at_level(logging.WARNING, logger="app.oauth.handshake"):
        params = failed(connect, location)
    assert params["error"] == "access_denied"
    assert provider.token_requests == 0
    [line] = [r for r in caplog.records if r.getMessage() == "oauth handshake failed"]
    assert line.error == "access_denied" and line.source_type == TYPE
    [state] = rows(connect.application, OAuthState)
    assert state.outcome == "access_denied" and state.used_at is not None


@pytest.mark.parametrize("fault, error", [
    ("invalid_grant", "invalid_grant"),
    ("server_error", "server_error"),
    ("html", "server_error"),
    ("truncated_json", "server_error"),
    ("no_access_token", "server_error"),
    ("slow", "temporarily_unavailable"),
    ("lost_response", "temporarily_unavailable"),
])
def test_token_endpoint_failures_go_back_to_the_integrator(make_app, account, operator_app, provider,
                                                           provider_port, fault, error) -> None:
    connect = make_app(PUBLIC_URL=PUBLIC_URL, HTTP_TIMEOUT=0.2).test_client()
    location = visit(consent_url(connect, account, provider_port))
    provider.fail_next_token_requests(fault, delay=1.0 if fault == "slow" else None)
    params = failed(connect, location)
    assert params["error"] == error
    assert provider.token_requests == 1
    issued = [t for t in (provider.last_access_token, provider.last_refresh_token) if t]
    for token in issued:  # a body the provider did send never travels to the integrator
        assert token not in json.dumps(params)
    if fault == "slow":
        assert "0.2 s" in params["error_description"]


def test_a_redirect_without_code_goes_back_to_the_integrator(connect, account, operator_app,
                                                              provider_port) -> None:
    location = visit(consent_url(connect, account, provider_port))
    without_code = CALLBACK + "?state=" + query(location)["state"]
    assert failed(connect, without_code)["error"] == "invalid_request"


def test_a_failed_reconnect_is_an_audit_event(connect, account, operator_app, provider, provider_port) -> None:
    source = create_source(connect, account, provider_port, secret_id_of(connect, account, provider_port)).get_json()
    location = visit(consent_url(connect, account, provider_port, source_id=source["id"]))
    provider.fail_next_token_requests("invalid_grant")
    assert query(call_back(connect, location).headers["Location"])["error"] == "invalid_grant"
    events = connect.get(f"/v4/sources/{source['id']}/events", headers=account.headers).get_json()
    assert {"type": "oauth_failed", "detail": {"error": "invalid_grant"}} in [
        {"type": e["type"], "detail": e["detail"]} for e in events]


# -- reconnect --------------------------------------------------------------------------------------


def test_reconnect_updates_the_source_in_place(connect, account, operator_app, provider, provider_port) -> None:
    first = create_source(connect, account, provider_port, secret_id_of(connect, account, provider_port)).get_json()
    old_refresh_token = provider.last_refresh_token
    provider.revoke_refresh_tokens()  # the user removed the app at the provider: the source needs a new grant

    url = consent_url(connect, account, provider_port, source_id=first["id"],
                      oauth_input_configuration={})  # the port comes from the source itself
    assert query(url)["client_id"] == operator_app[0]
    landing = call_back(connect, visit(url)).headers["Location"]
    assert query(landing) == {"tab": "sources", "source_id": str(first["id"])}
    assert rows(connect.application, OAuthSecret)[-1].used_at is not None  # applied, not handed out

    stored = stored_values(connect.application, first["id"])
    assert stored["refresh_token"] == provider.last_refresh_token != old_refresh_token
    after = connect.get(f"/v4/sources/{first['id']}", headers=account.headers)
    assert after.headers["ETag"] != f'"{first["id"]}.1"'
    assert provider.last_refresh_token not in after.get_data(as_text=True)
    events = connect.get(f"/v4/sources/{first['id']}/events", headers=account.headers).get_json()
    assert [e["type"] for e in events].count("oauth_completed") == 2


def test_reconnect_keeps_the_sources_own_oauth_app(connect, account, operator_app, provider,
                                                   provider_port) -> None:
    own_id, own_secret = register_app(provider, "source-own-app")
    secret_id = secret_id_of(connect, account, provider_port, oauth_input_configuration={
        "client_id": own_id, "client_secret": own_secret})
    source = create_source(connect, account, provider_port, secret_id).get_json()
    url = consent_url(connect, account, provider_port, source_id=source["id"])
    assert query(url)["client_id"] == own_id  # from the source's stored properties, not the operator's
    call_back(connect, visit(url))
    assert provider.last_token_request.form["client_secret"] == own_secret


def test_a_source_cannot_store_an_input_its_oauth_urls_refuse(connect, account, operator_app) -> None:
    # The authorize and token URLs are judged when the value is saved (app/connectors/urls.py), so a
    # reconnect never finds such a value stored.
    error = assert_error(create_source(connect, account, "80@evil.example", None), 422, "invalid_properties")
    assert error["details"][0]["field"] == "properties.provider_port"


def test_reconnect_of_a_source_that_is_not_the_accounts_is_404(connect, account, new_account, operator_app,
                                                               provider_port) -> None:
    source = create_source(connect, account, provider_port, None).get_json()
    other = new_account("Other")
    assert_error(initiate(connect, other, provider_port, source_id=source["id"]), 404, "not_found")
    assert_error(initiate(connect, account, provider_port, source_type=BASIC_TYPE, source_id=source["id"]),
                 422, "invalid_type")


# -- secret_id --------------------------------------------------------------------------------------


def count_sources(app: Flask) -> int:
    return len(rows(app, Source))


def test_secret_id_is_single_use(connect, account, operator_app, provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    assert create_source(connect, account, provider_port, secret_id).status_code == 201
    error = assert_error(create_source(connect, account, provider_port, secret_id, display_name="Again"), 409,
                         "secret_id_used")
    assert error["details"][0]["field"] == "secret_id"
    assert count_sources(connect.application) == 1
    [secret] = rows(connect.application, OAuthSecret)
    assert secret.used_by_source_id is not None


def test_a_secret_id_raced_by_two_requests_makes_one_source(connect_app, connect, account, operator_app,
                                                              provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def attempt(name: str) -> None:
        client = connect_app.test_client()
        barrier.wait(timeout=TIMEOUT)
        statuses.append(create_source(client, account, provider_port, secret_id, display_name=name).status_code)

    threads = [threading.Thread(target=attempt, args=(name,)) for name in ("First", "Second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 409]
    assert count_sources(connect_app) == 1


def test_expired_secret_id_is_410(connect, account, operator_app, provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    expire(connect.application, OAuthSecret)
    assert_error(create_source(connect, account, provider_port, secret_id), 410, "secret_id_expired")
    assert count_sources(connect.application) == 0


def test_secret_id_of_another_account_is_404(connect, account, new_account, operator_app, provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    other = new_account("Other")
    assert_error(create_source(connect, other, provider_port, secret_id), 404, "not_found")
    assert_error(create_source(connect, other, provider_port, "sec_" + secrets.token_urlsafe(32)), 404, "not_found")
    assert count_sources(connect.application) == 0
    assert create_source(connect, account, provider_port, secret_id).status_code == 201  # still the owner's


def test_secret_id_for_another_type_is_422(connect, account, operator_app, provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    assert_error(create_source(connect, account, provider_port, secret_id, source_type=BASIC_TYPE), 422,
                 "secret_id_type_mismatch")
    assert count_sources(connect.application) == 0


def test_a_failed_create_does_not_use_the_secret_id_up(connect, account, operator_app, provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    assert create_source(connect, account, provider_port, None, display_name="Taken").status_code == 201
    assert_error(create_source(connect, account, provider_port, secret_id, display_name="Taken"), 409,
                 "invalid_name")
    assert create_source(connect, account, provider_port, secret_id, display_name="Free").status_code == 201


def test_a_request_value_that_contradicts_the_handshake_is_422(connect, account, operator_app,
                                                               provider_port) -> None:
    secret_id = secret_id_of(connect, account, provider_port)
    response = create_source(connect, account, "9999" if provider_port != "9999" else "9998", secret_id)
    error = assert_error(response, 422, "invalid_properties")
    assert error["details"][0]["property"] == "provider_port"


# -- secrets at rest --------------------------------------------------------------------------------


def test_handshake_rows_are_sealed_and_covered_by_key_rotation(connect, account, operator_app, provider,
                                                                provider_port) -> None:
    assert {OAuthApp, OAuthState, OAuthSecret} <= set(sealed_models())
    location = visit(consent_url(connect, account, provider_port))
    [state] = rows(connect.application, OAuthState)
    assert operator_app[1].encode() not in state.ciphertext
    secret_id = query(call_back(connect, location).headers["Location"])["secret_id"]
    [secret] = rows(connect.application, OAuthSecret)
    assert provider.last_refresh_token.encode() not in secret.ciphertext
    assert secret.secret_hash == hashlib.sha256(secret_id.encode()).hexdigest()
    create_source(connect, account, provider_port, secret_id)
    # Used rows are re-sealed empty: the tokens do not linger beside the source's own copy.
    keyring = get_keyring(connect.application)
    from app.crypto import Sealed as SealedValue

    for row in rows(connect.application, OAuthState) + rows(connect.application, OAuthSecret):
        assert keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data) == "{}"
    assert rows(connect.application, SourceEvent)


def test_a_token_endpoint_the_network_rules_refuse_ends_the_handshake(make_app, operator, new_account,
                                                                       provider: OAuthProvider,
                                                                       provider_port) -> None:
    strict = make_app(PUBLIC_URL=PUBLIC_URL, HTTP_TIMEOUT=2.0, ALLOWED_SOURCE_NETWORKS="")  # no loopback
    connect = strict.test_client()
    account = new_account("Strict")
    client_id, client_secret = register_app(provider, "strict-app")
    assert put_app(connect, operator, TYPE, client_id, client_secret).status_code == 200
    before = provider.token_requests
    location = run_handshake(connect, account, provider_port)
    assert query(location)["error"] == "server_error"
    assert "loopback" in query(location)["error_description"]
    assert provider.token_requests == before  # the code was never sent
