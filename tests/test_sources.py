"""Sources over the HTTP API: the GA walk of Stitch's OAuth guide, every property rule, bad input
that changes nothing, ETags and If-Match, idempotency, pause, delete, lists, events, and
credentials that never leave the service."""

from __future__ import annotations

import json
import logging
import secrets
import threading

import pytest
import requests
from sqlalchemy import select

from app import db
from app.crypto import generate_key_spec
from app.models import SourceCredential

from .servers import serve
from .test_service_basics import assert_error

GA = "platform.google-analytics"
FORM = {"start_date": "2019-03-25T00:00:00Z", "frequency_in_minutes": "60"}


def create(client, account, **body):
    body = {"type": GA, "display_name": "Google Analytics", **body}
    return client.post("/v4/sources", json=body, headers=account.headers)


def snapshot(client, account, source_id):
    """The stored source as the API shows it, to prove a failed request changed nothing."""
    response = client.get(f"/v4/sources/{source_id}", headers=account.headers)
    events = client.get(f"/v4/sources/{source_id}/events", headers=account.headers)
    return response.get_data(), response.headers.get("ETag"), events.get_data()


def props(source, step_type):
    step = next(s for s in source["report_card"]["steps"] if s["type"] == step_type)
    return {p["name"]: p for p in step["properties"]}


def test_the_oauth_guide_walk_with_google_analytics(client, account):
    created = create(client, account, properties=FORM)
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/v4/sources/{created.get_json()['id']}")
    source = created.get_json()
    card = source["report_card"]
    assert (card["current_step"], card["current_step_type"]) == (2, "oauth")
    form = props(source, "form")
    assert form["start_date"]["provided"] and form["frequency_in_minutes"]["provided"]
    assert form["image_version"]["provided"] and form["quota_user"]["provided"]  # read-only, filled
    assert source["properties"]["image_version"] == "1.latest"
    assert source["name"] == "google_analytics"
    assert source["setup_state"] == "incomplete"
    assert "details" not in card

    secret_values = {"client_id": "cid-" + secrets.token_hex(8),
                     "client_secret": "csec-" + secrets.token_hex(8),
                     "refresh_token": "rt-" + secrets.token_hex(8)}
    updated = client.put(f"/v4/sources/{source['id']}", headers=account.headers,
                         json={"properties": {**secret_values, "view_id": "123456"}})
    assert updated.status_code == 200
    body = updated.get_json()
    assert (body["report_card"]["current_step"], body["report_card"]["current_step_type"]) == (
        3, "discover_schema")
    assert body["properties"]["view_id"] == "123456"
    oauth = props(body, "oauth")
    assert all(oauth[name]["provided"] for name in secret_values)
    text = updated.get_data(as_text=True)
    for value in secret_values.values():
        assert value not in text
    for name in secret_values:
        assert name not in body["properties"]


def test_clearing_a_required_property_steps_the_source_back(client, account):
    source = create(client, account, properties={**FORM, "view_id": "1", "client_id": "a",
                                                 "client_secret": "bbbb", "refresh_token": "cccc"}).get_json()
    assert source["report_card"]["current_step_type"] == "discover_schema"
    back = client.put(f"/v4/sources/{source['id']}", headers=account.headers,
                      json={"properties": {"refresh_token": None, "view_id": None}}).get_json()
    assert back["report_card"]["current_step_type"] == "oauth"
    assert "view_id" not in back["properties"]
    assert not props(back, "oauth")["refresh_token"]["provided"]


def test_properties_merge_and_other_values_keep(client, account):
    source = create(client, account, properties=FORM).get_json()
    body = client.put(f"/v4/sources/{source['id']}", headers=account.headers,
                      json={"properties": {"frequency_in_minutes": "360"}}).get_json()
    assert body["properties"]["frequency_in_minutes"] == "360"
    assert body["properties"]["start_date"] == FORM["start_date"]


# --- bad input: a clear 4xx naming the field, and nothing changed -------------------------------

