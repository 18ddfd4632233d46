"""The test servers behave like the providers and APIs they stand in for."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask

from .data_api import DataApi, DataApiSettings, create_data_api, get_data_api
from .oauth_provider import (
    AUTHORIZE_PATH,
    RESOURCE_PATH,
    TOKEN_PATH,
    Client,
    OAuthProvider,
    create_oauth_provider,
    get_provider,
)
from .threaded import ServerThread, serve

REDIRECT_URI = "http://127.0.0.1:9/callback"
TIMEOUT = 5


@pytest.fixture
def provider_app() -> Flask:
    return create_oauth_provider()


@pytest.fixture
def provider(provider_app: Flask) -> OAuthProvider:
    return get_provider(provider_app)


@pytest.fixture
def provider_url(provider_app: Flask) -> Iterator[str]:
    with serve(provider_app) as base_url:
        yield base_url


@pytest.fixture
def oauth_client(provider: OAuthProvider) -> Client:
    return provider.add_client(redirect_uris=[REDIRECT_URI])


def oauth_session(client: Client, **kwargs: Any) -> OAuth2Session:
    return OAuth2Session(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        redirect_uri=REDIRECT_URI,
        scope="contacts.read deals.read",
        code_challenge_method="S256",
        **kwargs,
    )


def authorize(
    session: OAuth2Session, base_url: str, code_verifier: str | None, state: str | None = None
) -> str:
    """Walk the authorize endpoint and return the redirect it answers with."""
    url, _ = session.create_authorization_url(
        base_url + AUTHORIZE_PATH, state=state, code_verifier=code_verifier
    )
    answer = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def run_handshake(client: Client, base_url: str) -> dict[str, Any]:
    session = oauth_session(client)
    verifier = generate_token(48)
    location = authorize(session, base_url, verifier)
    return session.fetch_token(
        base_url + TOKEN_PATH, authorization_response=location, code_verifier=verifier
    )


def post_token(base_url: str, form: dict[str, str], **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(base_url + TOKEN_PATH, data=form, **kwargs)


def refresh(base_url: str, client: Client, refresh_token: str) -> requests.Response:
    return post_token(
        base_url,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )


def fetch_me(base_url: str, access_token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(base_url + RESOURCE_PATH, headers=headers, timeout=TIMEOUT)


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


# -- threaded ---------------------------------------------------------------------------


def test_serve_gives_a_loopback_url_and_stops_listening_afterwards() -> None:
    app = Flask(__name__)
    app.add_url_rule("/ping", "ping", lambda: "pong")
    with serve(app) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert requests.get(base_url + "/ping", timeout=TIMEOUT).text == "pong"
    with pytest.raises(requests.ConnectionError):
        requests.get(base_url + "/ping", timeout=TIMEOUT)


def test_server_thread_knows_its_port_before_it_starts() -> None:
    thread = ServerThread(Flask(__name__))
    assert thread.port > 0
    thread.stop()


# -- authorization code + PKCE ----------------------------------------------------------


def test_authorization_code_flow_with_pkce_issues_a_working_token(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = run_handshake(oauth_client, provider_url)

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "contacts.read deals.read"
    assert token["refresh_token"] == provider.last_refresh_token
    assert provider.last_authorization_request["code_challenge_method"] == "S256"
    sent = provider.last_token_request
    assert sent.grant_type == "authorization_code"
    assert {"code", "code_verifier", "redirect_uri"} <= sent.fields
    assert sent.client_auth == "client_secret_post"
    assert fetch_me(provider_url, token["access_token"]).json()["user"] == "test-user"


def test_authorize_redirect_carries_code_and_state(provider_url: str, oauth_client: Client) -> None:
    session = oauth_session(oauth_client)
    location = authorize(session, provider_url, generate_token(48), state="state-123")
    assert location.startswith(REDIRECT_URI + "?code=")
    assert "state=state-123" in location


def test_authorization_code_can_be_used_once(provider_url: str, oauth_client: Client) -> None:
    session = oauth_session(oauth_client)
    verifier = generate_token(48)
    location = authorize(session, provider_url, verifier)
    session.fetch_token(
        provider_url + TOKEN_PATH, authorization_response=location, code_verifier=verifier
    )
    code = location.split("code=")[1].split("&")[0]
    again = post_token(
        provider_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": oauth_client.client_id,
            "client_secret": oauth_client.client_secret,
        },
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_wrong_code_verifier_is_invalid_grant(provider_url: str, oauth_client: Client) -> None:
    session = oauth_session(oauth_client)
    location = authorize(session, provider_url, generate_token(48))
    code = location.split("code=")[1].split("&")[0]
    answer = post_token(
        provider_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": generate_token(48),
            "client_id": oauth_client.client_id,
            "client_secret": oauth_client.client_secret,
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_missing_code_verifier_is_refused_when_a_challenge_was_sent(
    provider_url: str, oauth_client: Client
) -> None:
    session = oauth_session(oauth_client)
    location = authorize(session, provider_url, generate_token(48))
    code = location.split("code=")[1].split("&")[0]
    answer = post_token(
        provider_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": oauth_client.client_id,
            "client_secret": oauth_client.client_secret,
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_plain_pkce_is_refused(provider_url: str, oauth_client: Client) -> None:
    params = {
        "response_type": "code",
        "client_id": oauth_client.client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "s1",
        "code_challenge": generate_token(48),
        "code_challenge_method": "plain",
    }
    answer = requests.get(
        provider_url + AUTHORIZE_PATH, params=params, allow_redirects=False, timeout=TIMEOUT
    )
    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["Location"]


def test_require_pkce_refuses_an_authorization_without_challenge(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.require_pkce = True
    location = authorize(oauth_session(oauth_client), provider_url, code_verifier=None)
    assert "error=invalid_request" in location


def test_authorization_code_without_pkce_works_when_not_required(
    provider_url: str, oauth_client: Client
) -> None:
    session = oauth_session(oauth_client)
    location = authorize(session, provider_url, code_verifier=None)
    token = session.fetch_token(provider_url + TOKEN_PATH, authorization_response=location)
    assert token["access_token"]


def test_unregistered_redirect_uri_is_refused_without_redirecting(
    provider_url: str, oauth_client: Client
) -> None:
    params = {
        "response_type": "code",
        "client_id": oauth_client.client_id,
        "redirect_uri": "http://evil.example/cb",
    }
    answer = requests.get(
        provider_url + AUTHORIZE_PATH, params=params, allow_redirects=False, timeout=TIMEOUT
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_denied_consent_redirects_with_access_denied_and_state(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.deny_consent = True
    session = oauth_session(oauth_client)
    location = authorize(session, provider_url, generate_token(48), state="keep-me")
    assert location.startswith(REDIRECT_URI + "?")
    assert "error=access_denied" in location
    assert "error_description=" in location
    assert "state=keep-me" in location


# -- refresh ----------------------------------------------------------------------------


def test_refresh_without_rotation_keeps_the_refresh_token(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = run_handshake(oauth_client, provider_url)
    for _ in range(2):
        answer = refresh(provider_url, oauth_client, token["refresh_token"])
        assert answer.status_code == 200
        assert "refresh_token" not in answer.json()
        assert fetch_me(provider_url, answer.json()["access_token"]).status_code == 200
    assert provider.refresh_tokens_issued == [token["refresh_token"]]
    assert provider.token_requests_by_grant["refresh_token"] == 2


def test_refresh_with_rotation_revokes_the_old_refresh_token(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.rotate_refresh_tokens = True
    first = run_handshake(oauth_client, provider_url)["refresh_token"]

    answer = refresh(provider_url, oauth_client, first)
    second = answer.json()["refresh_token"]
    assert answer.status_code == 200
    assert second != first
    assert provider.refresh_tokens_issued == [first, second]
    assert provider.last_refresh_token == second

    reused = refresh(provider_url, oauth_client, first)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert refresh(provider_url, oauth_client, second).status_code == 200


def test_authlib_client_refresh_with_client_secret_basic(
    provider: OAuthProvider, provider_url: str
) -> None:
    client = provider.add_client(
        redirect_uris=[REDIRECT_URI], token_endpoint_auth_method="client_secret_basic"
    )
    token = run_handshake(client, provider_url)
    session = oauth_session(client, token=token)
    renewed = session.refresh_token(provider_url + TOKEN_PATH)
    assert renewed["access_token"] != token["access_token"]
    assert provider.last_token_request.client_auth == "client_secret_basic"
    assert provider.last_token_request.basic_client_id == client.client_id
    assert "client_secret" not in provider.last_token_request.fields


def test_revoked_grant_and_expired_access_tokens(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id, scope="contacts.read")
    assert provider.is_valid_access_token(token["access_token"])
    provider.expire_access_tokens()
    assert fetch_me(provider_url, token["access_token"]).status_code == 401
    provider.revoke_refresh_tokens()
    assert refresh(provider_url, oauth_client, token["refresh_token"]).json() == {
        "error": "invalid_grant"
    }


def test_access_token_lifetime_is_applied_and_enforced(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.access_token_lifetime = 0
    token = run_handshake(oauth_client, provider_url)
    assert token["expires_in"] == 0
    assert fetch_me(provider_url, token["access_token"]).status_code == 401


def test_resource_endpoint_rejects_unknown_and_missing_tokens(provider_url: str) -> None:
    assert fetch_me(provider_url, "not-a-token").status_code == 401
    assert requests.get(provider_url + RESOURCE_PATH, timeout=TIMEOUT).status_code == 401


# -- client credentials and client authentication ---------------------------------------


def test_client_credentials_grant(provider: OAuthProvider, provider_url: str) -> None:
    client = provider.add_client(
        client_id="machine", grant_types=["client_credentials"], scope="read write"
    )
    answer = post_token(
        provider_url,
        {"grant_type": "client_credentials", "scope": "read"},
        auth=(client.client_id, "test-secret"),
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"

    answer = post_token(
        provider_url,
        {
            "grant_type": "client_credentials",
            "scope": "read",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    token = answer.json()
    assert answer.status_code == 200
    assert token["scope"] == "read"
    assert "refresh_token" not in token
    assert fetch_me(provider_url, token["access_token"]).json()["client_id"] == "machine"
    assert provider.token_requests_by_grant == {"client_credentials": 2}


def test_scope_outside_the_clients_allowance_is_refused(
    provider: OAuthProvider, provider_url: str
) -> None:
    client = provider.add_client(grant_types=["client_credentials"], scope="read")
    answer = post_token(
        provider_url,
        {
            "grant_type": "client_credentials",
            "scope": "admin",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"


def test_grant_type_not_allowed_for_the_client_is_unauthorized_client(
    provider_url: str, oauth_client: Client
) -> None:
    restricted = oauth_client
    restricted.grant_types = {"authorization_code"}
    answer = post_token(
        provider_url,
        {
            "grant_type": "client_credentials",
            "client_id": restricted.client_id,
            "client_secret": restricted.client_secret,
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    ("registered", "sent"),
    [("client_secret_basic", "client_secret_post"), ("client_secret_post", "client_secret_basic")],
)
def test_client_must_authenticate_with_its_registered_method(
    provider: OAuthProvider, provider_url: str, registered: str, sent: str
) -> None:
    client = provider.add_client(token_endpoint_auth_method=registered)
    token = provider.issue_token(client.client_id)
    form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    if sent == "client_secret_post":
        answer = post_token(
            provider_url, {**form, "client_id": client.client_id, "client_secret": "test-secret"}
        )
    else:
        answer = post_token(provider_url, form, auth=(client.client_id, "test-secret"))
    assert answer.json()["error"] == "invalid_client"
    assert provider.last_token_request.client_auth == sent


def test_wrong_client_secret_is_invalid_client(provider_url: str, oauth_client: Client) -> None:
    answer = post_token(
        provider_url,
        {"grant_type": "client_credentials", "client_id": "test-client", "client_secret": "no"},
    )
    assert answer.json()["error"] == "invalid_client"


def test_token_request_record_masks_secrets(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    refresh(provider_url, oauth_client, token["refresh_token"])
    shown = repr(provider.last_token_request)
    assert oauth_client.client_secret not in shown
    assert token["refresh_token"] not in shown
    assert provider.last_token_request.form["refresh_token"] == token["refresh_token"]


# -- token endpoint faults --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("invalid_grant", 400, "application/json"),
        ("server_error", 500, "application/json"),
        ("rate_limited", 429, "application/json"),
        ("html", 200, "text/html"),
        ("truncated_json", 200, "application/json"),
    ],
)
def test_faults_answered_before_processing_leave_the_refresh_token_usable(
    provider: OAuthProvider,
    provider_url: str,
    oauth_client: Client,
    fault: str,
    status: int,
    content_type: str,
) -> None:
    provider.settings.rotate_refresh_tokens = True
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests(fault)

    answer = refresh(provider_url, oauth_client, token["refresh_token"])
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith(content_type)
    if fault == "rate_limited":
        assert answer.headers["Retry-After"] == "1"
    if fault == "invalid_grant":
        assert answer.json()["error"] == "invalid_grant"
    if fault in ("html", "truncated_json"):
        with pytest.raises(requests.JSONDecodeError):
            answer.json()
    assert refresh(provider_url, oauth_client, token["refresh_token"]).status_code == 200


def test_slow_fault_delays_then_answers(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("slow", delay=0.3)
    started = time.monotonic()
    answer = refresh(provider_url, oauth_client, token["refresh_token"])
    assert time.monotonic() - started >= 0.3
    assert answer.status_code == 200

    provider.fail_next_token_requests("slow", delay=0.3)
    with pytest.raises(requests.Timeout):
        post_token(provider_url, {"grant_type": "client_credentials"}, timeout=0.1)


def test_racing_refreshes_with_rotation_let_only_one_win(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.rotate_refresh_tokens = True
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("slow", count=2, delay=0.2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(lambda _: refresh(provider_url, oauth_client, token["refresh_token"]), "ab")
        )
    assert sorted(answer.status_code for answer in answers) == [200, 400]


def test_fault_count_and_persistent_faults(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("server_error", count=2)
    statuses = [
        refresh(provider_url, oauth_client, token["refresh_token"]).status_code for _ in "abc"
    ]
    assert statuses == [500, 500, 200]

    provider.fail_next_token_requests("rate_limited", count=None)
    assert [
        refresh(provider_url, oauth_client, token["refresh_token"]).status_code for _ in "ab"
    ] == [
        429,
        429,
    ]
    provider.clear_faults()
    assert refresh(provider_url, oauth_client, token["refresh_token"]).status_code == 200
    assert provider.token_requests == 6
    assert provider.token_requests_by_grant["refresh_token"] == 6


def test_no_expires_in_fault(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("no_expires_in")
    body = refresh(provider_url, oauth_client, token["refresh_token"]).json()
    assert "expires_in" not in body
    assert body["access_token"]


def test_expires_at_absolute_fault(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("expires_at_absolute")
    body = refresh(provider_url, oauth_client, token["refresh_token"]).json()
    assert "expires_in" not in body
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    remaining = (expires_at - datetime.now(UTC)).total_seconds()
    assert 3590 < remaining <= 3600


def test_no_access_token_fault(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("no_access_token")
    answer = refresh(provider_url, oauth_client, token["refresh_token"])
    assert answer.status_code == 200
    assert "access_token" not in answer.json()


def test_lost_response_commits_the_rotation_then_drops_the_connection(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.rotate_refresh_tokens = True
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("lost_response")

    with pytest.raises(requests.ConnectionError):
        refresh(provider_url, oauth_client, token["refresh_token"])

    assert len(provider.refresh_tokens_issued) == 2
    assert refresh(provider_url, oauth_client, token["refresh_token"]).json()["error"] == (
        "invalid_grant"
    )
    assert refresh(provider_url, oauth_client, provider.last_refresh_token).status_code == 200


def test_lost_response_is_a_502_under_the_flask_test_client(
    provider_app: Flask, provider: OAuthProvider, oauth_client: Client
) -> None:
    token = provider.issue_token(oauth_client.client_id)
    provider.fail_next_token_requests("lost_response")
    answer = provider_app.test_client().post(
        TOKEN_PATH,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": oauth_client.client_id,
            "client_secret": oauth_client.client_secret,
        },
    )
    assert answer.status_code == 502


def test_extra_token_fields_are_added_to_token_responses(
    provider: OAuthProvider, provider_url: str, oauth_client: Client
) -> None:
    provider.settings.extra_token_fields = {
        "instance_url": "https://eu1.example.com",
        "team": {"id": "T1"},
    }
    token = run_handshake(oauth_client, provider_url)
    assert token["instance_url"] == "https://eu1.example.com"
    assert token["team"] == {"id": "T1"}


# -- data API ---------------------------------------------------------------------------


@pytest.fixture
def data_app() -> Flask:
    return create_data_api(DataApiSettings(password="", api_key_header="X-Custom-Key"))


@pytest.fixture
def data_api(data_app: Flask) -> DataApi:
    return get_data_api(data_app)


@pytest.fixture
def data_url(data_app: Flask) -> Iterator[str]:
    with serve(data_app) as base_url:
        yield base_url


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT, **kwargs)


def post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, timeout=TIMEOUT, **kwargs)


def test_basic_check_accepts_the_exact_pair_including_an_empty_password(data_url: str) -> None:
    assert get(data_url + "/basic/check", headers=basic("user", "")).status_code == 200
    assert get(data_url + "/basic/check", auth=("user", "")).status_code == 200
    for wrong in [basic("user", "x"), basic("other", ""), {"Authorization": "Basic user"}, {}]:
        answer = get(data_url + "/basic/check", headers=wrong)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"


def test_basic_check_refuses_an_empty_password_when_one_is_expected(
    data_api: DataApi, data_url: str
) -> None:
    data_api.settings.password = "s3cret"
    assert get(data_url + "/basic/check", auth=("user", "")).status_code == 401
    assert get(data_url + "/basic/check", auth=("user", "s3cret")).status_code == 200


def test_bearer_check(data_url: str) -> None:
    ok = {"Authorization": "Bearer bearer-token"}
    assert get(data_url + "/bearer/check", headers=ok).status_code == 200
    for wrong in [{"Authorization": "Bearer other"}, {"Authorization": "bearer-token"}, {}]:
        assert get(data_url + "/bearer/check", headers=wrong).status_code == 401


def test_api_key_in_a_header(data_url: str) -> None:
    url = data_url + "/apikey/header/check"
    assert get(url, headers={"X-Custom-Key": "api-key"}).status_code == 200
    assert get(url, headers={"X-Api-Key": "api-key"}).status_code == 401
    assert get(url, headers={"X-Custom-Key": "wrong"}).status_code == 401


def test_api_key_in_the_query(data_url: str) -> None:
    url = data_url + "/apikey/query/check"
    assert get(url, params={"api_key": "api-key"}).status_code == 200
    assert get(url, params={"api_key": "nope"}).status_code == 401
    assert get(url, headers={"X-Custom-Key": "api-key"}).status_code == 401


def test_api_key_in_a_form_body(data_url: str) -> None:
    url = data_url + "/apikey/form/check"
    assert post(url, data={"api_key": "api-key"}).status_code == 200
    assert post(url, data={"api_key": "nope"}).status_code == 401
    assert post(url, json={"api_key": "api-key"}).status_code == 401


def test_api_key_in_a_json_body(data_api: DataApi, data_url: str) -> None:
    url = data_url + "/apikey/json/check"
    assert post(url, json={"api_key": "api-key"}).status_code == 200
    assert data_api.last_request.json_keys == {"api_key"}
    assert post(url, json={"api_key": "nope"}).status_code == 401
    assert post(url, data={"api_key": "api-key"}).status_code == 401


def test_session_login_then_check_with_bearer_or_header(data_api: DataApi, data_url: str) -> None:
    login = post(
        data_url + "/session/login", json={"username": "session-user", "password": "session-pass"}
    )
    token = login.json()["data"]["session"]["token"]
    assert token == data_api.last_session_token
    assert get(data_url + "/session/check", headers={"Authorization": f"Bearer {token}"}).ok
    assert get(data_url + "/session/check", headers={"X-Session-Token": token}).ok
    assert (
        get(data_url + "/session/check", headers={"X-Session-Token": "forged"}).status_code == 401
    )
    assert data_api.session_logins == 1

    data_api.expire_session_tokens()
    assert get(data_url + "/session/check", headers={"X-Session-Token": token}).status_code == 401


def test_session_login_refuses_wrong_credentials(data_api: DataApi, data_url: str) -> None:
    wrong = post(data_url + "/session/login", json={"username": "session-user", "password": "x"})
    assert wrong.status_code == 401
    assert data_api.session_logins == 0


def test_session_login_by_basic_auth_and_token_lifetime(data_api: DataApi, data_url: str) -> None:
    data_api.settings.session_login_via = "basic"
    data_api.settings.session_token_lifetime = 0.2
    assert post(data_url + "/session/login", json={"username": "session-user"}).status_code == 401
    login = post(data_url + "/session/login", auth=("session-user", "session-pass"))
    token = login.json()["data"]["session"]["token"]
    assert get(data_url + "/session/check", headers={"X-Session-Token": token}).ok
    deadline = time.monotonic() + 2
    while get(data_url + "/session/check", headers={"X-Session-Token": token}).ok:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_oauth_check_accepts_tokens_the_provider_issued(
    provider: OAuthProvider, oauth_client: Client
) -> None:
    app = create_data_api(DataApiSettings(oauth_token_validator=provider.is_valid_access_token))
    token = provider.issue_token(oauth_client.client_id)["access_token"]
    with serve(app) as base_url:
        assert get(base_url + "/oauth/check", headers={"Authorization": f"Bearer {token}"}).ok
        provider.expire_access_tokens()
        expired = get(base_url + "/oauth/check", headers={"Authorization": f"Bearer {token}"})
        assert expired.status_code == 401

        get_data_api(app).register_oauth_token("registered")
        assert get(base_url + "/oauth/check", headers={"Authorization": "Bearer registered"}).ok


def test_streams_answer_a_first_page_or_403_or_404(data_url: str) -> None:
    headers = {"Authorization": "Bearer bearer-token"}
    contacts = get(data_url + "/bearer/streams/contacts", headers=headers)
    assert [record["id"] for record in contacts.json()["results"]] == ["1", "2"]
    assert get(data_url + "/streams/deals", headers=headers).json()["results"][0]["id"] == "10"
    assert get(data_url + "/bearer/streams/secret_stuff", headers=headers).status_code == 403
    assert get(data_url + "/bearer/streams/gone", headers=headers).status_code == 404
    assert get(data_url + "/bearer/streams/contacts").status_code == 401
    assert get(data_url + "/streams/secret_stuff").status_code == 401
    assert get(data_url + "/public/streams/contacts").ok


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("server_error", 500, "application/json"),
        ("rate_limited", 429, "application/json"),
        ("html", 200, "text/html"),
        ("truncated_json", 200, "application/json"),
    ],
)
def test_data_api_faults(
    data_api: DataApi, data_url: str, fault: str, status: int, content_type: str
) -> None:
    data_api.fail_next_requests(fault)
    answer = get(data_url + "/public/check")
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith(content_type)
    if fault == "rate_limited":
        assert answer.headers["Retry-After"] == "1"
    if fault in ("html", "truncated_json"):
        with pytest.raises(requests.JSONDecodeError):
            answer.json()
    assert get(data_url + "/public/check").json() == {"ok": True, "scheme": "public"}


def test_data_api_fault_limited_to_a_path_and_slow(data_api: DataApi, data_url: str) -> None:
    data_api.fail_next_requests("server_error", path_prefix="/public/streams/")
    assert get(data_url + "/public/check").ok
    assert get(data_url + "/public/streams/contacts").status_code == 500

    data_api.fail_next_requests("slow", delay=0.2)
    started = time.monotonic()
    assert get(data_url + "/public/check").ok
    assert time.monotonic() - started >= 0.2
    assert data_api.requests == {"/public/check": 2, "/public/streams/contacts": 1}
