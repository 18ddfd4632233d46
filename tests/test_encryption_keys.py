"""A wrong or missing encryption key stops start-up, naming the key ids and what to do; a job that
meets a credential no configured key opens fails its check once, saying so, instead of crashing.

The decisions (README, "Encryption keys"):
- a key id found in a sealed table must be configured, and a configured key must open one of two
  samples of its rows (the first and the last): a wrong key opens neither, one damaged row does
  not stop the service;
- an empty database, or one not migrated yet, starts under any key (there is nothing to check);
- during rotation both keys are configured and the service starts; the old key may go once
  ``flask connect rotate-keys`` is done, not before;
- a database that cannot be reached does not stop start-up (the check is skipped with a warning).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select, text, update

from app import create_app, db
from app.cli import connect_cli
from app.crypto import KeyringError, generate_key_spec
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.models import Source, SourceCredential
from app.wiring import services

from .conftest import TEST_KEYS, _postgres_url_with_schema, base_config
from .connectors_support import running_data_api
from .live_service import ROOT, free_port, service_environment
from .servers.planted import new_secret

TYPE = "test.auth-apikey-header"
TEST_KEY_ID = TEST_KEYS.split(":")[0]
DATA_TOKEN = "keys-data-token"


@pytest.fixture(scope="module")
def data_api():
    with running_data_api(DATA_TOKEN) as api:
        api.settings.api_key = new_secret("keys-api-key")
        yield api


def key_with_id(key_id: str) -> str:
    """A new random key under a given id (the wrong value for an id already in use)."""
    return key_id + ":" + generate_key_spec().split(":", 1)[1]


def create_source(client, account, data_api) -> int:  # type: ignore[no-untyped-def]
    """A source whose check passes (the data API accepts its key), sealed under TEST_KEYS."""
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": TYPE, "display_name": "Keys " + os.urandom(3).hex(),
        "properties": {"api_url": data_api.base_url, "api_key": data_api.settings.api_key}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def start(database_url: str, keys: str):  # type: ignore[no-untyped-def]
    application = create_app(base_config(database_url, ENCRYPTION_KEYS=keys))
    db.get_db(application).dispose()
    return application


@pytest.fixture()
def empty_database(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database with no tables yet, of the kind the suite runs on."""
    configured = os.environ.get("CONNECT_DATABASE_URL", "")
    if not configured.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    schema = f"empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(configured)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_url_with_schema(configured, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- start-up -------------------------------------------------------------------------------------


def test_an_empty_database_starts_under_any_key(migrated_database):
    start(migrated_database, generate_key_spec())
    start(migrated_database, key_with_id(TEST_KEY_ID))


def test_a_database_not_migrated_yet_starts(empty_database):
    start(empty_database, generate_key_spec())  # `flask connect migrate` builds the app first


def test_a_key_id_in_the_database_but_not_configured_stops_start_up(migrated_database, client, account,
                                                                    data_api):
    create_source(client, account, data_api)
    other = generate_key_spec()
    with pytest.raises(KeyringError) as refused:
        start(migrated_database, other)
    message = str(refused.value)
    assert "does not start" in message
    assert f"source_credentials has 1 row(s) sealed under key {TEST_KEY_ID!r}" in message
    assert "CONNECT_ENCRYPTION_KEYS does not list" in message and "rotate-keys" in message
    assert TEST_KEYS.split(":")[1] not in message and other.split(":")[1] not in message


def test_a_configured_key_with_the_wrong_value_stops_start_up(migrated_database, client, account, data_api):
    create_source(client, account, data_api)
    with pytest.raises(KeyringError) as refused:
        start(migrated_database, key_with_id(TEST_KEY_ID))
    message = str(refused.value)
    assert f"the configured key {TEST_KEY_ID!r} opens none of the rows tried" in message
    assert "configure the original value of that key" in message


def test_every_problem_is_named_at_once(migrated_database, client, account, operator, data_api):
    create_source(client, account, data_api)
    app_secret = new_secret("keys-client-secret")
    assert client.put("/v4/oauth/credentials", headers=operator, json={
        "source_type": "platform.hubspot",
        "configuration": {"client_id": "keys", "client_secret": app_secret}}).status_code == 200
    with pytest.raises(KeyringError) as refused:
        start(migrated_database, generate_key_spec())
    lines = str(refused.value).splitlines()[1:]
    assert [line.split(" has ")[0].strip(" -") for line in lines] == ["oauth_apps", "source_credentials"]


