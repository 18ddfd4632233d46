"""What the Airbyte dialect's tests share: the service on 127.0.0.1 with the shipped HubSpot card
pointed at the Authlib test provider, and the browser's part of the handshake.

The shipped ``platform.hubspot`` card is copied with only its two provider URLs changed to the test
provider's (a later card folder overrides a type: app/catalog/loader.py), so everything else of the
shipped type (properties, aliases, PKCE, client auth, what the token response fills) is the one
that ships.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from app import create_app, db
from app.config import DEFAULT_REPORT_CARDS
from app.oauth.handshake import CALLBACK_PATH

from .conftest import OPERATOR_TOKEN, base_config
from .servers import AUTHORIZE_PATH, TOKEN_PATH, OAuthProvider, ServerThread, create_oauth_provider, get_provider, serve

TIMEOUT = 5
HUBSPOT = "platform.hubspot"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class Service:
    app: Flask
    base: str
    provider: OAuthProvider

    def call(self, method: str, path: str, token: str = OPERATOR_TOKEN, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.base + path, headers={"Authorization": f"Bearer {token}"},
                                timeout=TIMEOUT, **kwargs)

    def register_app(self, client_id: str, client_secret: str) -> None:
        self.provider.add_client(client_id, client_secret, redirect_uris=[self.base + CALLBACK_PATH])

    def follow_consent(self, consent_url: str) -> str:
        """The user's browser: consent at the provider (auto-approved), back through the service's
        callback; returns where the service sends the browser (the integrator's redirect_url)."""
        at_provider = requests.get(consent_url, allow_redirects=False, timeout=TIMEOUT)
        assert at_provider.status_code == 302, at_provider.text
        callback = at_provider.headers["Location"]
        assert callback.startswith(self.base + CALLBACK_PATH + "?"), callback
        back = requests.get(callback, allow_redirects=False, timeout=TIMEOUT)
        assert back.status_code == 302, back.text
        return back.headers["Location"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def hubspot_card_at(provider_base: str, folder: Path) -> Path:
    card = json.loads((DEFAULT_REPORT_CARDS / f"{HUBSPOT}.json").read_text())
    card["oauth"]["authorize_url"] = provider_base + AUTHORIZE_PATH
    card["oauth"]["token_url"] = provider_base + TOKEN_PATH
    (folder / f"{HUBSPOT}.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def service(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    provider_app = create_oauth_provider()
    with serve(provider_app) as provider_base:
        cards = hubspot_card_at(provider_base, tmp_path_factory.mktemp("cards"))
        config = base_config(migrated_database)
        config["REPORT_CARDS"] = os.pathsep.join([str(config["REPORT_CARDS"]), str(cards)])
        app = create_app(config)
        thread = ServerThread(app)
        app.config["PUBLIC_URL"] = thread.base_url
        thread.start()
        try:
            yield Service(app, thread.base_url, get_provider(provider_app))
        finally:
            thread.stop()
            db.get_db(app).dispose()


def count(service: Service, model: type) -> int:
    with service.app.app_context():
        session = db.session()
        with session.begin():
            return int(session.scalar(select(func.count()).select_from(model)) or 0)


def assert_airbyte_error(response: requests.Response, status: int, detail_start: str,
                         field: str | None = None) -> dict[str, Any]:
    """Airbyte's problem document, naming the field in the dialect's words."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}, body
    assert body["status"] == status and body["type"].endswith("#" + body["title"]), body
    assert body["detail"].startswith(detail_start), body
    if field is not None:
        assert field in [error.get("field") for error in body["errors"]], body
    return body
