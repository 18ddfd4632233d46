"""The Singer connector inside the service, end to end with the fake tap (tests/taps/fake_tap, a real
process installed by uv): a source created over the API is checked and discovered by the worker
through its tap, selected, fully configured and handed over (``GET …/catalog``, which the tap
takes with ``--catalog``); a type whose tap is not installed waits on ``connector_not_installed``
and is re-checked once ``flask connect taps install`` installs it; a refresh token the tap rotates
is kept (never older, never lost) and audited; ``flask connect export-source`` writes the files a
pipeline host runs the tap with."""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import create_app
from app.catalog import get_catalog
from app.cli import connect_cli
from app.connect.forms import availability as connect_availability
from app.connectors.base import ConnectorFailure
from app.connectors.registry import get_connectors
from app.connectors.singer.connector import ConfigChange, spec_for
from app.connectors.singer.rotation import RotatedProperties
from app.connectors.singer.runner import RunLimits, run_tap
from app.crypto import get_keyring
from app.db import get_db
from app.models import Source, SourceEvent
from app.sources.credentials import decrypted_properties

from .conftest import base_config
from .servers.planted import new_secret
from .singer_support import (  # noqa: F401  (fixtures)
    FAKE_TYPE,
    Changes,
    _property,
    connector,
    fake_card,
    fake_singer_section,
    fake_tap_installed,
    singer_document,
    taps,
    target,
)
from .test_discovery import run_jobs, step
from .test_service_basics import assert_error

LATER_TYPE = "test.singer-fake-later"  # installed by the tests, with the operator's command
ROTATED = new_secret("tap-rotated-refresh")
FORM = [_property("mode", required=False), _property("username"), _property("password", credential=True),
        _property("refresh_token", credential=True, required=False)]


@pytest.fixture(scope="module")
def singer_app(migrated_database: str, fake_tap_installed, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
               ) -> Iterator[Flask]:
    """An app whose catalog has the fake tap's types, and whose taps directory has it installed
    for FAKE_TYPE (and not for LATER_TYPE)."""
    environments, _ = fake_tap_installed
    cards = tmp_path_factory.mktemp("singer_service_cards")
    section = fake_singer_section(config={"fixed": {"new_refresh_token": ROTATED}})
    for source_type in (FAKE_TYPE, LATER_TYPE):
        (cards / f"{source_type}.json").write_text(json.dumps(singer_document(source_type, section, FORM)))
    application = create_app(base_config(migrated_database, REPORT_CARDS=str(cards), TAPS_DIR=str(environments.root)))
    yield application
    application.test_cli_runner().invoke(connect_cli, ["taps", "remove", LATER_TYPE])
    get_db(application).dispose()


@pytest.fixture()
def api(singer_app: Flask) -> FlaskClient:
    return singer_app.test_client()


def create(api: FlaskClient, account, source_type: str, **properties: Any) -> int:  # type: ignore[no-untyped-def]
    response = api.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": f"CRM {secrets.token_hex(3)}",
        "properties": {"username": "ada", "password": "pw", **properties}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def last_check(api: FlaskClient, account, source_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return api.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()


def select_contacts(api: FlaskClient, account, source_id: int) -> None:  # type: ignore[no-untyped-def]
    response = api.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers, json={"streams": [
        {"tap_stream_id": "contacts", "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "INCREMENTAL",
                                            "replication-key": "updatedAt"}},
            {"breadcrumb": ["properties", "email"], "metadata": {"selected": True}}]}]})
    assert response.status_code == 200, response.get_json()


def events(app: Flask, source_id: int, type_: str) -> list[dict[str, Any]]:
    with get_db(app).Session() as session:
        return [e.detail for e in session.scalars(select(SourceEvent).where(
            SourceEvent.source_id == source_id, SourceEvent.type == type_).order_by(SourceEvent.id))]


def stored_properties(app: Flask, source_id: int) -> dict[str, Any]:
    with app.app_context(), get_db(app).Session() as session:
        return decrypted_properties(get_keyring(app), session.get_one(Source, source_id))


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(connect_cli, list(args))