def test_one_damaged_row_does_not_stop_start_up(migrated_database, app, client, account, data_api):
    first = create_source(client, account, data_api)
    create_source(client, account, data_api)
    with db.get_db(app).Session() as session, session.begin():
        row = session.scalars(select(SourceCredential).where(SourceCredential.source_id == first)).one()
        row.ciphertext = row.ciphertext[:-1] + bytes([row.ciphertext[-1] ^ 1])
    start(migrated_database, TEST_KEYS)
    with pytest.raises(KeyringError):  # the control: a wrong key opens neither sample
        start(migrated_database, key_with_id(TEST_KEY_ID))


def test_rotation_needs_the_old_key_until_it_is_done(migrated_database, make_app, client, account, data_api):
    create_source(client, account, data_api)
    new_key = generate_key_spec()
    with pytest.raises(KeyringError) as refused:  # the old key dropped too early
        start(migrated_database, new_key)
    assert TEST_KEY_ID in str(refused.value)
    rotating = make_app(ENCRYPTION_KEYS=f"{new_key},{TEST_KEYS}")  # new first, old kept: starts
    result = rotating.test_cli_runner().invoke(connect_cli, ["rotate-keys"])
    assert result.exit_code == 0, result.output
    start(migrated_database, new_key)  # once rotated, the new key alone


def test_rotate_keys_names_a_row_no_key_opens(make_app, app, client, account, data_api):
    source_id = create_source(client, account, data_api)
    create_source(client, account, data_api)
    with db.get_db(app).Session() as session, session.begin():
        session.execute(update(SourceCredential).where(SourceCredential.source_id == source_id)
                        .values(ciphertext=b"\x00" * 40))
    rotating = make_app(ENCRYPTION_KEYS=f"{generate_key_spec()},{TEST_KEYS}")
    result = rotating.test_cli_runner().invoke(connect_cli, ["rotate-keys"])
    assert result.exit_code == 1
    assert "rotation stopped: source_credentials row" in result.output
    assert f"does not open under key {TEST_KEY_ID!r}" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_database_does_not_stop_start_up(caplog):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    with caplog.at_level(logging.WARNING, logger="app.secrets_store"):
        start(url, TEST_KEYS)
    assert "encryption keys not verified: the database is unreachable" in caplog.text


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1", "wsgi:app"],
    [sys.executable, "-m", "flask", "--app", "wsgi", "connect", "worker", "--threads", "1"],
], ids=["gunicorn", "flask connect worker"])
def test_every_entry_point_refuses_to_start_with_a_missing_key(migrated_database, client, account, data_api,
                                                                command):
    create_source(client, account, data_api)
    env = service_environment(migrated_database, CONNECT_ENCRYPTION_KEYS=generate_key_spec())
    argv = [part.format(port=free_port()) for part in command]
    finished = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    assert f"sealed under key {TEST_KEY_ID!r}, which CONNECT_ENCRYPTION_KEYS does not list" in finished.stderr


# --- a job that meets a credential no configured key opens ----------------------------------------


def test_a_check_that_cannot_open_a_credential_fails_once_naming_the_key(app, make_app, client, account,
                                                                         data_api, caplog):
    elsewhere = make_app(ENCRYPTION_KEYS=generate_key_spec())  # started before the source existed
    source_id = create_source(client, account, data_api)  # sealed under TEST_KEYS by the suite's app
    checks_before = data_api.requests.total()
    worker = Worker(elsewhere, services(elsewhere).jobs, poll_interval=0.05)
    with caplog.at_level(logging.INFO):
        assert worker.run_once()
        assert not worker.run_once()  # not queued again: the key will not appear by itself
    check = client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "failed", check
    assert check["error"]["type"] == "credentials_unreadable"
    assert f"ciphertext under key {TEST_KEY_ID!r}, which is not configured" in check["error"]["message"]
    assert "CONNECT_ENCRYPTION_KEYS" in check["error"]["message"]
    assert data_api.requests.total() == checks_before  # nothing was sent without its credential
    with db.get_db(elsewhere).Session() as session:
        job = session.scalars(select(Job).where(Job.source_id == source_id)).one()
        assert (job.status, job.attempts) == ("succeeded", 1), (job.status, job.attempts, job.error)
        assert session.get(Source, source_id).broken_at is None  # the credentials may well be right
    assert "job crashed" not in caplog.text and "Traceback" not in caplog.text
    assert "a credential cannot be decrypted" in caplog.text

    # The control: with the key configured, the same source passes its check.
    assert client.post(f"/v4/sources/{source_id}/discover", headers=account.headers).status_code in (200, 202)
    while Worker(app, services(app).jobs, poll_interval=0.05).run_once():
        pass
    check = client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "succeeded", check
