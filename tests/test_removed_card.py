"""A type's report card removed while sources of it exist (issue 13): the sources stay readable,
listed and deletable, say why they cannot work, refuse changes and checks with a clear 422, and
start-up says how many there are. Restoring the card restores them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from app import db
from app.config import DEFAULT_REPORT_CARDS
from app.discovery.models import ConnectionCheck
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.wiring import services

from .conftest import TESTS
from .servers import create_data_api, get_data_api, serve
from .test_service_basics import assert_error

REMOVABLE = "test.removable"
TOKEN = "removable-token"
SHIPPED_AND_TEST_CARDS = os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(TESTS / "report_cards")])


@pytest.fixture(scope="module")
def data_api():
    app = create_data_api()
    api = get_data_api(app)
    with serve(app) as url:
        api.base_url = url
        api.settings.bearer_token = TOKEN
        yield api


@pytest.fixture()
def extra_cards(tmp_path: Path) -> str:
    """A folder holding one more card (test.discovery's, under another type), to be taken away."""
    document = json.loads((TESTS / "report_cards" / "test.discovery.json").read_text())
    document.update(type=REMOVABLE, display_name="Test: removable")
    (tmp_path / f"{REMOVABLE}.json").write_text(json.dumps(document))
    return str(tmp_path)


@pytest.fixture()
def apps(make_app, extra_cards):
    """(an app whose catalog has the card, an app on the same database whose catalog has not)."""
    return (make_app(REPORT_CARDS=os.pathsep.join([SHIPPED_AND_TEST_CARDS, extra_cards])),
            make_app(REPORT_CARDS=SHIPPED_AND_TEST_CARDS))


def create(client, account, data_api, source_type=REMOVABLE, display_name="Removable") -> dict:
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": display_name,
        "properties": {"api_url": data_api.base_url, "api_token": TOKEN}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_jobs(app) -> None:
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    for _ in range(20):
        if not worker.run_once():
            return
    raise AssertionError("jobs kept coming")


def test_a_source_of_a_removed_type_is_readable_listed_and_says_why(apps, account, data_api):
    with_card, without_card = (app.test_client() for app in apps)
    gone = create(with_card, account, data_api)
    kept = create(with_card, account, data_api, "test.discovery", "Still there")

    shown = without_card.get(f"/v4/sources/{gone['id']}", headers=account.headers)
    assert shown.status_code == 200
    body = shown.get_json()
    assert body["setup_state"] == "broken"
    assert body["report_card"] == {
        "type": REMOVABLE, "current_step": None, "current_step_type": None, "steps": [],
        "unavailable": True, "setup_error": body["report_card"]["setup_error"]}
    error = body["report_card"]["setup_error"]
    assert error["type"] == "type_unavailable" and REMOVABLE in error["message"]
    # What the source holds is still there to read (credentials are never shown, as always).
    assert body["properties"] == {"api_url": data_api.base_url}
    assert shown.headers["ETag"]

    listed = without_card.get("/v4/sources", headers=account.headers)
    assert listed.status_code == 200
    by_id = {source["id"]: source for source in listed.get_json()["data"]}
    assert set(by_id) == {gone["id"], kept["id"]}
    assert by_id[gone["id"]]["report_card"]["unavailable"] is True
    assert "unavailable" not in by_id[kept["id"]]["report_card"]
    assert by_id[kept["id"]]["report_card"]["current_step_type"] == "discover_schema"

    # The source itself is untouched: with the card back it is what it was.
    restored = with_card.get(f"/v4/sources/{gone['id']}", headers=account.headers).get_json()
    assert restored == {**gone, "report_card": restored["report_card"]}
    assert restored["report_card"] == gone["report_card"]


def test_changes_and_checks_are_refused_with_a_clear_422_that_changes_nothing(apps, account, data_api):
    with_card, without_card = (app.test_client() for app in apps)
    source_id = create(with_card, account, data_api)["id"]
    before = without_card.get(f"/v4/sources/{source_id}", headers=account.headers).get_data()
    events_before = without_card.get(f"/v4/sources/{source_id}/events", headers=account.headers).get_data()

    refusals = [
        without_card.put(f"/v4/sources/{source_id}", headers=account.headers,
                         json={"properties": {"region": "eu"}}),
        without_card.put(f"/v4/sources/{source_id}", headers=account.headers, json={"display_name": "Renamed"}),
        without_card.post(f"/v4/sources/{source_id}/discover", headers=account.headers),
        without_card.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers, json={
            "streams": [{"tap_stream_id": "contacts", "metadata": []}]}),
    ]
    for response in refusals:
        error = assert_error(response, 422, "type_unavailable")
        assert error["details"] == [{"field": "type", "reason": "not in this service's catalog"}]
        assert REMOVABLE in error["message"]
    assert without_card.get(f"/v4/sources/{source_id}", headers=account.headers).get_data() == before
    assert without_card.get(f"/v4/sources/{source_id}/events", headers=account.headers).get_data() == events_before
    # Reads that need no card still answer.
    assert without_card.get(f"/v4/sources/{source_id}/streams", headers=account.headers).get_json() == []
    check = without_card.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers)
    assert check.status_code == 200 and check.get_json()["status"] == "queued"


