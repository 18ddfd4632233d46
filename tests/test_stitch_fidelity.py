"""What a Stitch client sees: access:false types refused, formats and cron checked in words, the
Source object's schedule and stitch_client_id, streams as Stitch shows them, read-only schemas,
transliterated names, and the managed handshake filling what it knows (HubSpot's redirect_uri)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.catalog import get_catalog
from app.catalog.formats import checked_formats
from app.config import DEFAULT_REPORT_CARDS
from app.crypto import get_keyring
from app.models import Source
from app.sources.credentials import decrypted_properties

from . import test_oauth as oauth
from .conftest import TESTS
from .test_discovery import _reset, data_api, run_jobs  # noqa: F401  (_reset: the data API takes the token)
from .test_discovery import create as create_discovery_source
from .test_oauth import provider, provider_app, provider_port  # noqa: F401
from .test_service_basics import assert_error

START = "2024-01-01T00:00:00Z"
POSTGRES = {"host": "db.example.com", "port": "5432", "dbname": "shop", "user": "reader",
            "password": "pw-" + os.urandom(8).hex()}


def post(client, account, source_type: str, properties: dict[str, Any] | None = None, **body: Any):
    return client.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": body.pop("display_name", f"{source_type} {os.urandom(3).hex()}"),
        "properties": properties or {}, **body})


# -- details.access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_type", "successor"), [
    ("platform.postgres", "platform.hp-postgres"), ("platform.marketo", "platform.marketobulk"),
    ("platform.cloudsql_pg", "platform.hp-cloudsql-pg"), ("hp.rando", None)])
def test_a_type_without_access_is_refused_with_403_naming_its_successor(client, account, source_type, successor):
    error = assert_error(post(client, account, source_type), 403, "access_denied")
    assert error["details"][0]["field"] == "type"
    if successor:
        assert f"create a {successor} source instead" in error["message"]
        assert error["details"][0]["upgrade_available"] == successor
    assert client.get("/v4/sources", headers=account.headers).get_json()["data"] == []


def test_every_deprecated_type_names_its_successor(app, client, account):
    with app.app_context():
        catalog = get_catalog()
    deprecated = {c.type: c.upgrade_type
                  for c in catalog.cards.values() if c.details.get("pipeline_state") == "deprecated"}
    assert len(deprecated) == 8 and all(deprecated.values()), deprecated
    assert all(successor in catalog for successor in deprecated.values())
    card = client.get("/v4/source-types/platform.mysql", headers=account.headers).get_json()
    assert card["upgrade_available"] == {"type": "platform.hp-mysql"}


def test_the_operator_allows_types_explicitly(make_app, client, account):
    # The suite's own setting allows platform.mysql and platform.mariadb (the database connector needs them).
    assert post(client, account, "platform.mysql").status_code == 201
    listed = make_app(ALLOWED_DEPRECATED_TYPES="platform.postgres").test_client()
    assert post(listed, account, "platform.postgres").status_code == 201
    assert post(listed, account, "hp.rando").status_code == 403
    everything = make_app(ALLOWED_DEPRECATED_TYPES="*").test_client()
    assert post(everything, account, "hp.rando").status_code == 201


def test_a_connect_session_for_a_type_without_access_is_refused(client, account):
    response = client.post("/v4/connect/sessions", headers=account.headers, json={
        "allowed_types": ["platform.hp-postgres", "platform.postgres"], "redirect_url": "https://app.example/x"})
    error = assert_error(response, 403, "access_denied")
    assert error["details"][0]["field"] == "allowed_types[1]"


# -- formats and cron -------------------------------------------------------------------------------


def test_every_format_the_shipped_catalog_uses_is_checked():
    used: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            if isinstance(schema.get("format"), str):
                used.add(schema["format"])
            for value in schema.values():
                walk(value)
        elif isinstance(schema, list):
            for value in schema:
                walk(value)

    for path in DEFAULT_REPORT_CARDS.glob("*.json"):
        for step in json.loads(path.read_text())["steps"]:
            for prop in step["properties"]:
                walk(prop["json_schema"])
    assert used >= {"date-time", "hostname", "ipv4", "uri", "email", "quartz-cron"}
    assert used <= checked_formats(), used - checked_formats()


@pytest.mark.parametrize(("source_type", "properties", "name", "reason"), [
    ("platform.hp-postgres", {"host": "not a host!!"}, "host", "must be a host name such as db.example.com or an IPv4"),
    ("platform.quickbase", {"qb_url": "not a uri"}, "qb_url", "must be a full URL such as https://example.com/path"),
    ("platform.pardot", {"email": "nobody"}, "email", "must be an email address"),
    ("platform.hubspot", {"anchor_time": "tomorrow"}, "anchor_time", "must be a date and time such as"),
    ("platform.hubspot", {"cron_expression": "every tuesday"}, "cron_expression",
     "must be a Quartz cron expression such as 0 0 12 ? * MON-FRI"),
    ("platform.hubspot", {"cron_expression": "0 0 12 1 * MON"}, "cron_expression",
     "Exactly one of day-of-month or day-of-week must be '?'"),
    ("platform.hubspot", {"cron_expression": "0 0 12 ? * 0"}, "cron_expression", "out of bounds (1-7)"),
])
def test_bad_values_are_refused_in_words(client, account, source_type, properties, name, reason):
    error = assert_error(post(client, account, source_type, properties), 422, "invalid_properties")
    detail = next(d for d in error["details"] if d["property"] == name)
    assert reason in detail["reason"]
    assert "^" not in error["message"] and "is not a '" not in error["message"]


def test_a_quartz_cron_expression_as_stitch_documents_it_is_accepted(client, account):
    for expression in ("0 0 12 ? * MON-FRI *", "0 15 10 L * ?", "0 0/30 8-18 ? * 2-6"):
        response = post(client, account, "platform.hubspot", {"cron_expression": expression})
        assert response.status_code == 201, response.get_json()


# -- the Source object ------------------------------------------------------------------------------


def test_schedule_and_stitch_client_id(client, account):
    default = post(client, account, "platform.hubspot").get_json()
    assert default["stitch_client_id"] == account.id
    # HubSpot's details.default_scheduling_interval
    assert default["schedule"] == {"type": "interval", "unit": "minute", "interval": 30.0, "next_fire_time": None}
    every_6_hours = post(client, account, "platform.hubspot", {"frequency_in_minutes": "360"}).get_json()
    assert every_6_hours["schedule"]["interval"] == 360.0
    cron = post(client, account, "platform.hubspot", {"frequency_in_minutes": "360",
                                                      "cron_expression": "0 0 6 ? * MON *"}).get_json()
    assert cron["schedule"] == {"type": "cron", "cron_expression": "0 0 6 ? * MON *", "next_fire_time": None}
    paused = client.put(f"/v4/sources/{cron['id']}", headers=account.headers,
                        json={"paused_at": "2024-01-01T00:00:00Z"}).get_json()
    assert paused["schedule"] is None
    webhook = post(client, account, "webhook.incoming-webhook").get_json()
    assert webhook["schedule"] is None  # no scheduling properties


def test_read_only_properties_serve_their_schema(client, account):
    card = client.get("/v4/source-types/platform.google-analytics", headers=account.headers).get_json()
    quota_user = next(p for p in card["steps"][0]["properties"] if p["name"] == "quota_user")
    assert quota_user["property_type"] == "read_only"
    assert quota_user["json_schema"]["type"] == "string"


@pytest.mark.parametrize(("display_name", "name"), [
    ("Ünïcödé Nämé", "unicode_name"), ("Straße & Co.", "strasse_co"), ("北京 sales", "beijing_sales"),
    ("Ørsted", "orsted")])
def test_names_are_transliterated_before_stitchs_rule(client, account, display_name, name):
    assert post(client, account, "platform.hubspot", display_name=display_name).get_json()["name"] == name


# -- streams ----------------------------------------------------------------------------------------


def test_streams_show_metadata_and_a_null_selection_until_chosen(app, client, account, data_api):  # noqa: F811
    source = create_discovery_source(client, account, data_api)
    run_jobs(app)
    streams = client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json()
    contacts = next(s for s in streams if s["tap_stream_id"] == "contacts")
    assert contacts["selected"] is None
    assert contacts["metadata"]["table-key-properties"] == ["id"]
    assert "selected" not in contacts["metadata"]
    client.put(f"/v4/sources/{source['id']}/streams/metadata", headers=account.headers, json={"streams": [
        {"tap_stream_id": "contacts", "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]},
        {"tap_stream_id": "deals", "metadata": [{"breadcrumb": [], "metadata": {"selected": False}}]}]})
    streams = {s["tap_stream_id"]: s for s in
               client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json()}
    assert (streams["contacts"]["selected"], streams["deals"]["selected"], streams["gone"]["selected"]) == (
        True, False, None)
    assert streams["contacts"]["metadata"]["selected"] is True
    # The step machine reads the effective selection: one stream chosen is enough.
    assert client.get(f"/v4/sources/{source['id']}", headers=account.headers).get_json()[
        "report_card"]["current_step_type"] == "fully_configured"
    schema = client.get(f"/v4/sources/{source['id']}/streams/{streams['contacts']['stream_id']}",
                        headers=account.headers).get_json()
    assert schema["non-discoverable-metadata-keys"] == ["selected", "replication-method", "replication-key"]
    assert "non_discoverable_metadata_keys" not in schema


# -- the managed handshake fills what it knows ------------------------------------------------------


@pytest.fixture
def hubspot_app(make_app, tmp_path: Path, provider_port: str):
    """The service with platform.hubspot's card pointed at the test OAuth provider (a later card
    folder wins on the same type), everything else as shipped."""
    card = json.loads((DEFAULT_REPORT_CARDS / "platform.hubspot.json").read_text())
    card["oauth"]["authorize_url"] = f"http://127.0.0.1:{provider_port}/oauth/authorize"
    card["oauth"]["token_url"] = f"http://127.0.0.1:{provider_port}/oauth/token"
    card["oauth"]["scopes"] = ["contacts.read"]
    card["oauth"]["authorize_params"] = {}
    (tmp_path / "platform.hubspot.json").write_text(json.dumps(card))
    cards = os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(TESTS / "report_cards"), str(tmp_path)])
    return make_app(REPORT_CARDS=cards, PUBLIC_URL=oauth.PUBLIC_URL, HTTP_TIMEOUT=2.0)


def test_a_hubspot_source_created_with_a_secret_id_moves_past_oauth(hubspot_app, operator, new_account, provider):
    connect = hubspot_app.test_client()
    account = new_account("Acme")
    client_id, client_secret = oauth.register_app(provider, "hubspot-app")
    assert oauth.put_app(connect, operator, "platform.hubspot", client_id, client_secret).status_code == 200
    card = connect.get("/v4/source-types/platform.hubspot", headers=account.headers).get_json()
    assert card["oauth_handshake"] == {"fills": ["client_id", "client_secret", "redirect_uri", "refresh_token"],
                                       "remaining_inputs": []}
    answer = oauth.initiate(connect, account, None, source_type="platform.hubspot")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["remaining_inputs"] == []
    location = oauth.call_back(connect, oauth.visit(answer.get_json()["consent_url"])).headers["Location"]
    secret_id = oauth.query(location)["secret_id"]
    created = post(connect, account, "platform.hubspot", {"start_date": START}, secret_id=secret_id)
    assert created.status_code == 201, created.get_json()
    source = created.get_json()
    assert source["report_card"]["current_step_type"] == "discover_schema"
    assert oauth.step(source, "oauth")["redirect_uri"]["provided"] is True
    with hubspot_app.app_context():
        from app import db

        row = db.session().get(Source, source["id"])
        assert decrypted_properties(get_keyring(), row)["redirect_uri"] == oauth.CALLBACK


def test_the_initiate_answer_names_the_inputs_still_to_give(client, account, operator):
    client_id, client_secret = "ga-app", "ga-secret-" + os.urandom(8).hex()
    assert oauth.put_app(client, operator, "platform.google-analytics", client_id, client_secret).status_code == 200
    answer = oauth.initiate(client, account, None, source_type="platform.google-analytics")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["remaining_inputs"] == ["view_id"]
    ads = client.get("/v4/source-types/platform.google-ads", headers=account.headers).get_json()
    assert set(ads["oauth_handshake"]["remaining_inputs"]) == {"customer_ids", "developer_token",
                                                               "login_customer_ids", "user_id"}