def test_a_source_is_configured_through_its_tap_and_its_catalog_is_what_the_tap_takes(singer_app, api, account):
    source_id = create(api, account, FAKE_TYPE)
    assert step(api, account, source_id) == "discover_schema"
    assert_error(api.get(f"/v4/sources/{source_id}/catalog", headers=account.headers), 409, "not_ready")

    run_jobs(singer_app)
    assert step(api, account, source_id) == "field_selection", last_check(api, account, source_id)
    assert last_check(api, account, source_id)["stream_count"] == 2
    error = assert_error(api.get(f"/v4/sources/{source_id}/catalog", headers=account.headers), 409, "not_ready")
    assert "field_selection" in error["message"]

    select_contacts(api, account, source_id)
    assert step(api, account, source_id) == "fully_configured"
    response = api.get(f"/v4/sources/{source_id}/catalog", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    catalog = response.get_json()
    contacts, deals = catalog["streams"]
    top = next(m["metadata"] for m in contacts["metadata"] if m["breadcrumb"] == [])
    assert (top["selected"], top["replication-method"], top["replication-key"]) == (True, "INCREMENTAL", "updatedAt")
    assert contacts["key_properties"] == ["id"]  # the tap's own catalog key, handed back
    fields = {m["breadcrumb"][1]: m["metadata"] for m in contacts["metadata"] if m["breadcrumb"]}
    assert (fields["email"]["selected"], fields["id"]["selected"]) == (True, True)  # id is automatic
    assert next(m["metadata"] for m in deals["metadata"] if m["breadcrumb"] == []).get("selected") is not True

    with singer_app.app_context():
        tap = get_connectors(singer_app).for_card(get_catalog().get(FAKE_TYPE)).environments.installed(FAKE_TYPE)
    run = run_tap(tap.executable, ["--catalog", "{dir}/catalog.json"], {"username": "ada"}, RunLimits(timeout=30),
                  files={"catalog.json": catalog})
    assert run.succeeded, run.stderr_tail
    records = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [r["stream"] for r in records if r["type"] == "RECORD"] == ["contacts"]

    other = api.get(f"/v4/sources/{source_id}/catalog",
                    headers={"Authorization": "Bearer " + "x" * 40})
    assert other.status_code == 401


def test_the_catalog_route_answers_and_documents_404_409_and_422(singer_app, api, account, make_app, tmp_path):
    spec = api.get("/openapi.json").get_json()
    operation = spec["paths"]["/v4/sources/{source_id}/catalog"]["get"]
    assert {"200", "404", "409", "422"} <= set(operation["responses"])
    assert_error(api.get("/v4/sources/999999/catalog", headers=account.headers), 404, "not_found")
    source_id = create(api, account, LATER_TYPE)
    (tmp_path / "cards").mkdir()  # a deployment whose catalog no longer has the type
    (tmp_path / "cards" / f"{FAKE_TYPE}.json").write_text(json.dumps(singer_document(
        FAKE_TYPE, fake_singer_section(config={}), FORM)))
    without = make_app(REPORT_CARDS=str(tmp_path / "cards")).test_client()
    assert_error(without.get(f"/v4/sources/{source_id}/catalog", headers=account.headers), 422, "type_unavailable")


def test_a_type_whose_tap_is_missing_waits_and_is_rechecked_once_installed(singer_app, api, account):
    source_id = create(api, account, LATER_TYPE)
    deleted_id = create(api, account, LATER_TYPE)
    with singer_app.app_context():
        availability = get_connectors(singer_app).availability(get_catalog().get(LATER_TYPE))
    assert not availability.configurable and f"flask connect taps install {LATER_TYPE}" in availability.reason
    with singer_app.test_request_context():  # what the hosted connect page shows for the type
        shown = connect_availability(get_catalog().get(LATER_TYPE)).reason
    assert "has not finished setting up" in shown and "flask connect" not in shown  # no operator's command
    card = api.get(f"/v4/source-types/{LATER_TYPE}", headers=account.headers).get_json()
    assert card["availability"]["configurable"] is False
    assert f"flask connect taps install {LATER_TYPE}" in card["availability"]["reason"]
    installed_card = api.get(f"/v4/source-types/{FAKE_TYPE}", headers=account.headers).get_json()
    assert installed_card["availability"] == {"configurable": True, "reason": None}

    run_jobs(singer_app)
    check = last_check(api, account, source_id)
    assert (check["status"], check["error"]["type"]) == ("failed", "connector_not_installed")
    assert f"flask connect taps install {LATER_TYPE}" in check["error"]["message"]
    assert step(api, account, source_id) == "discover_schema"
    assert api.delete(f"/v4/sources/{deleted_id}", headers=account.headers).status_code in (200, 204)

    installed = cli(singer_app, "taps", "install", LATER_TYPE)
    assert installed.exit_code == 0, installed.output
    assert "1 source(s) waiting for this tap queued for a check" in installed.output
    assert last_check(api, account, source_id)["status"] == "queued"
    assert api.get(f"/v4/source-types/{LATER_TYPE}", headers=account.headers).get_json()["availability"][
        "configurable"] is True
    run_jobs(singer_app)
    assert step(api, account, source_id) == "field_selection", last_check(api, account, source_id)

    again = cli(singer_app, "taps", "install", LATER_TYPE)  # nothing is waiting any more
    assert again.exit_code == 0 and "queued for a check" not in again.output

    assert cli(singer_app, "taps", "remove", LATER_TYPE).exit_code == 0
    response = api.post(f"/v4/sources/{source_id}/discover", headers=account.headers)
    assert response.status_code == 202
    run_jobs(singer_app)
    assert last_check(api, account, source_id)["error"]["type"] == "connector_not_installed"


@pytest.mark.parametrize("mode", ["rotate", "rotate_and_fail"])
def test_a_refresh_token_the_tap_rotates_is_stored_and_audited(singer_app, api, account, mode):
    old = new_secret("tap-old-refresh")
    source_id = create(api, account, FAKE_TYPE, mode=mode, refresh_token=old)
    run_jobs(singer_app)
    assert stored_properties(singer_app, source_id)["refresh_token"] == ROTATED
    assert events(singer_app, source_id, "refresh_token_rotated") == [{"property": "refresh_token", "by": "singer_tap"}]
    if mode == "rotate":
        assert step(api, account, source_id) == "field_selection"
        run_jobs(singer_app)  # the next run starts from the rotated token: nothing new to keep
        assert api.post(f"/v4/sources/{source_id}/discover", headers=account.headers).status_code == 202
        run_jobs(singer_app)
        assert len(events(singer_app, source_id, "refresh_token_rotated")) == 1
    else:
        assert last_check(api, account, source_id)["error"]["type"] == "source_unavailable"


def test_a_rotation_never_replaces_a_newer_stored_value(singer_app, api, account):
    saved = new_secret("tap-saved-refresh")
    source_id = create(api, account, FAKE_TYPE, refresh_token=saved)
    with singer_app.app_context():
        store = RotatedProperties(get_db(singer_app).Session, get_keyring(singer_app))
        late = new_secret("tap-late-refresh")
        # A run that was given an older token (the user saved `saved` since): its rotation is dropped.
        store(ConfigChange(source_id, account.id, 1, {"refresh_token": late}, {},
                           given={"refresh_token": new_secret("tap-older-refresh")},
                           credentials=frozenset({"refresh_token"})))
        assert stored_properties(singer_app, source_id)["refresh_token"] == saved
        # A run given the stored one: its successor is kept.
        store(ConfigChange(source_id, account.id, 1, {"refresh_token": late}, {"access_token": "a" * 20},
                           given={"refresh_token": saved}, credentials=frozenset({"refresh_token"})))
    assert stored_properties(singer_app, source_id)["refresh_token"] == late
    assert events(singer_app, source_id, "refresh_token_rotated") == [{"property": "refresh_token", "by": "singer_tap"}]


def test_a_tap_that_rotates_during_test_is_given_the_new_token_for_discover(taps):  # noqa: F811
    card = fake_card(capabilities=["discover", "test"], config={"fixed": {"expected_password": "pw"}})
    changes = Changes()
    singer = connector(taps, changes=changes)
    source = target(card, {"mode": "rotate", "username": "ada", "password": "pw",
                           "refresh_token": new_secret("tap-first"), "new_refresh_token": new_secret("tap-second")})
    singer.check(source)  # --test rotates
    singer.discover(source)  # --discover is given the rotated token, so it changes nothing
    assert [change.properties for change in changes] == [{"refresh_token": source.properties["new_refresh_token"]}]


def test_export_source_writes_the_pipelines_files_privately_and_audited(singer_app, api, account, tmp_path):
    password = new_secret("tap-export-password")
    source_id = create(api, account, FAKE_TYPE, password=password)
    target_dir = tmp_path / "pipeline"
    refused = cli(singer_app, "export-source", str(source_id), str(target_dir))
    assert refused.exit_code == 1 and "discover_schema" in refused.output
    assert not target_dir.exists() or not any(target_dir.iterdir())
    assert cli(singer_app, "export-source", "999999", str(target_dir)).exit_code == 1

    run_jobs(singer_app)
    select_contacts(api, account, source_id)
    done = cli(singer_app, "export-source", str(source_id), str(target_dir))
    assert done.exit_code == 0, done.output
    assert password not in done.output
    config_file, catalog_file = target_dir / "config.json", target_dir / "catalog.json"
    for path in (config_file, catalog_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = json.loads(config_file.read_text())
    assert (config["username"], config["password"], config["new_refresh_token"]) == ("ada", password, ROTATED)
    assert config["user_agent"] == singer_app.config["TAP_USER_AGENT"]  # as the tap is given it
    assert json.loads(catalog_file.read_text()) == api.get(f"/v4/sources/{source_id}/catalog",
                                                           headers=account.headers).get_json()
    [exported] = events(singer_app, source_id, "source_exported")
    assert exported == {"directory": str(target_dir.resolve()), "files": ["config.json", "catalog.json"],
                        "streams": 2}
    assert password not in json.dumps(exported)


@pytest.mark.parametrize(("missing", "error_type", "fixed_by", "named"), [
    ("['refresh_token']", "missing_properties", "user", "'refresh_token'"),
    ("['refresh_token', 'region']", "tap_config_incomplete", "operator", "'region'"),
])
def test_a_tap_missing_config_keys_says_which_and_who_gives_them(taps, missing, error_type, fixed_by,  # noqa: F811
                                                                named):
    card = fake_card()
    message = f"Exception: Config is missing required keys: {missing}"
    source = target(card, {"mode": "stderr_message", "message": message, "username": "ada", "password": "pw"})
    with pytest.raises(ConnectorFailure) as failed:
        connector(taps).check(source)
    assert (failed.value.error_type, failed.value.fixed_by) == (error_type, fixed_by)
    assert named in failed.value.message


def test_every_tap_is_given_the_deployments_user_agent_unless_the_card_sets_one(taps):  # noqa: F811
    singer = connector(taps)
    plain = fake_card()
    assert singer.tap_config(spec_for(plain), {"username": "ada"})["user_agent"] == singer.user_agent
    own = fake_card(config={"fixed": {"user_agent": "acme-pipeline"}})
    assert singer.tap_config(spec_for(own), {"username": "ada"})["user_agent"] == "acme-pipeline"


def test_a_singer_source_says_it_cannot_execute_or_proxy_rather_than_failing(singer_app, api, account):
    """A tap only reads whole streams (no page, no record by key, no API of its own to call), so
    execute and the proxy answer 409 naming why, for a configured source, and nothing is audited."""
    source_id = create(api, account, FAKE_TYPE)
    run_jobs(singer_app)
    select_contacts(api, account, source_id)
    assert step(api, account, source_id) == "fully_configured"

    body = {"entity": "contacts", "action": "list", "params": {"limit": 5}}
    error = assert_error(api.post(f"/v4/sources/{source_id}/execute", headers=account.headers, json=body),
                         409, "execute_not_supported")
    assert FAKE_TYPE in error["message"]
    error = assert_error(api.get(f"/v4/sources/{source_id}/proxy/contacts", headers=account.headers),
                         409, "proxy_not_supported")
    assert FAKE_TYPE in error["message"]
    assert events(singer_app, source_id, "source_executed") == events(singer_app, source_id, "source_proxied") == []
