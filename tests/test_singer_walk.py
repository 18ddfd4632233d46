"""The walk of issue 15 on REAL taps, through the service as a user and an operator meet it:

the operator installs a tap from the package index with ``flask connect taps install``; a source of
that type is created over the API; the worker checks and discovers it by running the tap
(``field_selection``); the user selects a stream (``fully_configured``); ``GET …/catalog`` hands
the catalog over and ``flask connect export-source`` writes the pipeline host's files; then the
tap itself runs ``tap --config config.json --catalog catalog.json`` against the local server and
emits the selected stream's records.

* ``tap-rest-api-msdk`` (a Singer SDK REST tap; test card) against the loopback data API;
* ``meltanolabs-tap-postgres`` (test card) against the local PostgreSQL;
* the SHIPPED ``platform.mysql`` card against the local MariaDB: the database connector checks and
  discovers it (a card with a database section is the database connector's), and its ``singer``
  section's tap — Stitch's own ``tap-mysql`` — takes the handed-over catalog and config and syncs.

Installed taps are kept between runs in the user's cache (``$XDG_CACHE_HOME/connect-tests/taps``,
default ``~/.cache/…``): a tap already installed there with the card's requirement is not
reinstalled, so a rerun spends its time on the walk. The tests are ``slow`` (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from app.catalog import get_catalog
from app.catalog.singer_section import parse_spec
from app.cli import connect_cli
from app.connectors.singer.environments import TapEnvironments
from app.db import get_db

from .conftest import DEFAULT_REPORT_CARDS, base_config
from .connectors_support import running_data_api
from .servers.planted import new_secret
from .source_databases import mariadb_source  # noqa: F401  (fixture)
from .test_discovery import run_jobs, step

pytestmark = pytest.mark.slow
CARDS = Path(__file__).resolve().parent / "singer_cards"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def cached_taps_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "connect-tests" / "taps"


@pytest.fixture(scope="module")
def walk_app(migrated_database: str) -> Iterator[Flask]:
    application = create_app(base_config(
        migrated_database, REPORT_CARDS=os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(CARDS)]),
        TAPS_DIR=str(cached_taps_dir()),
))
    yield application
    get_db(application).dispose()


@pytest.fixture()
def api(walk_app: Flask) -> FlaskClient:
    return walk_app.test_client()


def install(app: Flask, source_type: str) -> str:
    """The tap of ``source_type``, installed with the operator's command unless the cache has it."""
    with app.app_context():
        spec = parse_spec(get_catalog().get(source_type).singer)
    environments = TapEnvironments(cached_taps_dir())
    tap = environments.installed(source_type)
    if tap is None or tap.requirement != spec.requirement:
        result = app.test_cli_runner().invoke(connect_cli, ["taps", "install", source_type])
        assert result.exit_code == 0, result.output
        tap = environments.installed(source_type)
    assert tap is not None
    return tap.executable


def create(api: FlaskClient, account, source_type: str, properties: dict[str, Any]) -> int:  # type: ignore[no-untyped-def]
    response = api.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": f"walk {secrets.token_hex(3)}", "properties": properties})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def checked(app: Flask, api: FlaskClient, account, source_id: int,  # type: ignore[no-untyped-def]
            then: str = "field_selection") -> None:
    run_jobs(app, deadline=300)
    check = api.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "succeeded", check
    assert step(api, account, source_id) == then