BAD_UPDATES = [
    ("properties not an object", {"properties": ["start_date"]}, 422, "invalid_body", "properties"),
    ("wrong JSON type", {"properties": {"view_id": 123}}, 422, "invalid_properties", "view_id"),
    ("pattern mismatch", {"properties": {"start_date": "2019-03-25"}}, 422, "invalid_properties",
     "start_date"),
    ("enum/pattern miss", {"properties": {"frequency_in_minutes": "45"}}, 422, "invalid_properties",
     "frequency_in_minutes"),
    ("read-only property", {"properties": {"image_version": "2.latest"}}, 422, "invalid_properties",
     "image_version"),
    ("unknown property", {"properties": {"colour": "blue"}}, 422, "invalid_properties", "colour"),
    ("empty display_name", {"display_name": ""}, 422, "invalid_body", "display_name"),
    ("1,000-character display_name", {"display_name": "x" * 1000}, 422, "invalid_body", "display_name"),
    ("unknown body field", {"name": "renamed"}, 422, "invalid_body", "name"),
    ("naive paused_at", {"paused_at": "2020-01-01T00:00:00"}, 422, "invalid_body", "paused_at"),
]


@pytest.mark.parametrize(("label", "body", "status", "type_", "field"), BAD_UPDATES,
                         ids=[b[0] for b in BAD_UPDATES])
def test_bad_updates_are_refused_and_change_nothing(client, account, label, body, status, type_, field):
    source = create(client, account, properties=FORM).get_json()
    before = snapshot(client, account, source["id"])
    error = assert_error(client.put(f"/v4/sources/{source['id']}", json=body, headers=account.headers),
                         status, type_)
    named = {d.get("property") or d.get("field") for d in error["details"]}
    assert field in named, error
    assert snapshot(client, account, source["id"]) == before


def test_three_broken_rules_give_three_details_and_change_nothing(client, account):
    source = create(client, account, properties=FORM).get_json()
    before = snapshot(client, account, source["id"])
    error = assert_error(client.put(f"/v4/sources/{source['id']}", headers=account.headers, json={
        "properties": {"start_date": "2019-03-25", "image_version": "x", "colour": "blue",
                       "view_id": "fine"}}), 422, "invalid_properties")
    assert sorted(d["property"] for d in error["details"]) == ["colour", "image_version", "start_date"]
    assert "start_date: must be a date at midnight UTC such as 2024-01-31T00:00:00Z" in error["message"]
    assert "\\d" not in error["message"]  # in words, never the pattern
    assert snapshot(client, account, source["id"]) == before


BAD_CREATES = [
    ("missing type", {"display_name": "x"}, 422, "invalid_body", "type"),
    ("unknown type", {"type": "platform.nope", "display_name": "x"}, 422, "invalid_type", "type"),
    ("missing display_name", {"type": GA}, 422, "invalid_body", "display_name"),
    ("display_name with no usable name", {"type": GA, "display_name": "####"}, 422, "invalid_name",
     "display_name"),
    ("invalid explicit name", {"type": GA, "display_name": "x", "name": "Bad Name"}, 422,
     "invalid_name", "name"),
    ("read-only on create", {"type": GA, "display_name": "x", "properties": {"quota_user": "me"}}, 422,
     "invalid_properties", "quota_user"),
]


@pytest.mark.parametrize(("label", "body", "status", "type_", "field"), BAD_CREATES,
                         ids=[b[0] for b in BAD_CREATES])
def test_bad_creates_are_refused_and_create_nothing(client, account, label, body, status, type_, field):
    error = assert_error(client.post("/v4/sources", json=body, headers=account.headers), status, type_)
    assert field in {d.get("property") or d.get("field") for d in error["details"]}, error
    assert client.get("/v4/sources", headers=account.headers).get_json()["data"] == []


def test_a_non_integer_id_is_404(client, account):
    assert_error(client.get("/v4/sources/abc", headers=account.headers), 404, "not_found")


def test_another_accounts_source_is_404_and_unchanged(client, new_account):
    mine, theirs = new_account("mine"), new_account("theirs")
    source = create(client, theirs, properties=FORM).get_json()
    before = snapshot(client, theirs, source["id"])
    for method, kwargs in [("get", {}), ("put", {"json": {"display_name": "mine now"}}),
                           ("delete", {}), ("events", {})]:
        if method == "events":
            response = client.get(f"/v4/sources/{source['id']}/events", headers=mine.headers)
        else:
            response = getattr(client, method)(f"/v4/sources/{source['id']}", headers=mine.headers, **kwargs)
        assert_error(response, 404, "not_found")
    assert snapshot(client, theirs, source["id"]) == before
    assert client.get("/v4/sources", headers=mine.headers).get_json()["data"] == []


