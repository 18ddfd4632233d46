"""The Airbyte embedded API (``/api/v1``), replayed as "Implement your own OAuth flow" writes it,
against the service on 127.0.0.1 with the Authlib test provider standing in for HubSpot; the
mapping rules (workspace = account by external_id, made once on first use); the troubleshooting
answers; and the catalog's aliases."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from app import db
from app.catalog import CatalogError, load_catalog
from app.config import DEFAULT_REPORT_CARDS
from app.models import Account, Source
from app.oauth.models import OAuthSecret, OAuthState

from .airbyte_support import HUBSPOT, TIMEOUT, Service, assert_airbyte_error, count, query, service  # noqa: F401
from .source_databases import pg_admin, postgres_source  # noqa: F401  (fixtures)
from .test_database_sources import pg_properties
from .test_discovery import run_jobs

REDIRECT = "https://app.example/oauth/callback"
USER = "user_123"


def organization_app(service: Service, client_id: str = "org-app") -> str:
    secret = f"{client_id}-secret-0123456789"
    service.register_app(client_id, secret)
    answer = service.call("PUT", "/api/v1/oauth/credentials", json={
        "connector_type": "hubspot", "configuration": {"client_id": client_id, "client_secret": secret}})
    assert answer.status_code == 200, answer.text
    assert secret not in answer.text
    return secret


def initiate(service: Service, user: str = USER, token: str | None = None, **body: object) -> requests.Response:
    payload = {"external_user_id": user, "connector_type": "hubspot", "redirect_url": REDIRECT, **body}
    if token is None:
        return service.call("POST", "/api/v1/integrations/connectors/oauth/initiate", json=payload)
    return service.call("POST", "/api/v1/integrations/connectors/oauth/initiate", token=token, json=payload)


def secret_for(service: Service, user: str = USER) -> str:
    started = initiate(service, user)
    assert started.status_code == 200, started.text
    landing = service.follow_consent(started.json()["consent_url"])
    assert landing.startswith(REDIRECT + "?"), landing
    return query(landing)["secret_id"]


def create_connector(service: Service, secret_id: str, user: str = USER, **body: object) -> requests.Response:
    return service.call("POST", "/api/v1/integrations/connectors", json={
        "external_user_id": user, "connector_type": "hubspot", "server_side_oauth_secret_id": secret_id, **body})


# -- the seed's flow ----------------------------------------------------------------------------------


def test_the_embedded_flow_as_the_seed_writes_it(service: Service) -> None:
    """Part 1 override → spec → initiate → consent → callback with secret_id → create connector;
    the connector is the /v4 source of the shipped HubSpot type, in the workspace made on first use."""
    secret = organization_app(service)
    put = service.call("PUT", "/api/v1/oauth/credentials", json={
        "connector_type": "HubSpot", "configuration": {"client_id": "org-app", "client_secret": secret}}).json()
    assert put["scope_type"] == "organization" and put["scope_id"] is None and put["connector_type"] == "hubspot"
    assert set(put) == {"id", "scope_type", "scope_id", "connector_type", "created_at", "updated_at"}

    spec = service.call("GET", "/api/v1/oauth/credentials/spec", params={"connector_type": "hubspot"})
    assert spec.status_code == 200 and spec.json()["x-redirect-uri"] == service.base + "/v4/oauth/callback"

    started = initiate(service)
    assert started.status_code == 200 and set(started.json()) == {"consent_url"}, started.text
    landing = service.follow_consent(started.json()["consent_url"])
    secret_id = query(landing)["secret_id"]

    created = create_connector(service, secret_id, name="HubSpot")
    assert created.status_code == 200, created.text
    connector = created.json()
    assert set(connector) == {"id", "name", "source_template", "replication_config", "created_at", "updated_at"}
    assert connector["name"] == "HubSpot"
    assert connector["source_template"] == {"id": HUBSPOT, "name": "HubSpot", "connector_type": "hubspot"}
    assert service.provider.last_refresh_token not in created.text

    accounts = service.call("GET", "/v4/accounts").json()
    assert [a["external_id"] for a in accounts] == [USER]
    token = service.call("POST", f"/v4/accounts/{accounts[0]['id']}/tokens").json()["token"]
    source = service.call("GET", f"/v4/sources/{connector['id']}", token=token).json()
    assert source["type"] == HUBSPOT
    oauth = next(s for s in source["report_card"]["steps"] if s["type"] == "oauth")
    assert all(p["provided"] for p in oauth["properties"]), oauth
    events = service.call("GET", f"/v4/sources/{connector['id']}/events", token=token).json()
    assert [e["detail"]["app_scope"] for e in events if e["type"] == "oauth_completed"] == ["operator"]


def test_the_name_is_made_up_when_absent(service: Service) -> None:
    organization_app(service)
    created = create_connector(service, secret_for(service))
    assert created.status_code == 200, created.text
    assert created.json()["name"].startswith("HubSpot ")


def test_a_scoped_token_acts_for_its_own_workspace_only(service: Service) -> None:
    organization_app(service)
    mine = service.call("POST", "/v4/accounts", json={"name": "Mine", "external_id": "mine"}).json()
    service.call("POST", "/v4/accounts", json={"name": "Theirs", "external_id": "theirs"})
    override = service.call("PUT", "/api/v1/oauth/credentials", token=mine["token"], json={
        "connector_type": "hubspot", "configuration": {"client_id": "ws-app", "client_secret": "ws-secret-1234"}})
    assert override.json()["scope_type"] == "workspace" and override.json()["scope_id"] == str(mine["id"])
    assert initiate(service, "mine", token=mine["token"]).status_code == 200
    states = count(service, OAuthState)
    assert_airbyte_error(initiate(service, "theirs", token=mine["token"]), 404, "Workspace not found",
                         "external_user_id")
    assert_airbyte_error(initiate(service, "new-user", token=mine["token"]), 404, "Workspace not found")
    assert count(service, OAuthState) == states and count(service, Account) == 2


# -- mapping: one workspace per external_user_id ----------------------------------------------------


def test_concurrent_first_uses_of_one_external_user_id_make_one_workspace(service: Service) -> None:
    organization_app(service)
    answers: list[int] = []
    barrier = threading.Barrier(6)

    def first_use() -> None:
        barrier.wait(timeout=TIMEOUT)
        answers.append(initiate(service, "racing-user").status_code)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [200] * 6
    with service.app.app_context():
        session = db.session()
        with session.begin():
            ids = list(session.scalars(select(Account.id).where(Account.external_id == "racing-user")))
    assert len(ids) == 1 and count(service, OAuthState) == 6


# -- troubleshooting --------------------------------------------------------------------------------


def test_another_external_user_id_than_at_initiate_is_workspace_not_found(service: Service) -> None:
    organization_app(service)
    secret_id = secret_for(service, "alice")
    secret_for(service, "bob")  # bob's workspace exists too
    assert_airbyte_error(create_connector(service, secret_id, "bob"), 404, "Workspace not found", "external_user_id")
    assert_airbyte_error(create_connector(service, secret_id, "carol"), 404, "Workspace not found")
    assert count(service, Source) == 0 and count(service, Account) == 2
    assert create_connector(service, secret_id, "alice").status_code == 200  # nothing was used up


def test_an_altered_expired_or_used_secret_is_invalid_secret_id(service: Service) -> None:
    organization_app(service)
    secret_id = secret_for(service)
    assert_airbyte_error(create_connector(service, secret_id + "x"), 404, "Invalid secret_id",
                         "server_side_oauth_secret_id")
    assert create_connector(service, secret_id).status_code == 200
    assert_airbyte_error(create_connector(service, secret_id), 409, "Invalid secret_id")
    expired = secret_for(service)
    with service.app.app_context():
        session = db.session()
        with session.begin():
            for row in session.scalars(select(OAuthSecret).where(OAuthSecret.used_at.is_(None))):
                row.expires_at = row.created_at
    assert_airbyte_error(create_connector(service, expired), 410, "Invalid secret_id")
    assert count(service, Source) == 1


# -- bad input: refused, naming the field, changing nothing -----------------------------------------


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"connector_type": "no-such-thing"}, 422, "connector_type"),
    ({"connector_type": "salesforce"}, 422, "configuration"),  # no OAuth app for it
    ({"connector_type": "postgres"}, 422, "connector_type"),  # no managed OAuth handshake
    ({"redirect_url": "http://app.example/x"}, 422, "redirect_url"),
    ({"external_user_id": ""}, 422, "external_user_id"),
    ({"external_user_id": "a\nb"}, 422, "external_user_id"),
    ({"oauth_input_configuration": {"shop": "x"}}, 422, "oauth_input_configuration.shop"),
    ({"surprise": 1}, 422, "surprise"),
])
def test_a_refused_initiate_makes_no_workspace(service: Service, body: dict, status: int, field: str) -> None:
    organization_app(service)
    answer = initiate(service, **{"external_user_id": "fresh", **body})  # type: ignore[arg-type]
    assert_airbyte_error(answer, status, "", field)
    assert count(service, Account) == 0 and count(service, OAuthState) == 0


def test_bad_connector_bodies_change_nothing(service: Service) -> None:
    organization_app(service)
    secret_id = secret_for(service)
    for body, field in (({"connector_type": "nope"}, "connector_type"),
                        ({"name": ""}, "name"),
                        ({"replication_config": {"start_date": "yesterday"}}, "replication_config.start_date"),
                        ({"server_side_oauth_secret_id": 7}, "server_side_oauth_secret_id")):
        answer = service.call("POST", "/api/v1/integrations/connectors", json={
            "external_user_id": USER, "connector_type": "hubspot", "server_side_oauth_secret_id": secret_id, **body})
        assert_airbyte_error(answer, 422, "", field)
    assert count(service, Source) == 0
    assert create_connector(service, secret_id).status_code == 200


def test_errors_take_airbyte_s_shape_without_a_token_too(service: Service) -> None:
    answer = requests.post(service.base + "/api/v1/integrations/connectors", json={}, timeout=TIMEOUT)
    assert_airbyte_error(answer, 401, "missing bearer token")
    assert_airbyte_error(service.call("GET", "/api/v1/oauth/credentials/spec"), 422, "", "connector_type")
    stitch = requests.get(service.base + "/v4/sources", timeout=TIMEOUT).json()
    assert set(stitch) == {"error"}  # the Stitch dialect keeps its own


def test_openapi_documents_both_dialects_tagged(service: Service) -> None:
    document = requests.get(service.base + "/openapi.json", timeout=TIMEOUT).json()
    tags = {tag for item in document["paths"].values() for op in item.values()
            if isinstance(op, dict) for tag in op.get("tags", [])}
    assert {"airbyte_embedded", "airbyte_public", "sources"} <= tags
    for path in ("/api/v1/integrations/connectors/oauth/initiate", "/api/v1/integrations/connectors",
                 "/api/v1/oauth/credentials", "/api/v1/oauth/credentials/spec", "/v1/sources",
                 "/v1/sources/initiateOAuth", "/v1/workspaces/{workspaceId}/oauthCredentials"):
        assert path in document["paths"], path


# -- aliases ----------------------------------------------------------------------------------------


def test_every_shipped_type_has_a_unique_alias_resolved_in_any_case() -> None:
    catalog = load_catalog(str(DEFAULT_REPORT_CARDS))
    assert all(card.aliases for card in catalog.cards.values())
    assert len(catalog.by_alias) == sum(len(card.aliases) for card in catalog.cards.values())
    assert catalog.resolve("HubSpot").type == HUBSPOT  # type: ignore[union-attr]
    assert catalog.resolve("google-ads").type == "platform.google-ads"  # type: ignore[union-attr]
    assert catalog.resolve("postgres").type == "platform.hp-postgres"  # type: ignore[union-attr]
    assert catalog.resolve("postgres-legacy").type == "platform.postgres"  # type: ignore[union-attr]
    assert catalog.resolve(HUBSPOT).type == HUBSPOT  # type: ignore[union-attr]
    assert catalog.resolve("hubspot2") is None and catalog.get("hubspot") is None  # /v4 takes types only


@pytest.mark.parametrize(("aliases", "reason"), [
    (["hubspot"], "alias 'hubspot' is already platform.hubspot's"),
    (["platform.stripe"], "does not match"),
    (["Upper"], "does not match"),
])
def test_an_alias_another_card_has_stops_the_load(tmp_path: Path, aliases: list[str], reason: str) -> None:
    card = json.loads((DEFAULT_REPORT_CARDS / "platform.stripe.json").read_text())
    card.update(type="custom.stripe2", aliases=aliases)
    (tmp_path / "custom.stripe2.json").write_text(json.dumps(card))
    with pytest.raises(CatalogError) as raised:
        load_catalog(f"{DEFAULT_REPORT_CARDS}:{tmp_path}")
    assert reason in str(raised.value) and "$.aliases" in str(raised.value)


# -- execute ----------------------------------------------------------------------------------------


def test_execute_runs_the_operation_on_the_connector_for_the_operator_and_its_workspace(
        app, client, operator, postgres_source) -> None:
    """A database connector made through the embedded API, checked and discovered, a stream selected
    through /v4; then Airbyte's execute call, as the operator and as the workspace's scoped token."""
    mine = client.post("/v4/accounts", headers=operator, json={"name": "Mine", "external_id": "db-user"}).get_json()
    theirs = client.post("/v4/accounts", headers=operator, json={"name": "Theirs"}).get_json()
    created = client.post("/api/v1/integrations/connectors", headers=operator, json={
        "external_user_id": "db-user", "connector_type": "Postgres", "name": "Shop",
        "replication_config": pg_properties(postgres_source)})
    assert created.status_code == 200, created.get_json()
    connector = created.get_json()
    assert connector["source_template"]["id"] == "platform.hp-postgres"
    assert "password" not in connector["replication_config"]
    run_jobs(app)
    entity = f"{postgres_source.database}-shop-customers"
    selected = client.put(f"/v4/sources/{connector['id']}/streams/metadata", headers=bearer(mine["token"]), json={
        "streams": [{"tap_stream_id": entity, "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]})
    assert selected.status_code == 200, selected.get_json()

    path = f"/api/v1/connectors/sources/{connector['id']}/execute"
    for headers in (operator, bearer(mine["token"])):
        answer = client.post(path, headers=headers, json={"entity": entity, "action": "list", "params": {"limit": 5}})
        assert answer.status_code == 200, answer.get_json()
        assert len(answer.get_json()["result"]) == 5
        assert set(answer.get_json()["connector_metadata"]["pagination"]) == {"cursor"}
    for headers, body, status, field in (
            (bearer(theirs["token"]), {"entity": entity, "action": "list"}, 404, None),
            (operator, {"entity": entity, "action": "delete"}, 422, "action"),
            (operator, {"entity": "nope", "action": "list"}, 422, "entity")):
        answer = client.post(path, headers=headers, json=body)
        error = answer.get_json()
        assert answer.status_code == status and set(error) == {"type", "title", "status", "detail", "errors"}, error
        assert field is None or field in [e["field"] for e in error["errors"]], error
    missing = client.post("/api/v1/connectors/sources/999999/execute", headers=operator,
                          json={"entity": entity, "action": "list"})
    assert missing.status_code == 404 and missing.get_json()["title"] == "not_found"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
