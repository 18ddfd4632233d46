"""``POST /v4/connect/sessions``: the session of the hosted connect page, as the integrator's backend sees it."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import db
from app.connect.models import ConnectSession
from app.models import utcnow

from .test_service_basics import assert_error

REDIRECT = "https://app.example/connected?tab=sources"
PATH = "/v4/connect/sessions"


def new_session(client, account, **body):
    return client.post(PATH, headers=account.headers, json={"redirect_url": REDIRECT, **body})


def session_rows(app) -> list[ConnectSession]:
    with app.app_context():
        session = db.session()
        with session.begin():
            return list(session.scalars(select(ConnectSession)))


def make_source(client, account, source_type="test.discovery", **properties):
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": "Existing " + source_type, "properties": properties})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_a_session_gives_a_token_the_pages_url_and_an_expiry(app, client, account):
    response = new_session(client, account, source_type="test.connect-oauth",
                           display={"title": "Acme Analytics", "primary_color": "#0a7d33",
                                    "logo_url": "https://cdn.acme.example/logo.png"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert set(body) == {"token", "url", "expires_at"}
    assert body["token"].startswith("cs_") and len(body["token"]) > 40
    assert body["url"] == app.config["PUBLIC_URL"].rstrip("/") + "/connect/" + body["token"]
    (row,) = session_rows(app)
    assert timedelta(minutes=29) < row.expires_at - utcnow() <= timedelta(minutes=30)
    assert body["expires_at"] == row.expires_at.isoformat().replace("+00:00", "Z")
    assert row.allowed_types == ["test.connect-oauth"] and row.source_type == "test.connect-oauth"
    assert row.display == {"title": "Acme Analytics", "primary_color": "#0a7d33",
                           "logo_url": "https://cdn.acme.example/logo.png"}
    assert client.get(body["url"].removeprefix(app.config["PUBLIC_URL"].rstrip("/"))).status_code == 200


def test_the_token_is_stored_only_as_its_hash(app, client, account):
    token = new_session(client, account, allowed_types=["test.discovery", "test.connect-oauth"]).get_json()["token"]
    (row,) = session_rows(app)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with db.get_db(app).engine.connect() as connection:
        dumped = connection.exec_driver_sql("SELECT * FROM connect_sessions").fetchall()
    assert token not in repr(dumped)


def test_each_session_gets_its_own_token(client, account):
    first = new_session(client, account, source_type="test.discovery").get_json()["token"]
    second = new_session(client, account, source_type="test.discovery").get_json()["token"]
    assert first != second


BAD_BODIES = [
    ("no redirect_url", {"redirect_url": None, "source_type": "test.discovery"}, 422, "invalid_body", "redirect_url"),
    ("http redirect_url", {"redirect_url": "http://app.example/done", "source_type": "test.discovery"}, 422,
     "invalid_redirect_url", "redirect_url"),
    ("redirect_url with fragment", {"redirect_url": "https://app.example/#x", "source_type": "test.discovery"}, 422,
     "invalid_redirect_url", "redirect_url"),
    ("redirect_url with user info", {"redirect_url": "https://app.example@evil.example/", "source_type":
                                     "test.discovery"}, 422, "invalid_redirect_url", "redirect_url"),
    ("no type at all", {}, 422, "invalid_body", "source_type"),
    ("both type fields", {"source_type": "test.discovery", "allowed_types": ["test.discovery"]}, 422,
     "invalid_body", "allowed_types"),
    ("unknown source_type", {"source_type": "nope.nope"}, 422, "invalid_type", "source_type"),
    ("unknown allowed type", {"allowed_types": ["test.discovery", "nope.nope"]}, 422, "invalid_type",
     "allowed_types[1]"),
    ("empty allowed_types", {"allowed_types": []}, 422, "invalid_body", "allowed_types"),
    ("allowed_types not a list", {"allowed_types": "test.discovery"}, 422, "invalid_body", "allowed_types"),
    ("source_id zero", {"source_id": 0}, 422, "invalid_body", "source_id"),
    ("source_id beyond bigint", {"source_id": 2**63}, 400, "malformed_request", "source_id"),
    ("colour name", {"source_type": "test.discovery", "display": {"primary_color": "red"}}, 422, "invalid_body",
     "display.primary_color"),
    ("colour with CSS", {"source_type": "test.discovery", "display": {"primary_color": "#fff;}body{x:y"}}, 422,
     "invalid_body", "display.primary_color"),
    ("javascript logo", {"source_type": "test.discovery", "display": {"logo_url": "javascript:alert(1)"}}, 422,
     "invalid_body", "display.logo_url"),
    ("http logo", {"source_type": "test.discovery", "display": {"logo_url": "http://cdn.example/l.png"}}, 422,
     "invalid_body", "display.logo_url"),
    ("protocol-relative logo", {"source_type": "test.discovery", "display": {"logo_url": "//evil.example/l.png"}},
     422, "invalid_body", "display.logo_url"),
    ("logo with a quote", {"source_type": "test.discovery", "display": {"logo_url": "https://a.example/\"x"}},
     422, "invalid_body", "display.logo_url"),
    ("long title", {"source_type": "test.discovery", "display": {"title": "x" * 81}}, 422, "invalid_body",
     "display.title"),
    ("title with a line break", {"source_type": "test.discovery", "display": {"title": "a\nb"}}, 422,
     "invalid_body", "display.title"),
    ("unknown display key", {"source_type": "test.discovery", "display": {"css": "body{}"}}, 422, "invalid_body",
     "display.css"),
    ("unknown field", {"source_type": "test.discovery", "theme": "dark"}, 422, "invalid_body", "theme"),
]


@pytest.mark.parametrize(("label", "body", "status", "type_", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_refused_naming_the_field_and_store_nothing(app, client, account, label, body, status,
                                                                   type_, field):
    payload = {"redirect_url": REDIRECT, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    error = assert_error(client.post(PATH, headers=account.headers, json=payload), status, type_)
    assert field in [d.get("field") for d in error["details"]], error
    assert session_rows(app) == []


def test_same_origin_logo_paths_are_accepted(client, account):
    response = new_session(client, account, source_type="test.discovery", display={"logo_url": "/static/logo.svg"})
    assert response.status_code == 201, response.get_json()


def test_another_accounts_source_is_404(client, account, new_account):
    other = new_account("Other")
    source_id = make_source(client, other)
    error = assert_error(new_session(client, account, source_id=source_id), 404, "not_found")
    assert error["details"] == [{"field": "source_id", "reason": "no such source in this account"}]


def test_a_source_of_a_type_the_session_does_not_allow_is_422(client, account):
    source_id = make_source(client, account)
    error = assert_error(new_session(client, account, source_id=source_id, source_type="test.connect-oauth"),
                         422, "invalid_type")
    assert error["details"][0]["field"] == "source_id"


def test_a_session_for_an_existing_source_binds_it(app, client, account):
    source_id = make_source(client, account)
    assert new_session(client, account, source_id=source_id).status_code == 201
    (row,) = session_rows(app)
    assert (row.source_id, row.allowed_types, row.mode) == (source_id, ["test.discovery"], "connect")


def test_a_broken_source_gets_a_reconnect_session(app, client, account):
    source_id = make_source(client, account)
    with app.app_context():
        session = db.session()
        with session.begin():
            from app.models import Source

            session.execute(update(Source).where(Source.id == source_id).values(
                broken_at=utcnow(), broken_reason={"type": "invalid_credentials", "message": "refused"}))
    assert new_session(client, account, source_id=source_id).status_code == 201
    (row,) = session_rows(app)
    assert row.mode == "reconnect"


def test_the_accounts_redirect_url_allowlist_applies(client, account, operator):
    client.put(f"/v4/accounts/{account.id}", headers=operator, json={"redirect_url_allowlist": [REDIRECT]})
    assert new_session(client, account, source_type="test.discovery").status_code == 201
    error = assert_error(client.post(PATH, headers=account.headers, json={
        "redirect_url": "https://app.example/elsewhere", "source_type": "test.discovery"}), 422,
        "invalid_redirect_url")
    assert error["details"][0]["field"] == "redirect_url"


def test_only_an_account_token_may_create_sessions(client, operator):
    assert_error(client.post(PATH, json={"redirect_url": REDIRECT, "source_type": "test.discovery"}), 401,
                 "unauthorized")
    assert_error(client.post(PATH, headers=operator, json={"redirect_url": REDIRECT,
                                                            "source_type": "test.discovery"}), 403, "access_denied")


def test_an_expired_session_is_410_on_the_page_and_its_json(app, client, account):
    token = new_session(client, account, source_type="test.discovery").get_json()["token"]
    with app.app_context():
        session = db.session()
        with session.begin():
            session.execute(update(ConnectSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    page = client.get(f"/connect/{token}")
    assert page.status_code == 410
    assert "expired" in page.get_data(as_text=True)
    assert_error(client.get(f"/connect/{token}/status"), 410, "session_expired")
    assert client.post(f"/connect/{token}/form", data={"api_url": "https://x.example"}).status_code == 410
    assert_error(client.get("/connect/cs_unknown/status"), 404, "not_found")


def test_the_session_appears_in_the_openapi_document(client):
    document = client.get("/openapi.json").get_json()
    assert "/v4/connect/sessions" in document["paths"]