def test_a_huge_body_is_413(make_app, account):
    app = make_app(MAX_CONTENT_LENGTH=10_000)
    client = app.test_client()
    error = assert_error(client.post("/v4/sources", headers=account.headers, json={
        "type": GA, "display_name": "big", "properties": {"view_id": "x" * 20_000}}), 413,
        "payload_too_large")
    assert "too large" in error["message"]
    assert client.get("/v4/sources", headers=account.headers).get_json()["data"] == []


# --- names, ETags, idempotency ----------------------------------------------------------------

def test_names_are_unique_per_account(client, new_account):
    first = new_account("first")
    create(client, first)
    error = assert_error(create(client, first), 409, "invalid_name")
    assert "'google_analytics'" in error["message"] and "derived from display_name" in error["message"]
    assert create(client, first, name="ga_two").status_code == 201
    assert create(client, new_account("second")).status_code == 201  # another account may


def test_a_deleted_sources_name_can_be_reused(client, account):
    source = create(client, account).get_json()
    deleted = client.delete(f"/v4/sources/{source['id']}", headers=account.headers)
    assert deleted.status_code == 200 and deleted.get_json()["deleted_at"]
    assert_error(client.get(f"/v4/sources/{source['id']}", headers=account.headers), 404, "not_found")
    assert create(client, account).status_code == 201


def test_etag_and_if_match(client, account):
    created = create(client, account, properties=FORM)
    etag = created.headers["ETag"]
    source_id = created.get_json()["id"]
    assert client.get(f"/v4/sources/{source_id}", headers=account.headers).headers["ETag"] == etag
    ok = client.put(f"/v4/sources/{source_id}", json={"display_name": "Renamed"},
                    headers={**account.headers, "If-Match": etag})
    assert ok.status_code == 200 and ok.headers["ETag"] != etag
    before = snapshot(client, account, source_id)
    error = assert_error(client.put(f"/v4/sources/{source_id}", json={"display_name": "Again"},
                                    headers={**account.headers, "If-Match": etag}), 409, "stale_version")
    assert error["details"][0]["field"] == "If-Match"
    assert snapshot(client, account, source_id) == before
    assert ok.get_json()["name"] == "google_analytics"  # the name never follows display_name


