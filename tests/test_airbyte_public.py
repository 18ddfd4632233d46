"""Airbyte's public API (``/v1``) as "How to Create OAuth Sources" uses it, both ways: the managed
(organization) app, and a workspace OAuth credentials override; camelCase in and out; another
workspace is 404; refused input changes nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from app.models import Source
from app.oauth.models import OAuthApp, OAuthState

from .airbyte_support import HUBSPOT, Service, assert_airbyte_error, count, query, service  # noqa: F401

REDIRECT = "https://app.example/sources/new"


def workspace(service: Service, name: str = "Acme") -> dict:
    created = service.call("POST", "/v4/accounts", json={"name": name})
    assert created.status_code == 201
    return created.json()


def initiate(service: Service, workspace_id: str, token: str | None = None, **body: object) -> requests.Response:
    payload = {"redirectUrl": REDIRECT, "sourceType": "hubspot", "workspaceId": workspace_id, **body}
    kwargs = {"token": token} if token else {}
    return service.call("POST", "/v1/sources/initiateOAuth", json=payload, **kwargs)


def create(service: Service, workspace_id: str, secret_id: str | None, token: str | None = None,
           **configuration: object) -> requests.Response:
    body: dict = {"name": "HubSpot", "workspaceId": workspace_id,
                  "configuration": {"sourceType": "hubspot", **configuration}}
    if secret_id is not None:
        body["secretId"] = secret_id
    kwargs = {"token": token} if token else {}
    return service.call("POST", "/v1/sources", json=body, **kwargs)


def secret_of(service: Service, workspace_id: str) -> tuple[str, str]:
    """(secret_id, the client_id the consent URL carried)."""
    started = initiate(service, workspace_id)
    assert started.status_code == 200 and set(started.json()) == {"consentUrl"}, started.text
    consent = started.json()["consentUrl"]
    client_id = parse_qs(urlsplit(consent).query)["client_id"][0]
    landing = service.follow_consent(consent)
    assert landing.startswith(REDIRECT + "?"), landing
    return query(landing)["secret_id"], client_id


def app_scope(service: Service, source_id: int, token: str) -> list[str]:
    events = service.call("GET", f"/v4/sources/{source_id}/events", token=token).json()
    return [e["detail"]["app_scope"] for e in events if e["type"] == "oauth_completed"]


def test_with_the_managed_app_a_secret_id_makes_the_source(service: Service) -> None:
    service.register_app("org-app", "org-app-secret-0123456789")
    put = service.call("PUT", "/api/v1/oauth/credentials", json={
        "connector_type": "hubspot", "configuration": {"client_id": "org-app",
                                                       "client_secret": "org-app-secret-0123456789"}})
    assert put.status_code == 200
    acme = workspace(service)
    secret_id, client_id = secret_of(service, str(acme["id"]))
    assert client_id == "org-app"
    # complete_oauth_output_specification's properties (client_id, refresh_token…) are not required.
    created = create(service, str(acme["id"]), secret_id, start_date="2026-01-01T00:00:00Z")
    assert created.status_code == 200, created.text
    source = created.json()
    assert set(source) == {"sourceId", "name", "sourceType", "workspaceId", "configuration", "createdAt"}
    assert source["sourceType"] == "hubspot" and source["workspaceId"] == str(acme["id"])
    assert source["configuration"]["start_date"] == "2026-01-01T00:00:00Z"
    assert "refresh_token" not in source["configuration"] and "client_secret" not in source["configuration"]
    assert app_scope(service, source["sourceId"], acme["token"]) == ["operator"]
    stitch = service.call("GET", f"/v4/sources/{source['sourceId']}", token=acme["token"]).json()
    assert stitch["type"] == HUBSPOT


def test_with_a_workspace_override_the_workspace_app_runs_the_handshake(service: Service) -> None:
    service.register_app("org-app", "org-app-secret-0123456789")
    service.register_app("ws-app", "ws-app-secret-0123456789")
    service.call("PUT", "/api/v1/oauth/credentials", json={
        "connector_type": "hubspot", "configuration": {"client_id": "org-app",
                                                       "client_secret": "org-app-secret-0123456789"}})
    acme = workspace(service)
    override = service.call("PUT", f"/v1/workspaces/{acme['id']}/oauthCredentials", json={
        "actorType": "source", "name": "hubspot",
        "configuration": {"client_id": "ws-app", "client_secret": "ws-app-secret-0123456789"}})
    assert override.status_code == 200 and "ws-app-secret" not in override.text
    secret_id, client_id = secret_of(service, str(acme["id"]))
    assert client_id == "ws-app"  # workspace over organization
    created = create(service, str(acme["id"]), secret_id)
    assert created.status_code == 200, created.text
    assert app_scope(service, created.json()["sourceId"], acme["token"]) == ["account"]
    other = workspace(service, "Other")
    assert secret_of(service, str(other["id"]))[1] == "org-app"  # the override is that workspace's only


def test_another_workspace_is_not_found_and_nothing_changes(service: Service) -> None:
    service.register_app("org-app", "org-app-secret-0123456789")
    service.call("PUT", "/api/v1/oauth/credentials", json={
        "connector_type": "hubspot", "configuration": {"client_id": "org-app",
                                                       "client_secret": "org-app-secret-0123456789"}})
    mine, theirs = workspace(service, "Mine"), workspace(service, "Theirs")
    secret_id, _ = secret_of(service, str(theirs["id"]))
    apps, states = count(service, OAuthApp), count(service, OAuthState)
    for answer in (
        initiate(service, str(theirs["id"]), token=mine["token"]),
        create(service, str(theirs["id"]), secret_id, token=mine["token"]),
        service.call("PUT", f"/v1/workspaces/{theirs['id']}/oauthCredentials", token=mine["token"], json={
            "actorType": "source", "name": "hubspot", "configuration": {"client_id": "x", "client_secret": "y"}}),
        initiate(service, "999999"),
        initiate(service, "not-a-number"),
    ):
        assert_airbyte_error(answer, 404, "Workspace not found", "workspaceId")
    # Mine cannot use their secret either: to mine it does not exist.
    assert_airbyte_error(create(service, str(mine["id"]), secret_id, token=mine["token"]), 404, "Invalid secret_id",
                         "secretId")
    assert (count(service, OAuthApp), count(service, OAuthState), count(service, Source)) == (apps, states, 0)
    assert create(service, str(theirs["id"]), secret_id, token=theirs["token"]).status_code == 200


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/sources/initiateOAuth", {"redirectUrl": "ftp://x", "sourceType": "hubspot"}, "redirectUrl"),
    ("/v1/sources/initiateOAuth", {"redirectUrl": REDIRECT, "sourceType": "nope"}, "sourceType"),
    ("/v1/sources/initiateOAuth", {"redirectUrl": REDIRECT, "sourceType": "hubspot",
                                   "oAuthInputConfiguration": {"shop": "x"}}, "oAuthInputConfiguration.shop"),
    ("/v1/sources/initiateOAuth", {"redirectUrl": REDIRECT, "source_type": "hubspot"}, "sourceType"),
    ("/v1/sources", {"name": "HubSpot", "configuration": {}}, "configuration.sourceType"),
    ("/v1/sources", {"name": "HubSpot", "configuration": {"sourceType": "nope"}}, "configuration.sourceType"),
    ("/v1/sources", {"name": "HubSpot", "configuration": {"sourceType": "hubspot", "start_date": "soon"}},
     "configuration.start_date"),
    ("/v1/sources", {"name": "HubSpot", "configuration": {"sourceType": "hubspot"}, "secretId": ""}, "secretId"),
    ("/v1/sources", {"configuration": {"sourceType": "hubspot"}}, "name"),
])
def test_bad_public_bodies_name_the_field_in_camel_case_and_change_nothing(service: Service, path: str,
                                                                           body: dict, field: str) -> None:
    acme = workspace(service)
    answer = service.call("POST", path, json={"workspaceId": str(acme["id"]), **body})
    assert_airbyte_error(answer, 422, "", field)
    assert (count(service, Source), count(service, OAuthState)) == (0, 0)


def test_a_workspace_override_refuses_other_actors_and_bad_configurations(service: Service) -> None:
    acme = workspace(service)
    for body, field in (({"actorType": "destination", "name": "hubspot", "configuration": {}}, "actorType"),
                        ({"actorType": "source", "name": "nope", "configuration": {}}, "name"),
                        ({"actorType": "source", "name": "hubspot", "configuration": {"client_id": "x"}},
                         "configuration.client_secret")):
        answer = service.call("PUT", f"/v1/workspaces/{acme['id']}/oauthCredentials", json=body)
        assert_airbyte_error(answer, 422, "", field)
    assert count(service, OAuthApp) == 0
