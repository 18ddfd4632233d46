"""Real Singer taps from the package index, installed by ``flask connect taps install`` (the command
operators use) and driven through the Singer connector against real servers here:

* ``tap-rest-api-msdk`` (a Singer SDK REST tap) against the loopback data API (tests/servers);
* ``meltanolabs-tap-postgres`` (a Singer SDK database tap) against the local PostgreSQL.

Each goes check → discover (DiscoveredStreams) → the hand-off catalog with the user's selections →
``tap --config … --catalog …``, which must emit RECORD messages of the selected stream from the
server. The cards are tests/singer_cards/. Installing takes a while: the tests are ``slow``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from app import create_app
from app.catalog import get_catalog
from app.cli import connect_cli
from app.connectors.base import ConnectorFailure, DiscoveredStream
from app.connectors.singer.config import tap_config
from app.connectors.singer.connector import SingerConnector, spec_for
from app.connectors.singer.runner import RunLimits, run_tap
from app.db import get_db
from app.discovery.catalog import breadcrumb_key
from app.discovery.handoff import StoredStream, selected_catalog

from .conftest import DEFAULT_REPORT_CARDS, base_config
from .connectors_support import running_data_api
from .servers.planted import new_secret
from .singer_support import target

pytestmark = pytest.mark.slow
CARDS = Path(__file__).resolve().parent / "singer_cards"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def taps_app(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    application = create_app(base_config(
        migrated_database, REPORT_CARDS=os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(CARDS)]),
        TAPS_DIR=str(tmp_path_factory.mktemp("taps"))))
    yield application
    get_db(application).dispose()


def taps_command(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(connect_cli, ["taps", *args])
    assert result.exit_code == 0, result.output
    return result.output


def singer(app: Flask) -> SingerConnector:
    return SingerConnector.from_config(app.config, app.instance_path)


def selecting(streams: list[DiscoveredStream], chosen: str) -> dict:
    """The hand-off catalog after the user selected stream ``chosen`` and each of its fields (the
    stored selections format of app/discovery/catalog.py)."""
    def selections(stream: DiscoveredStream) -> dict:
        if stream.tap_stream_id != chosen:
            return {}
        return {breadcrumb_key(m["breadcrumb"]): {"selected": True} for m in stream.metadata}

    stored = [StoredStream(s.tap_stream_id, s.stream_name, s.schema, [dict(m) for m in s.metadata], selections(s),
                           s.extra) for s in streams]
    return selected_catalog(stored)


def records_of(run_stdout: bytes) -> list[dict]:
    messages = [json.loads(line) for line in run_stdout.decode().splitlines() if line.startswith("{")]
    return [m for m in messages if m.get("type") == "RECORD"]


def test_a_rest_api_through_tap_rest_api_msdk(taps_app: Flask) -> None:
    source_type = "test.singer-rest-api"
    output = taps_command(taps_app, "install", source_type)
    assert "installed tap-rest-api-msdk 1.4.2" in output
    assert source_type in taps_command(taps_app, "list", "--installed")
    token = new_secret("msdk-bearer")
    with taps_app.app_context(), running_data_api(token) as api:
        card = get_catalog().get(source_type)
        connector = singer(taps_app)
        assert connector.availability(card).configurable
        streams = json.dumps([{"name": "contacts", "path": "/bearer/streams/contacts",
                               "records_path": "$.results[*]", "primary_keys": ["id"]}])
        properties = {"api_url": api.base_url, "bearer_token": token, "streams": streams}

        wrong = target(card, {**properties, "bearer_token": new_secret("msdk-wrong")})
        with pytest.raises(ConnectorFailure) as refused:
            connector.check(wrong)
        assert (refused.value.error_type, refused.value.fixed_by) == ("credentials_rejected", "user")
        assert wrong.properties["bearer_token"] not in (refused.value.operator_detail or "")

        source = target(card, properties)
        connector.check(source)
        discovered = connector.discover(source)
        assert [s.tap_stream_id for s in discovered] == ["contacts"]
        assert {"id", "email"} <= set(discovered[0].schema["properties"])

        run = run_tap(connector.environments.installed(source_type).executable, ["--catalog", "{dir}/catalog.json"],
                      tap_config(spec_for(card).config, properties), RunLimits(timeout=120), secrets=[token],
                      files={"catalog.json": selecting(discovered, "contacts")})
    assert run.succeeded, run.stderr_tail
    emails = sorted(r["record"]["email"] for r in records_of(run.stdout) if r["stream"] == "contacts")
    assert emails == ["ada@example.com", "alan@example.com"]

    assert "removed" in taps_command(taps_app, "remove", source_type)
    with taps_app.app_context():
        assert not singer(taps_app).availability(get_catalog().get(source_type)).configurable


@pytest.fixture()
def postgres_table() -> Iterator[str]:
    schema = f"singer_{secrets.token_hex(4)}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.execute(text(f'CREATE TABLE "{schema}".items (id integer PRIMARY KEY, name text, '
                                "updated_at timestamptz DEFAULT now())"))
        connection.execute(text(f"INSERT INTO \"{schema}\".items (id, name) VALUES (1, 'bolt'), (2, 'nut')"))
        connection.execute(text(f'CREATE TABLE "{schema}".other (id integer PRIMARY KEY)'))
    try:
        yield schema
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_postgresql_through_meltanolabs_tap_postgres(taps_app: Flask, postgres_table: str) -> None:
    source_type = "test.singer-postgres"
    assert "installed meltanolabs-tap-postgres" in taps_command(taps_app, "install", source_type)
    with taps_app.app_context():
        card = get_catalog().get(source_type)
        connector = singer(taps_app)
        properties = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": new_secret("pg"),
                      "database": "test", "filter_schemas": json.dumps([postgres_table])}

        unreachable = target(card, {**properties, "port": "1"})
        with pytest.raises(ConnectorFailure) as failed:
            connector.check(unreachable)
        assert (failed.value.error_type, failed.value.fixed_by) == ("source_unreachable", "time")

        source = target(card, properties)
        connector.check(source)
        discovered = connector.discover(source)
        ids = sorted(s.tap_stream_id for s in discovered)
        assert ids == [f"{postgres_table}-items", f"{postgres_table}-other"]
        items = next(s for s in discovered if s.tap_stream_id.endswith("-items"))
        stream_level = next(m["metadata"] for m in items.metadata if m["breadcrumb"] == [])
        assert stream_level["table-key-properties"] == ["id"]

        run = run_tap(connector.environments.installed(source_type).executable, ["--catalog", "{dir}/catalog.json"],
                      tap_config(spec_for(card).config, properties), RunLimits(timeout=120),
                      files={"catalog.json": selecting(discovered, items.tap_stream_id)})
    assert run.succeeded, run.stderr_tail
    records = records_of(run.stdout)
    assert {r["stream"] for r in records} == {items.tap_stream_id}
    assert sorted(r["record"]["name"] for r in records) == ["bolt", "nut"]
