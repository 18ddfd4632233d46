"""Fixtures: a migrated database per test session (SQLite file, or a PostgreSQL schema of its own
when CONNECT_DATABASE_URL points at PostgreSQL), an app, a client, the operator and accounts.

Tables are emptied after every test, so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from app.config import DEFAULT_REPORT_CARDS
from app.crypto import generate_key_spec
from app.migrations import upgrade
from app.models import Base, load_all_models

load_all_models()

TESTS = Path(__file__).resolve().parent
OPERATOR_TOKEN = "op_test_" + secrets.token_hex(8)
TEST_KEYS = generate_key_spec()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CONNECT_SLOW_TESTS") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: set CONNECT_SLOW_TESTS=1 (as .ci/run does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def _postgres_url_with_schema(url: str, schema: str) -> str:
    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("CONNECT_DATABASE_URL", "")
    if configured.startswith("postgresql"):
        schema = f"test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(configured)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield _postgres_url_with_schema(configured, schema)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'connect.db'}"


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    engine = create_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return database_url


def base_config(database_url: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "REPORT_CARDS": os.pathsep.join([str(DEFAULT_REPORT_CARDS), str(TESTS / "report_cards")]),
        "LOG_LEVEL": "INFO",
        "ENCRYPTION_KEYS": TEST_KEYS,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def app(migrated_database: str) -> Iterator[Flask]:
    application = create_app(base_config(migrated_database))
    yield application
    from app.db import get_db

    get_db(application).dispose()


@pytest.fixture()
def make_app(migrated_database: str) -> Iterator:
    """Build another app on the test database with other settings."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        application = create_app(base_config(migrated_database, **overrides))
        built.append(application)
        return application

    yield build
    from app.db import get_db

    for application in built:
        get_db(application).dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "migrated_database" not in request.fixturenames:
        return
    url = request.getfixturevalue("migrated_database")
    engine = create_engine(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    engine.dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class AccountHandle:
    id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture()
def new_account(client: FlaskClient, operator: dict[str, str]):
    """Create accounts through the API: ``new_account("name")`` → AccountHandle."""

    def create(name: str = "Acme") -> AccountHandle:
        response = client.post("/v4/accounts", json={"name": name}, headers=operator)
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        return AccountHandle(body["id"], body["token"])

    return create


@pytest.fixture()
def account(new_account) -> AccountHandle:
    return new_account("Acme")
