"""The hosted connect page through Flask's test client, against the real test OAuth provider and data API.

Where the browser would travel to the provider, the tests travel over real HTTP with ``requests``
(the provider answers the consent URL with a redirect to the service's callback), then come back to
the service through the test client, which keeps the page's OAuth return cookie like a browser.
"""

from __future__ import annotations

import re
import secrets
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import db
from app.connect.models import ConnectSession
from app.connect.theme import text_color_on, theme_css
from app.models import Source, utcnow
from app.oauth.handshake import CALLBACK_PATH

from .connectors_support import Servers, _default_server_behaviour, servers  # noqa: F401
from .test_discovery import run_jobs
from .test_service_basics import assert_error

TYPE = "test.connect-oauth"
FORM_TYPE = "test.discovery"
REDIRECT = "https://app.example/connected?tab=sources"
APP_CLIENT_ID = "connect-page-app"
TIMEOUT = 5


# -- helpers shared with the browser test -------------------------------------------------------


def register_operator_app(http_put, operator: dict[str, str], provider, public_url: str) -> str:
    """The operator's OAuth app for the test type, registered at the provider and in the service;
    ``http_put(path, headers, json)`` is the test client's put or a requests wrapper."""
    client_secret = "page-app-" + secrets.token_hex(12)
    provider.add_client(APP_CLIENT_ID, client_secret, redirect_uris=[public_url.rstrip("/") + CALLBACK_PATH],
                        token_endpoint_auth_method="client_secret_post")
    response = http_put("/v4/oauth/credentials", headers=operator, json={
        "source_type": TYPE, "configuration": {"client_id": APP_CLIENT_ID, "client_secret": client_secret}})
    assert response.status_code == 200
    return client_secret


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


# -- helpers ------------------------------------------------------------------------------------