def test_idempotency_key_returns_the_first_result(client, account):
    headers = {**account.headers, "Idempotency-Key": "create-ga-1"}
    body = {"type": GA, "display_name": "GA", "properties": FORM}
    first = client.post("/v4/sources", json=body, headers=headers)
    again = client.post("/v4/sources", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    error = assert_error(client.post("/v4/sources", json={**body, "display_name": "Other"}, headers=headers),
                         422, "idempotency_key_reused")
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert len(client.get("/v4/sources", headers=account.headers).get_json()["data"]) == 1


def test_pause_and_unpause(client, account):
    source = create(client, account, properties=FORM).get_json()
    paused = client.put(f"/v4/sources/{source['id']}", json={"paused_at": "2030-01-01T00:00:00Z"},
                        headers=account.headers).get_json()
    assert paused["paused_at"] == "2030-01-01T00:00:00Z"
    assert paused["report_card"]["current_step"] == source["report_card"]["current_step"]
    unpaused = client.put(f"/v4/sources/{source['id']}", json={"paused_at": None},
                          headers=account.headers).get_json()
    assert unpaused["paused_at"] is None
    types = [e["type"] for e in client.get(f"/v4/sources/{source['id']}/events",
                                           headers=account.headers).get_json()]
    assert types == ["created", "properties_updated", "paused", "unpaused"]


def test_list_is_newest_first_and_paginates_by_cursor(client, account):
    ids = [create(client, account, name=f"s_{i}").get_json()["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v4/sources", query_string=query, headers=account.headers).get_json()
        seen += [s["id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert_error(client.get("/v4/sources?cursor=%%%", headers=account.headers), 400, "malformed_request")
    error = assert_error(client.get("/v4/sources?limit=1000", headers=account.headers), 422, "invalid_body")
    assert error["details"][0]["field"] == "limit"


def test_events_record_names_never_values(client, account):
    secret = "rt-" + secrets.token_hex(12)
    source = create(client, account, properties={**FORM, "refresh_token": secret}).get_json()
    events = client.get(f"/v4/sources/{source['id']}/events", headers=account.headers)
    assert [e["type"] for e in events.get_json()] == ["created", "properties_updated"]
    assert "refresh_token" in events.get_data(as_text=True)
    assert secret not in events.get_data(as_text=True)


# --- credentials at rest, in logs, under key rotation -------------------------------------------

def test_credentials_are_encrypted_at_rest_and_never_logged(client, app, account, caplog):
    caplog.set_level(logging.DEBUG)
    planted = "planted-" + secrets.token_hex(16)
    source = create(client, account, properties={**FORM, "client_secret": planted})
    bad = client.put(f"/v4/sources/{source.get_json()['id']}", headers=account.headers,
                     json={"properties": {"client_secret": planted, "start_date": "nope"}})
    assert bad.status_code == 422
    for response in (source, bad):
        assert planted not in response.get_data(as_text=True)
        assert planted not in str(response.headers)
    from app.logs import JsonFormatter

    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert lines and not [line for line in lines if planted in line]
    with app.app_context():
        rows = db.session().scalars(select(SourceCredential)).all()
    assert [r.name for r in rows] == ["client_secret"]
    assert planted.encode() not in rows[0].ciphertext


def test_rotate_keys_re_encrypts_every_secret(make_app, migrated_database, account):
    from .conftest import TEST_KEYS

    app = make_app()
    client = app.test_client()
    planted = "rotate-" + secrets.token_hex(8)
    source_id = create(client, account, properties={**FORM, "refresh_token": planted}).get_json()["id"]

    new_key = generate_key_spec()
    rotated_app = make_app(ENCRYPTION_KEYS=f"{new_key},{TEST_KEYS}")
    from app.cli import connect_cli

    result = rotated_app.test_cli_runner().invoke(connect_cli, ["rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "source_credentials: 1 re-encrypted" in result.output

    only_new = make_app(ENCRYPTION_KEYS=new_key)
    with only_new.app_context():
        from app.crypto import get_keyring
        from app.models import Source
        from app.sources.credentials import decrypted_properties

        session = db.session()
        source = session.get(Source, source_id)
        assert decrypted_properties(get_keyring(), source)["refresh_token"] == planted
        assert {c.key_id for c in source.credentials} == {new_key.split(":")[0]}


# --- concurrency --------------------------------------------------------------------------------

def test_concurrent_updates_of_different_properties_all_survive(make_app, account):
    """Real concurrent requests through a threaded HTTP server: no update is lost."""
    app = make_app()
    client = app.test_client()
    source_id = client.post("/v4/sources", headers=account.headers, json={
        "type": "test.many-fields", "display_name": "many"}).get_json()["id"]
    writers = 40
    with serve(app) as base_url:
        barrier = threading.Barrier(writers)
        statuses: list[int] = []

        def write(index: int) -> None:
            barrier.wait(timeout=10)
            response = requests.put(f"{base_url}/v4/sources/{source_id}", headers=account.headers,
                                    json={"properties": {f"field_{index + 1:02d}": f"value-{index}"}},
                                    timeout=60)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert statuses == [200] * writers
    final = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    lost = [i for i in range(writers) if final["properties"].get(f"field_{i + 1:02d}") != f"value-{i}"]
    print(f"\n{writers} concurrent writers, lost updates: {len(lost)}")
    assert lost == []
    events = client.get(f"/v4/sources/{source_id}/events", headers=account.headers).get_json()
    assert sum(e["type"] == "properties_updated" for e in events) == writers


def test_a_failed_update_leaves_nothing_half_written(client, account, app):
    source = create(client, account, properties=FORM).get_json()
    before = snapshot(client, account, source["id"])
    # A valid credential with an invalid neighbour: neither may be stored.
    response = client.put(f"/v4/sources/{source['id']}", headers=account.headers, json={
        "properties": {"client_secret": "valid-secret", "frequency_in_minutes": "7"}})
    assert response.status_code == 422
    assert snapshot(client, account, source["id"]) == before
    with app.app_context():
        assert db.session().scalars(select(SourceCredential)).all() == []
    assert json.loads(before[0])["report_card"]["current_step_type"] == "oauth"
