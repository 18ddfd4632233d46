"""Accounts and tokens: created by the operator, tokens shown once and stored as hashes."""

from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import AccountToken

from .test_service_basics import assert_error


def test_create_account_shows_the_token_once(client, operator):
    response = client.post("/v4/accounts", json={"name": "Acme", "external_id": "cust-1"},
                           headers=operator)
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "name", "external_id", "created_at", "token"}
    assert body["token"].startswith("cn_")
    listed = client.get("/v4/accounts", headers=operator).get_json()
    assert [a["name"] for a in listed] == ["Acme"]
    assert "token" not in listed[0]
    one = client.get(f"/v4/accounts/{body['id']}", headers=operator).get_json()
    assert one["external_id"] == "cust-1"


def test_tokens_are_stored_as_hashes(client, app, account):
    with app.app_context():
        session = db.session()
        hashes = session.scalars(select(AccountToken.token_hash)).all()
    assert account.token not in hashes
    assert len(hashes[0]) == 64


def test_duplicate_external_id_is_409(client, operator):
    client.post("/v4/accounts", json={"name": "A", "external_id": "same"}, headers=operator)
    error = assert_error(client.post("/v4/accounts", json={"name": "B", "external_id": "same"},
                                     headers=operator), 409, "conflict")
    assert error["details"][0]["field"] == "external_id"


def test_account_name_is_validated(client, operator):
    error = assert_error(client.post("/v4/accounts", json={"name": ""}, headers=operator), 422,
                         "invalid_body")
    assert error["details"][0]["field"] == "name"
    error = assert_error(client.post("/v4/accounts", json={"name": 5}, headers=operator), 422,
                         "invalid_body")
    assert error["details"][0]["field"] == "name"


def test_new_tokens_work_and_revoked_ones_do_not(client, operator, account):
    created = client.post(f"/v4/accounts/{account.id}/tokens", headers=operator)
    assert created.status_code == 201
    second = created.get_json()
    assert second["hint"] == second["token"][-4:]
    headers = {"Authorization": f"Bearer {second['token']}"}
    assert client.get("/v4/source-types", headers=headers).status_code == 200
    assert client.delete(f"/v4/accounts/{account.id}/tokens/{second['id']}",
                         headers=operator).status_code == 204
    assert client.get("/v4/source-types", headers=headers).status_code == 401
    assert client.get("/v4/source-types", headers=account.headers).status_code == 200
    tokens = client.get(f"/v4/accounts/{account.id}/tokens", headers=operator).get_json()
    assert [t["revoked_at"] is not None for t in tokens] == [False, True]
    assert all("token" not in t for t in tokens)


def test_an_account_sees_only_itself(client, new_account):
    mine, theirs = new_account("mine"), new_account("theirs")
    assert client.get(f"/v4/accounts/{mine.id}", headers=mine.headers).status_code == 200
    assert_error(client.get(f"/v4/accounts/{theirs.id}", headers=mine.headers), 404, "not_found")
    assert_error(client.get(f"/v4/accounts/{theirs.id}/tokens", headers=mine.headers), 404,
                 "not_found")
    their_tokens = client.get(f"/v4/accounts/{theirs.id}/tokens", headers=theirs.headers).get_json()
    assert_error(client.delete(f"/v4/accounts/{mine.id}/tokens/{their_tokens[0]['id']}",
                               headers=mine.headers), 404, "not_found")
    assert client.get("/v4/source-types", headers=theirs.headers).status_code == 200


def test_cli_create_account_prints_a_working_token(app, client):
    from app.cli import connect_cli

    result = app.test_cli_runner().invoke(connect_cli, ["create-account", "From CLI"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert client.get("/v4/source-types", headers={"Authorization": f"Bearer {token}"}).status_code == 200
