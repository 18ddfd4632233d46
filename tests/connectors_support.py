"""Shared pieces of the connector tests: the two test servers wired together, sources made through
the API, calls through ``send_api_request`` and a look at the stored rows."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import db
from app.catalog import get_catalog
from app.connectors.http import send_api_request
from app.connectors.models import ACCESS_TOKEN, SourceToken
from app.connectors.tokens import TokenSettings, TokenStore
from app.crypto import get_keyring
from app.models import Source, SourceEvent
from app.sources.credentials import decrypted_properties

from .servers import (
    TOKEN_PATH,
    DataApi,
    DataApiSettings,
    OAuthProvider,
    ProviderSettings,
    create_data_api,
    create_oauth_provider,
    get_data_api,
    get_provider,
    serve,
)

POST_CLIENT = "connect-post"
BASIC_CLIENT = "connect-basic"


@dataclass
class Servers:
    provider: OAuthProvider
    data_api: DataApi
    provider_url: str
    api_url: str
    client_secret: str

    @property
    def token_url(self) -> str:
        return self.provider_url + TOKEN_PATH

    def reset(self) -> None:
        """Default behaviour for the next test (counters keep counting: tests take differences)."""
        self.provider.clear_faults()
        self.provider.settings = ProviderSettings()
        self.data_api.clear_faults()
        self.data_api.settings = DataApiSettings(oauth_token_validator=self.provider.is_valid_access_token)

    def oauth_properties(self, client_id: str = POST_CLIENT, scope: str = "") -> dict[str, str]:
        """Properties of an OAuth source holding a freshly issued grant."""
        issued = self.provider.issue_token(client_id, scope)
        return {"api_url": self.api_url, "token_url": self.token_url, "client_id": client_id,
                "client_secret": self.client_secret, "refresh_token": issued["refresh_token"]}


@contextmanager
def running_data_api(bearer_token: str) -> Iterator[DataApi]:
    """The data API alone, served on 127.0.0.1 and accepting ``bearer_token``."""
    application = create_data_api()
    api = get_data_api(application)
    with serve(application) as url:
        api.base_url = url
        api.settings.bearer_token = bearer_token
        yield api


@contextmanager
def running_servers() -> Iterator[Servers]:
    """The OAuth provider and the data API, served on 127.0.0.1; the API accepts the provider's
    live access tokens on ``/oauth``."""
    provider_app = create_oauth_provider()
    data_api_app = create_data_api()
    provider = get_provider(provider_app)
    client_secret = "cs-" + secrets.token_hex(12)
    provider.add_client(POST_CLIENT, client_secret, token_endpoint_auth_method="client_secret_post")
    provider.add_client(BASIC_CLIENT, client_secret, token_endpoint_auth_method="client_secret_basic")
    with serve(provider_app) as provider_url, serve(data_api_app) as api_url:
        running = Servers(provider, get_data_api(data_api_app), provider_url, api_url, client_secret)
        running.reset()
        yield running


def create_source(client: FlaskClient, account: Any, source_type: str, properties: dict[str, Any]) -> int:
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": source_type, "display_name": f"{source_type} {secrets.token_hex(3)}", "properties": properties})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def call_api(app: Flask, source_id: int, stream: str | None = None) -> requests.Response:
    """The card's check request (or a stream's first page) for the source, as a job would send it."""
    with app.app_context():
        source = db.session().get(Source, source_id)
        card = get_catalog().get(source.type)
        spec = card.api.check if stream is None else next(
            s.request for s in card.api.streams if s.tap_stream_id == stream)
        return send_api_request(db.get_db().Session, get_keyring(), source, card, spec)


def token_store(app: Flask, source_id: int) -> TokenStore:
    with app.app_context():
        source_type = db.session().get(Source, source_id).type
        return TokenStore(db.get_db().Session, get_keyring(), get_catalog().get(source_type), source_id,
                          TokenSettings.from_config(app.config))


def token_row(app: Flask, source_id: int, kind: str = ACCESS_TOKEN) -> SourceToken | None:
    with db.get_db(app).Session() as session:
        return session.scalars(select(SourceToken).where(
            SourceToken.source_id == source_id, SourceToken.kind == kind)).one_or_none()


def set_token_times(app: Flask, source_id: int, expires_at: datetime, refreshed_at: datetime,
                    kind: str = ACCESS_TOKEN) -> None:
    """Age the cached token, as time passing would."""
    with db.get_db(app).Session() as session, session.begin():
        session.execute(update(SourceToken).where(SourceToken.source_id == source_id, SourceToken.kind == kind)
                        .values(expires_at=expires_at, refreshed_at=refreshed_at))


def stored_properties(app: Flask, source_id: int) -> dict[str, Any]:
    with app.app_context():
        return decrypted_properties(get_keyring(), db.session().get(Source, source_id))


def event_types(app: Flask, source_id: int) -> list[str]:
    with db.get_db(app).Session() as session:
        return list(session.scalars(select(SourceEvent.type).where(SourceEvent.source_id == source_id)
                                    .order_by(SourceEvent.id)))


def events(app: Flask, source_id: int, type_: str) -> list[dict[str, Any]]:
    with db.get_db(app).Session() as session:
        return [e.detail for e in session.scalars(select(SourceEvent).where(
            SourceEvent.source_id == source_id, SourceEvent.type == type_).order_by(SourceEvent.id))]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """The test provider and data API for a module of connector tests."""
    with running_servers() as running:
        yield running


@pytest.fixture(autouse=True)
def _default_server_behaviour(servers: Servers) -> Iterator[None]:
    yield
    servers.reset()