def select(api: FlaskClient, account, source_id: int, tap_stream_id: str,  # type: ignore[no-untyped-def]
           method: str = "FULL_TABLE") -> None:
    """Select the stream and each of its fields, as a user ticking every box does."""
    listed = api.get(f"/v4/sources/{source_id}/streams", headers=account.headers).get_json()
    stream_id = next(s["stream_id"] for s in listed if s["tap_stream_id"] == tap_stream_id)
    body = api.get(f"/v4/sources/{source_id}/streams/{stream_id}", headers=account.headers).get_json()
    fields = [{"breadcrumb": e["breadcrumb"], "metadata": {"selected": True}} for e in body["metadata"]
              if e["breadcrumb"]]
    response = api.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers, json={"streams": [
        {"tap_stream_id": tap_stream_id, "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True, "replication-method": method}}, *fields]}]})
    assert response.status_code == 200, response.get_json()
    assert step(api, account, source_id) == "fully_configured"


def exported(app: Flask, api: FlaskClient, account, source_id: int, directory: Path) -> Path:  # type: ignore[no-untyped-def]
    """The pipeline host's directory: export-source's files, the catalog being GET …/catalog's."""
    result = app.test_cli_runner().invoke(connect_cli, ["export-source", str(source_id), str(directory)])
    assert result.exit_code == 0, result.output
    handed = api.get(f"/v4/sources/{source_id}/catalog", headers=account.headers)
    assert handed.status_code == 200, handed.get_json()
    assert json.loads((directory / "catalog.json").read_text()) == handed.get_json()
    return directory


def sync(executable: str, directory: Path) -> list[dict[str, Any]]:
    """``tap --config config.json --catalog catalog.json`` as a pipeline host runs it: its records."""
    done = subprocess.run([executable, "--config", "config.json", "--catalog", "catalog.json"], cwd=directory,
                          capture_output=True, timeout=180, check=False,
                          env={"PATH": f"{Path(executable).parent}:/usr/bin:/bin", "HOME": str(directory)})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    messages = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    return [m for m in messages if m.get("type") == "RECORD"]


def test_walk_a_rest_api_through_tap_rest_api_msdk(walk_app, api, account, tmp_path):
    source_type = "test.singer-rest-api"
    executable = install(walk_app, source_type)
    token = new_secret("walk-bearer")
    with running_data_api(token) as data_api:
        streams = json.dumps([{"name": "contacts", "path": "/bearer/streams/contacts",
                               "records_path": "$.results[*]", "primary_keys": ["id"]}])
        source_id = create(api, account, source_type, {"api_url": data_api.base_url, "bearer_token": token,
                                                       "streams": streams})
        # A Singer SDK tap marks its streams selected-by-default: discovery alone configures it
        # fully (Stitch's rule); the user's selection is still written into the catalog.
        checked(walk_app, api, account, source_id, then="fully_configured")
        select(api, account, source_id, "contacts")
        records = sync(executable, exported(walk_app, api, account, source_id, tmp_path / "host"))
    assert sorted(r["record"]["email"] for r in records if r["stream"] == "contacts") == [
        "ada@example.com", "alan@example.com"]


@pytest.fixture()
def postgres_schema() -> Iterator[str]:
    schema = f"walk_{secrets.token_hex(4)}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(text(f'CREATE TABLE "{schema}".items (id integer PRIMARY KEY, name text)'))
        connection.execute(text(f"INSERT INTO \"{schema}\".items (id, name) VALUES (1, 'bolt'), (2, 'nut')"))
        connection.execute(text(f'CREATE TABLE "{schema}".other (id integer PRIMARY KEY)'))
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_walk_postgresql_through_meltanolabs_tap_postgres(walk_app, api, account, postgres_schema, tmp_path):
    source_type = "test.singer-postgres"
    executable = install(walk_app, source_type)
    password = new_secret("walk-pg")  # trust auth: never checked, but handled as a credential throughout
    source_id = create(api, account, source_type, {
        "host": "127.0.0.1", "port": "5432", "user": "postgres", "password": password, "database": "test",
        "filter_schemas": json.dumps([postgres_schema])})
    checked(walk_app, api, account, source_id)
    listed = api.get(f"/v4/sources/{source_id}/streams", headers=account.headers).get_json()
    assert sorted(s["tap_stream_id"] for s in listed) == [f"{postgres_schema}-items", f"{postgres_schema}-other"]
    select(api, account, source_id, f"{postgres_schema}-items")
    records = sync(executable, exported(walk_app, api, account, source_id, tmp_path / "host"))
    assert {r["stream"] for r in records} == {f"{postgres_schema}-items"}
    assert sorted(r["record"]["name"] for r in records) == ["bolt", "nut"]


def test_walk_the_shipped_mysql_card_hands_over_to_its_singer_tap(walk_app, api, account, mariadb_source, tmp_path):
    """platform.mysql against the local MariaDB: checked and discovered by the database connector
    (a card with a database section is the database connector's), handed over to Stitch's own tap
    named by the card's singer section (singer-io tap-mysql), which syncs the selected table.

    (The shipped platform.postgres card names pipelinewise-tap-postgres, whose stream ids are
    ``<schema>-<table>`` where Stitch's tap-postgres and the database connector write
    ``<database>-<schema>-<table>``: its hand-off does not run under that tap.)"""
    executable = install(walk_app, "platform.mysql")
    db = mariadb_source
    source_id = create(api, account, "platform.mysql", {"host": db.host, "port": str(db.port), "database": db.database,
                                                        "user": db.user, "password": db.password})
    checked(walk_app, api, account, source_id)
    select(api, account, source_id, f"{db.database}-canary")
    records = sync(executable, exported(walk_app, api, account, source_id, tmp_path / "host"))
    assert [(r["stream"], r["record"]) for r in records] == [("canary", {"id": 1})]