def open_session(client: FlaskClient, account, **body: Any) -> str:
    response = client.post("/v4/connect/sessions", headers=account.headers, json={"redirect_url": REDIRECT, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def page_text(response) -> str:
    return response.get_data(as_text=True)


def field_error(html: str, name: str) -> str | None:
    found = re.search(rf'<p class="field-error" id="e-{re.escape(name)}">(.*?)</p>', html, re.S)
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else None


def input_tag(html: str, name: str) -> str:
    found = re.search(rf'<(input|select|textarea)[^>]*\bid="f-{re.escape(name)}"[^>]*>', html, re.S)
    assert found, f"no input for {name}"
    return found.group(0)


def account_sources(app, account_id: int) -> list[Source]:
    with app.app_context():
        session = db.session()
        with session.begin():
            return list(session.scalars(select(Source).where(Source.account_id == account_id,
                                                             Source.deleted_at.is_(None))))


def session_row(app, token: str) -> ConnectSession:
    from app.auth import hash_token

    with app.app_context():
        session = db.session()
        with session.begin():
            return session.scalars(select(ConnectSession).where(ConnectSession.token_hash == hash_token(token))).one()


def good_form(servers: Servers) -> dict[str, str]:
    return {"provider_port": servers.provider_url.rsplit(":", 1)[1], "api_url": servers.api_url,
            "plan": "team", "start_date": "", "workspace_key": "", "page_size": ""}


def through_oauth(client: FlaskClient, token: str) -> str:
    """Press "Connect with…", consent at the provider, come back: returns where the page sends the browser."""
    started = client.post(f"/connect/{token}/oauth")
    assert started.status_code == 303, page_text(started)
    assert "connect_oauth_return" in started.headers["Set-Cookie"]
    assert "HttpOnly" in started.headers["Set-Cookie"] and "SameSite=Lax" in started.headers["Set-Cookie"]
    at_provider = requests.get(started.headers["Location"], allow_redirects=False, timeout=TIMEOUT)
    assert at_provider.status_code == 302, at_provider.text
    callback = urlsplit(at_provider.headers["Location"])
    back = client.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 302, page_text(back)
    landing = urlsplit(back.headers["Location"])
    assert landing.path.startswith("/connect/oauth-return/") and token not in back.headers["Location"]
    returned = client.get(f"{landing.path}?{landing.query}")
    assert returned.status_code == 303, page_text(returned)
    return returned.headers["Location"]


# -- rendering the form -------------------------------------------------------------------------


def test_the_form_is_rendered_from_the_cards_json_schemas(client, account):
    token = open_session(client, account, source_type=TYPE)
    response = client.get(f"/connect/{token}")
    assert response.status_code == 200
    html = page_text(response)
    assert "<h1>Connect Test: Connect OAuth</h1>" in html
    for name, label in [("provider_port", "Provider port"), ("api_url", "Api url"), ("plan", "Plan"),
                        ("start_date", "Start date"), ("workspace_key", "Workspace key"), ("page_size", "Page size")]:
        assert f'<label for="f-{name}">{label}' in html
    assert 'aria-required="true"' in input_tag(html, "provider_port")
    assert 'aria-required="true"' not in input_tag(html, "start_date")
    assert 'type="password"' in input_tag(html, "workspace_key")
    assert 'type="url"' in input_tag(html, "api_url")
    assert input_tag(html, "plan").startswith("<select")
    assert all(f'<option value="{plan}"' in html for plan in ("free", "team", "enterprise"))
    # A card without titles or a form_layout (an operator's own) still reads in words: no regex.
    assert "Expected: a date and time such as 2024-01-31T09:30:00Z." in html
    assert "Expected: 2 to 5 digits." in html
    assert "^[0-9]" not in html and "Must match" not in html
    assert html.index("<legend>Settings</legend>") < html.index('id="f-provider_port"') \
        < html.index("<legend>Optional settings</legend>") < html.index('id="f-start_date"')
    advanced = html.index("<summary>Advanced settings</summary>")
    assert html.index('id="f-page_size"') > advanced > html.index('id="f-api_url"')
    # System-provided OAuth properties are not the user's to type.
    assert 'id="f-access_token"' not in html and 'id="f-client_secret"' not in html


def test_the_page_is_locked_down_by_its_headers(client, account):
    token = open_session(client, account, source_type=TYPE)
    response = client.get(f"/connect/{token}")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    html = page_text(response)
    assert " style=" not in html and "<style" not in html and "<script>" not in html
    for asset in re.findall(r'(?:href|src)="(/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset


def test_display_settings_are_escaped_and_the_colour_is_served_as_a_stylesheet(client, account):
    token = open_session(client, account, source_type=TYPE, display={
        "title": "<script>alert(1)</script> & Co", "primary_color": "#FFD700", "logo_url": "/brand/logo.svg"})
    html = page_text(client.get(f"/connect/{token}"))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert '<img class="brand-logo" src="/brand/logo.svg" alt="">' in html
    css = client.get(f"/connect/{token}/theme.css")
    assert css.mimetype == "text/css"
    assert page_text(css) == theme_css("#FFD700") == ":root { --primary: #ffd700; --on-primary: #000000; }\n"
    assert text_color_on("#1f5fbf") == "#ffffff"


# -- saving the form ----------------------------------------------------------------------------


def test_a_bad_value_is_shown_next_to_its_field_and_nothing_is_created(app, client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    secret = "wk-" + secrets.token_hex(8)
    response = client.post(f"/connect/{token}/form", data={**good_form(servers), "provider_port": "abc",
                                                           "workspace_key": secret})
    assert response.status_code == 422
    html = page_text(response)
    assert field_error(html, "provider_port") == "Error: must be 2 to 5 digits"
    tag = input_tag(html, "provider_port")
    assert 'aria-invalid="true"' in tag and 'aria-describedby="e-provider_port h-provider_port"' in tag
    assert "autofocus" in tag and 'value="abc"' in tag
    assert field_error(html, "api_url") is None
    assert f'value="{servers.api_url}"' in html  # what the user typed is kept…
    assert secret not in html  # …except a credential
    assert account_sources(app, account.id) == []
    assert session_row(app, token).source_id is None


def test_missing_required_values_are_named(app, client, account):
    token = open_session(client, account, source_type=TYPE)
    html = page_text(client.post(f"/connect/{token}/form", data={"plan": "free"}))
    assert field_error(html, "provider_port") == "Error: is required"
    assert field_error(html, "api_url") == "Error: is required"
    assert 'href="#f-provider_port"' in html
    assert account_sources(app, account.id) == []


def test_saving_the_form_creates_the_one_source_and_binds_the_session(app, client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    response = client.post(f"/connect/{token}/form", data={**good_form(servers), "page_size": "50"})
    assert response.status_code == 303 and response.headers["Location"] == f"/connect/{token}"
    (source,) = account_sources(app, account.id)
    assert source.type == TYPE and source.properties["plan"] == "team"
    assert source.properties["page_size"] == 50  # typed as the schema's first reading that fits
    assert session_row(app, token).source_id == source.id
    html = page_text(client.get(f"/connect/{token}"))
    assert '<button type="submit" class="primary" id="oauth-button">Connect with Test: Connect OAuth</button>' in html
    # Saving again (a second tab, the back button) updates the same source.
    again = client.post(f"/connect/{token}/form", data={**good_form(servers), "plan": "enterprise"})
    assert again.status_code == 303
    (same,) = account_sources(app, account.id)
    assert same.id == source.id and same.properties["plan"] == "enterprise"


def test_a_bad_value_for_a_saved_source_changes_nothing(app, client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    response = client.post(f"/connect/{token}/form", data={**good_form(servers), "plan": "gold",
                                                           "page_size": "-3"})
    assert response.status_code == 422
    html = page_text(response)
    assert field_error(html, "plan") == "Error: must be one of free, team, enterprise"
    assert field_error(html, "page_size") is not None
    assert "<details class=\"group\" id=\"g-advanced\" open>" in html  # the advanced field with an error is shown
    (source,) = account_sources(app, account.id)
    assert source.properties["plan"] == "team" and "page_size" not in source.properties
    assert client.get(f"/connect/{token}").status_code == 200  # the request's session is usable after


def test_a_taken_display_name_gets_a_suffix(app, client, account, servers):
    for _ in range(2):
        token = open_session(client, account, source_type=TYPE)
        assert client.post(f"/connect/{token}/form", data=good_form(servers)).status_code == 303
    names = sorted(s.display_name for s in account_sources(app, account.id))
    assert names[0] == "Test: Connect OAuth" and names[1].startswith("Test: Connect OAuth ")


def test_a_session_reaches_only_its_own_source(app, client, account, new_account, servers):
    mine = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{mine}/form", data=good_form(servers))
    other_account = new_account("Other")
    theirs = open_session(client, other_account, source_type=TYPE)
    client.post(f"/connect/{theirs}/form", data={**good_form(servers), "plan": "free"})
    (my_source,) = account_sources(app, account.id)
    (their_source,) = account_sources(app, other_account.id)
    assert (my_source.properties["plan"], their_source.properties["plan"]) == ("team", "free")
    # The session token is no API token.
    assert_error(client.get(f"/v4/sources/{my_source.id}", headers={"Authorization": f"Bearer {mine}"}),
                 401, "unauthorized")


# -- choosing a type ----------------------------------------------------------------------------


def test_the_user_picks_among_the_allowed_types(app, client, account):
    token = open_session(client, account, allowed_types=[FORM_TYPE, TYPE])
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Choose a data source</h1>" in html
    assert f'value="{FORM_TYPE}" class="choice">Test: discovery</button>' in html
    assert f'value="{TYPE}" class="choice">Test: Connect OAuth</button>' in html
    refused = client.post(f"/connect/{token}/type", data={"source_type": "test.auth-basic"})
    assert refused.status_code == 422 and "not one of this session" in page_text(refused)
    assert client.post(f"/connect/{token}/type", data={"source_type": FORM_TYPE}).status_code == 303
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Connect Test: discovery</h1>" in html and 'type="password"' in input_tag(html, "api_token")


# -- the whole walk -----------------------------------------------------------------------------


def test_form_oauth_discovery_and_selection_end_on_the_redirect_url(app, client, account, operator, servers):
    register_operator_app(client.put, operator, servers.provider, app.config["PUBLIC_URL"])
    # The account's allow-list names the integrator's URL; the page's own return URL is not on it.
    client.put(f"/v4/accounts/{account.id}", headers=operator, json={"redirect_url_allowlist": [REDIRECT]})
    token = open_session(client, account, source_type=TYPE)
    assert client.post(f"/connect/{token}/form", data=good_form(servers)).status_code == 303
    back_at = through_oauth(client, token)
    assert back_at == f"/connect/{token}"
    # The handshake's state row keeps the return URL: it must not hold the session token.
    from app.oauth.models import OAuthState

    with app.app_context():
        session = db.session()
        with session.begin():
            (state_row,) = session.scalars(select(OAuthState)).all()
    assert token not in state_row.redirect_url and state_row.source_id is not None

    progress = page_text(client.get(back_at))
    assert "<h1>Checking the connection</h1>" in progress and 'role="status"' in progress
    assert "connect.js" in progress and '<noscript><meta http-equiv="refresh" content="3"></noscript>' in progress
    status = client.get(f"/connect/{token}/status").get_json()
    assert status == {"step": "discover_schema", "setup_state": "incomplete",
                      "check": {"status": "queued", "message": None}}

    (source,) = account_sources(app, account.id)
    run_jobs(app)
    assert client.get(f"/connect/{token}/status").get_json()["step"] == "field_selection"
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Choose what to sync</h1>" in html
    assert re.search(r'value="secret_stuff" id="s-secret_stuff"\s+disabled', html)
    assert re.search(r'value="id"\s+id="sf-contacts-id"\s+checked disabled', html)

    done = client.post(f"/connect/{token}/streams", data={"stream": "contacts", "fields:contacts": ["name"]})
    assert done.status_code == 303
    assert done.headers["Location"] == f"{REDIRECT}&source_id={source.id}"
    body = client.get(f"/v4/sources/{source.id}", headers=account.headers).get_json()
    assert body["report_card"]["current_step_type"] == "fully_configured"
    streams = client.get(f"/v4/sources/{source.id}/streams", headers=account.headers).get_json()
    assert [s["tap_stream_id"] for s in streams if s["selected"]] == ["contacts"]
    contacts = next(s["stream_id"] for s in streams if s["tap_stream_id"] == "contacts")
    metadata = client.get(f"/v4/sources/{source.id}/streams/{contacts}", headers=account.headers).get_json()
    chosen = {e["breadcrumb"][1]: e["metadata"]["selected"] for e in metadata["metadata"] if e["breadcrumb"]}
    assert chosen == {"id": True, "email": False, "name": True, "updatedAt": True}
    events = [e["type"] for e in client.get(f"/v4/sources/{source.id}/events", headers=account.headers).get_json()]
    assert "oauth_completed" in events and events[-1] == "selection_updated"
    # The session has ended: its page and its routes say so.
    assert client.get(f"/connect/{token}").status_code == 410
    assert client.post(f"/connect/{token}/cancel").status_code == 410
    row = session_row(app, token)
    assert (row.outcome, row.source_id) == ("completed", source.id)


def test_declining_at_the_provider_comes_back_with_a_message(app, client, account, operator, servers):
    register_operator_app(client.put, operator, servers.provider, app.config["PUBLIC_URL"])
    servers.provider.settings.deny_consent = True
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    back_at = through_oauth(client, token)
    assert back_at == f"/connect/{token}?oauth_error=access_denied"
    html = page_text(client.get(back_at))
    assert "Access was declined at Test: Connect OAuth" in html and 'id="oauth-button"' in html


def test_the_oauth_return_needs_the_cookie_of_the_session(app, client, account, operator, servers):
    register_operator_app(client.put, operator, servers.provider, app.config["PUBLIC_URL"])
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    row_id = session_row(app, token).id
    stranger = client.application.test_client()
    response = stranger.get(f"/connect/oauth-return/{row_id}?source_id=1")
    assert response.status_code == 400 and "open the link" in page_text(response)
    client.post(f"/connect/{token}/oauth")
    assert client.get(f"/connect/oauth-return/{row_id + 1}").status_code == 400  # the cookie is path-scoped


def test_no_oauth_app_is_an_error_on_the_page_not_a_crash(client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    response = client.post(f"/connect/{token}/oauth")
    assert response.status_code == 422 and "OAuth app" in page_text(response)


# -- checks that fail, and reconnecting -----------------------------------------------------------


def run_until_check_fails(app) -> None:
    """Run the check job through all its attempts, skipping the back-off waits between them."""
    from app.discovery.models import ConnectionCheck
    from app.jobs.models import Job

    def check_failed() -> bool:
        with db.get_db(app).Session() as session, session.begin():
            session.execute(update(Job).values(run_after=utcnow()))
            return session.scalars(select(ConnectionCheck.status)).all() == ["failed"]

    run_jobs(app, until=check_failed, deadline=30)


def test_refused_credentials_show_the_error_and_new_ones_reconnect(app, client, account, servers):
    token = open_session(client, account, source_type=FORM_TYPE)
    servers.data_api.settings.bearer_token = "right-token"
    form = {"api_url": servers.api_url, "api_token": "wrong-token", "region": ""}
    assert client.post(f"/connect/{token}/form", data=form).status_code == 303
    run_jobs(app)
    html = page_text(client.get(f"/connect/{token}"))
    assert 'id="setup-error"' in html and "Enter new credentials to reconnect" in html
    assert "Saved; leave empty to keep it." in html and "wrong-token" not in html
    assert client.post(f"/connect/{token}/form", data={**form, "api_token": "right-token"}).status_code == 303
    run_jobs(app)
    assert client.get(f"/connect/{token}/status").get_json()["step"] == "field_selection"


def test_a_broken_oauth_source_is_reconnected_in_place(app, client, account, operator, servers):
    register_operator_app(client.put, operator, servers.provider, app.config["PUBLIC_URL"])
    first = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{first}/form", data=good_form(servers))
    through_oauth(client, first)
    run_jobs(app)
    (source,) = account_sources(app, account.id)
    with app.app_context():
        session = db.session()
        with session.begin():
            session.execute(update(Source).where(Source.id == source.id).values(
                broken_at=utcnow(), broken_reason={"type": "refresh_failed", "message": "the grant was revoked"}))

    token = open_session(client, account, source_id=source.id)
    assert session_row(app, token).mode == "reconnect"
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Reconnect Test: Connect OAuth</h1>" in html and "the grant was revoked" in html
    assert ">Reconnect with Test: Connect OAuth</button>" in html
    assert through_oauth(client, token) == f"/connect/{token}"
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Checking the connection</h1>" in html and "Reconnect with" not in html
    run_jobs(app)
    body = client.get(f"/v4/sources/{source.id}", headers=account.headers).get_json()
    assert body["setup_state"] == "connected"
    assert "<h1>Choose what to sync</h1>" in page_text(client.get(f"/connect/{token}"))
    assert len(account_sources(app, account.id)) == 1


def test_a_failed_check_offers_another_try(app, client, account, operator, servers):
    register_operator_app(client.put, operator, servers.provider, app.config["PUBLIC_URL"])
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    through_oauth(client, token)
    servers.data_api.fail_next_requests("server_error", count=None)
    run_until_check_fails(app)
    html = page_text(client.get(f"/connect/{token}"))
    assert 'id="check-result"' in html and "Try again" in html
    servers.data_api.clear_faults()
    assert client.post(f"/connect/{token}/check").status_code == 303
    run_jobs(app)
    assert client.get(f"/connect/{token}/status").get_json()["step"] == "field_selection"


# -- leaving --------------------------------------------------------------------------------------


def test_cancel_goes_back_with_an_error_and_ends_the_session(app, client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    (source,) = account_sources(app, account.id)
    response = client.post(f"/connect/{token}/cancel")
    assert response.status_code == 303
    assert query(response.headers["Location"]) == {"tab": "sources", "source_id": str(source.id), "error": "cancelled"}
    assert client.get(f"/connect/{token}").status_code == 410


def test_finish_before_the_source_is_configured_is_refused(client, account, servers):
    token = open_session(client, account, source_type=TYPE)
    client.post(f"/connect/{token}/form", data=good_form(servers))
    response = client.post(f"/connect/{token}/finish")
    assert response.status_code == 409 and "not fully configured" in page_text(response)


@pytest.mark.parametrize("path", ["/connect/cs_nope", "/connect/cs_nope/theme.css"])
def test_an_unknown_token_is_a_page_not_a_json_error(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Link not found" in page_text(response)


def test_a_configured_source_offers_finish(app, client, account, servers):
    servers.data_api.settings.bearer_token = "right-token"
    created = client.post("/v4/sources", headers=account.headers, json={
        "type": FORM_TYPE, "display_name": "Ready", "properties": {"api_url": servers.api_url,
                                                                    "api_token": "right-token"}})
    source_id = created.get_json()["id"]
    run_jobs(app)
    selected = client.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers, json={
        "streams": [{"tap_stream_id": "contacts", "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]})
    assert selected.status_code == 200, selected.get_json()
    token = open_session(client, account, source_id=source_id)
    html = page_text(client.get(f"/connect/{token}"))
    assert "<h1>Test: discovery is connected</h1>" in html and "connect.js" not in html
    finished = client.post(f"/connect/{token}/finish")
    assert finished.status_code == 303
    assert query(finished.headers["Location"]) == {"tab": "sources", "source_id": str(source_id)}
