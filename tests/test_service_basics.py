"""Service-level behaviour: health, OpenAPI, docs offline, the one error shape, tokens, logging."""

from __future__ import annotations

import json
import logging

import pytest


def assert_error(response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "details"}
    assert body["error"]["type"] == type_, body
    assert body["error"]["message"]
    return body["error"]


def test_health_reports_the_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_openapi_document_lists_the_real_routes(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/v4/source-types/{source_type}" in spec["paths"]
    assert "/v4/accounts" in spec["paths"]


def test_docs_page_works_without_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs-assets/swagger-ui-bundle.js" in html
    assert "http" not in html.split("swagger-ui-bundle.js")[0].split("<script src=")[-1]
    asset = client.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000


def test_unknown_path_is_404_in_the_error_shape(client, account):
    assert_error(client.get("/v4/nothing-here", headers=account.headers), 404, "not_found")
    assert_error(client.get("/nothing"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(client, account):
    error = assert_error(client.delete("/v4/source-types", headers=account.headers), 405,
                         "method_not_allowed")
    assert error["message"]


def test_a_body_that_is_not_json_is_400(client, operator):
    response = client.post("/v4/accounts", data="{not json", headers={
        **operator, "Content-Type": "application/json"})
    assert_error(response, 400, "malformed_request")


def test_schema_errors_name_the_field(client, operator):
    error = assert_error(client.post("/v4/accounts", json={"nam": "x"}, headers=operator), 422,
                         "invalid_body")
    fields = {d["field"] for d in error["details"]}
    assert {"name", "nam"} <= fields


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer wrong-token"])
def test_missing_or_wrong_token_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    assert_error(client.get("/v4/source-types", headers=headers), 401, "unauthorized")


def test_revoked_token_is_401(client, account):
    tokens = client.get(f"/v4/accounts/{account.id}/tokens", headers=account.headers).get_json()
    response = client.delete(f"/v4/accounts/{account.id}/tokens/{tokens[0]['id']}",
                             headers=account.headers)
    assert response.status_code == 204
    assert_error(client.get("/v4/source-types", headers=account.headers), 401, "unauthorized")


def test_operator_only_calls_refuse_account_tokens(client, account):
    assert_error(client.get("/v4/accounts", headers=account.headers), 403, "access_denied")
    assert_error(client.post("/v4/accounts", json={"name": "x"}, headers=account.headers), 403,
                 "access_denied")


def test_unknown_source_type_is_404(client, account):
    error = assert_error(client.get("/v4/source-types/platform.nope", headers=account.headers),
                         404, "not_found")
    assert "platform.nope" in error["message"]


def test_source_types_list(client, account, app):
    response = client.get("/v4/source-types", headers=account.headers)
    assert response.status_code == 200
    types = response.get_json()
    assert len(types) >= 186
    ga = next(t for t in types if t["type"] == "platform.google-analytics")
    assert ga["steps"] == ["form", "oauth", "discover_schema", "field_selection", "fully_configured"]
    assert ga["managed_oauth"] is True
    assert set(ga) == {"type", "display_name", "aliases", "details", "upgrade_available", "steps", "managed_oauth"}
    assert ga["aliases"] == ["google-analytics"]
    postgres = next(t for t in types if t["type"] == "platform.postgres")
    assert postgres["upgrade_available"] == {"type": "platform.hp-postgres"}


def test_google_analytics_report_card_has_the_shape_of_stitchs_guide(client, account):
    card = client.get("/v4/source-types/platform.google-analytics", headers=account.headers).get_json()
    # Stitch's type-level card, plus what this service adds: what its OAuth handshake fills, and
    # whether this deployment can configure the type end to end (its tap is not installed here).
    assert set(card) == {"type", "current_step", "current_step_type", "steps", "details", "upgrade_available",
                         "oauth_handshake", "availability"}
    assert card["availability"]["configurable"] is False
    assert "flask connect taps install platform.google-analytics" in card["availability"]["reason"]
    assert card["upgrade_available"] is None
    assert card["oauth_handshake"] == {"fills": ["client_id", "client_secret", "refresh_token"],
                                       "remaining_inputs": ["view_id"]}
    assert (card["type"], card["current_step"], card["current_step_type"]) == (
        "platform.google-analytics", 1, "form")
    assert [s["type"] for s in card["steps"]] == [
        "form", "oauth", "discover_schema", "field_selection", "fully_configured"]
    for step in card["steps"]:
        for prop in step["properties"]:
            assert set(prop) == {"name", "is_required", "is_credential", "system_provided",
                                 "property_type", "json_schema", "provided", "tap_mutable"}
            assert prop["provided"] is False
    form = {p["name"]: p for p in card["steps"][0]["properties"]}
    assert form["start_date"]["json_schema"]["pattern"] == "^\\d{4}-\\d{2}-\\d{2}T00:00:00Z$"
    # Every schema carries a title and (for what the user fills in) a description; a read-only
    # property's schema is served, as Stitch's example serves quota_user's.
    assert form["start_date"]["json_schema"]["title"] == "Start date"
    assert form["quota_user"]["json_schema"]["type"] == "string"
    assert form["image_version"]["json_schema"]["title"] == "Connector version"
    oauth = [p["name"] for p in card["steps"][1]["properties"]]
    assert oauth == ["client_id", "client_secret", "refresh_token", "user_id", "view_id"]
    assert card["details"]["protocol"] == "platform.google-analytics"


def test_private_sections_are_never_served(client, account):
    text = client.get("/v4/source-types/platform.google-analytics", headers=account.headers).get_data(
        as_text=True)
    for private in ("system_values", "authorize_url", "token_url", "\"oauth\":"):
        assert private not in text


def test_log_lines_are_json_with_a_request_id(client, account, caplog):
    caplog.set_level(logging.INFO, logger="connect.access")
    response = client.get("/v4/source-types", headers={**account.headers, "X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    from app.logs import JsonFormatter, RequestIdFilter

    records = [r for r in caplog.records if r.name == "connect.access"]
    assert records
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "abc-123"
    assert line["path"] == "/v4/source-types" and line["status"] == 200
    assert RequestIdFilter  # the filter puts request ids on lines from any logger


def test_an_unsafe_request_id_is_replaced(client):
    response = client.get("/health", headers={"X-Request-Id": "bad id <script>"})
    assert response.headers["X-Request-Id"] != "bad id <script>"
    assert len(response.headers["X-Request-Id"]) == 32