def test_a_queued_check_fails_cleanly_and_the_source_is_not_marked_broken(apps, account, data_api):
    with_app, without_app = apps
    with_card, without_card = with_app.test_client(), without_app.test_client()
    source_id = create(with_card, account, data_api)["id"]  # its check was queued with the card there

    run_jobs(without_app)
    check = without_card.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "failed" and check["error"]["type"] == "type_unavailable"
    with without_app.app_context():
        job = db.session().scalars(select(Job).where(Job.source_id == source_id)).one()
        assert (job.status, job.attempts, job.error) == ("succeeded", 1, None)  # no crash, no retries

    # Nothing was written that the card's return would have to undo.
    back = with_card.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert back["setup_state"] == "incomplete" and "setup_error" not in back["report_card"]
    assert with_card.post(f"/v4/sources/{source_id}/discover", headers=account.headers).status_code == 202
    run_jobs(with_app)
    back = with_card.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert back["setup_state"] == "connected" and back["report_card"]["current_step_type"] == "field_selection"
    with with_app.app_context():
        statuses = db.session().scalars(select(ConnectionCheck.status).where(
            ConnectionCheck.source_id == source_id).order_by(ConnectionCheck.id)).all()
    assert statuses == ["failed", "succeeded"]


def test_a_source_of_a_removed_type_can_be_deleted(apps, account, data_api):
    with_card, without_card = (app.test_client() for app in apps)
    source_id = create(with_card, account, data_api)["id"]
    deleted = without_card.delete(f"/v4/sources/{source_id}", headers=account.headers)
    assert deleted.status_code == 200 and deleted.get_json()["deleted_at"]
    assert_error(without_card.get(f"/v4/sources/{source_id}", headers=account.headers), 404, "not_found")
    assert without_card.get("/v4/sources", headers=account.headers).get_json()["data"] == []


def test_start_up_logs_how_many_sources_have_no_card(make_app, apps, account, data_api, caplog):
    with_card = apps[0].test_client()
    for number in range(2):
        create(with_card, account, data_api, display_name=f"Removable {number}")
    create(with_card, account, data_api, "test.discovery", "Known")
    caplog.set_level(logging.INFO, logger="connect.sources")

    make_app(REPORT_CARDS=SHIPPED_AND_TEST_CARDS)
    warnings = [r for r in caplog.records if r.getMessage() == "sources whose type has no report card"]
    assert len(warnings) == 1
    assert (warnings[0].sources, warnings[0].by_type) == (2, {REMOVABLE: 2})

    caplog.clear()
    make_app(REPORT_CARDS=apps[0].config["REPORT_CARDS"])  # every type has its card: nothing to say
    assert not [r for r in caplog.records if r.getMessage() == "sources whose type has no report card"]


def test_no_connect_page_is_made_for_such_a_source(apps, account, data_api):
    with_card, without_card = (app.test_client() for app in apps)
    source_id = create(with_card, account, data_api)["id"]
    error = assert_error(without_card.post("/v4/connect/sessions", headers=account.headers, json={
        "source_id": source_id, "redirect_url": "https://app.example/done"}), 422, "type_unavailable")
    assert error["details"] == [{"field": "type", "reason": "not in this service's catalog"}]
