"""The proxy (``/v4/sources/{id}/proxy/<path>``): calls reach the loopback data API with the
source's credentials for every authenticator, pinned to the card's base URL, bounded in size and
time, restricted as the card and the operator say, and audited without values."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .connectors_support import (  # noqa: F401  (fixtures)
    Servers,
    _default_server_behaviour,
    create_source,
    events,
    servers,
)
from .servers import ApiFault
from .test_discovery import run_jobs
from .test_execute import AUTH_TYPES, http_properties
from .test_service_basics import assert_error

INJECTED = {  # where each authenticator's credential reaches the data API (names only)
    "basic": ("header_names", "authorization"), "bearer": ("header_names", "authorization"),
    "apikey-header": ("header_names", "x-api-key"), "apikey-query": ("query_keys", "api_key"),
    "apikey-form": ("body", None), "apikey-json": ("body", None),
    "session": ("header_names", "authorization"), "oauth2": ("header_names", "authorization"),
    "oauth2-rotating": ("header_names", "authorization"),
}


def proxied_source(app, client, account, servers: Servers, auth: str = "bearer", source_type: str | None = None,
                   check: bool = True) -> int:
    source_id = create_source(client, account, source_type or f"test.execute-{auth}", http_properties(servers, auth))
    if check:
        run_jobs(app)
    return source_id


def proxy(client, account, source_id: int, path: str, method: str = "GET", **kwargs: Any):
    return client.open(f"/v4/sources/{source_id}/proxy/{path}", method=method, headers=account.headers, **kwargs)


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_the_proxy_reaches_the_api_with_the_sources_credentials(app, client, account, servers, auth):
    if auth == "oauth2-rotating":
        servers.provider.settings.rotate_refresh_tokens = True
    source_id = proxied_source(app, client, account, servers, auth)
    method = "POST" if auth in ("apikey-form", "apikey-json") else "GET"
    kwargs: dict[str, Any] = {"json": {"probe": 1}} if auth == "apikey-json" else \
        {"data": {"probe": "1"}} if auth == "apikey-form" else {}
    response = proxy(client, account, source_id, "echo/allowed/x?probe=1", method, **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)  # the data API authenticated it
    seen = response.get_json()
    assert seen["path"].endswith("/echo/allowed/x") and seen["method"] == method and "probe" in seen["query_keys"]
    place, name = INJECTED[auth]
    if name is not None:
        assert name in seen[place]
    # The caller's own token for this service never travels on; nor do the provider's cookies come back.
    if name != "authorization":
        assert "authorization" not in seen["header_names"]
    assert "Set-Cookie" not in response.headers and response.headers["X-Provider"] == "data-api"


def test_methods_bodies_and_statuses_pass_through(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        seen = proxy(client, account, source_id, "echo/allowed/thing", method, data=b"a,b\n1,2\n",
                     content_type="text/csv").get_json()
        assert seen["method"] == method and seen["body_bytes"] == 8 and seen["content_type"] == "text/csv"
    missing = proxy(client, account, source_id, "records/items/nope")
    assert missing.status_code == 404 and missing.get_json() == {"error": "not_found"}  # the provider's own body


@pytest.mark.parametrize("path", [
    "echo/allowed/../../check", "echo/allowed/%2e%2e/%2e%2e/check", "echo/allowed/..%2f..%2fcheck",
    "echo/allowed/..%2F..%2Fcheck", "echo/allowed%5c..%5ccheck", "echo/allowed\\..\\check",
    "echo/allowed/./x", "/echo/allowed/x", "echo//allowed", "http://127.0.0.1:1/x", "echo/allowed/x@evil.example",
    "echo/allowed/%40evil", "echo/allowed/%00", "echo/allowed/a%09b",
])
def test_paths_that_could_leave_the_base_url_are_refused(app, client, account, servers, path):
    source_id = proxied_source(app, client, account, servers)
    before = sum(servers.data_api.requests.values())
    for spelled in (str(source_id), f"0{source_id}"):  # the id as the client may spell it
        response = client.get(f"/v4/sources/{spelled}/proxy/{path}", headers=account.headers)
        assert response.status_code in (400, 404, 422), response.get_data(as_text=True)
        if response.status_code == 422:
            assert assert_error(response, 422, "invalid_path")["details"][0]["field"] == "path"
    assert sum(servers.data_api.requests.values()) == before  # nothing reached the API


def test_an_oversized_body_is_413(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)
    before = sum(servers.data_api.requests.values())
    assert_error(proxy(client, account, source_id, "echo/allowed/x", "POST", data=b"x" * (1_048_576 + 1),
                       content_type="application/octet-stream"), 413, "payload_too_large")
    assert sum(servers.data_api.requests.values()) == before


def test_an_answer_of_more_than_10_mb_is_refused(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)
    servers.data_api.settings.big_answer_bytes = 10 * 1024 * 1024 + 1
    assert_error(proxy(client, account, source_id, "big"), 424, "response_too_large")
    servers.data_api.settings.big_answer_bytes = 1024
    assert len(proxy(client, account, source_id, "big").get_data()) == 1024


def test_a_hanging_provider_times_out(make_app, account, servers):
    app = make_app(HTTP_TIMEOUT=1.0)
    client = app.test_client()
    source_id = proxied_source(app, client, account, servers)
    servers.data_api.fail_next_requests(ApiFault.SLOW, delay=4, path_prefix="/bearer/echo")
    started = time.monotonic()
    error = assert_error(proxy(client, account, source_id, "echo/allowed/x"), 424, "source_unavailable")
    assert error["message"] == "the API did not answer in time"
    assert time.monotonic() - started < 3.5


def test_a_401_twice_refreshes_once_and_passes_the_providers_answer_back(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers, "oauth2")
    servers.data_api.settings.oauth_token_validator = lambda token: False
    calls = servers.provider.token_requests
    response = proxy(client, account, source_id, "echo/x")
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"
    assert servers.provider.token_requests == calls + 1


def test_a_429_passes_back_with_its_retry_after(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)
    servers.data_api.settings.retry_after_seconds = 9
    servers.data_api.fail_next_requests(ApiFault.RATE_LIMITED, path_prefix="/bearer/echo")
    response = proxy(client, account, source_id, "echo/allowed/x")
    assert response.status_code == 429 and response.headers["Retry-After"] == "9"


def test_the_card_restricts_paths_and_methods_and_can_turn_the_proxy_off(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)  # test.execute-bearer allows a few paths
    assert_error(proxy(client, account, source_id, "check"), 403, "proxy_path_not_allowed")
    assert_error(proxy(client, account, source_id, "echo/allowedx"), 403, "proxy_path_not_allowed")
    off = proxied_source(app, client, account, servers, "basic", source_type="test.execute-no-proxy")
    assert_error(proxy(client, account, off, "check"), 403, "proxy_disabled")


def test_the_operator_can_turn_the_proxy_off(make_app, account, servers):
    app = make_app(PROXY_ENABLED=False)
    client = app.test_client()
    source_id = proxied_source(app, client, account, servers)
    assert_error(proxy(client, account, source_id, "echo/allowed/x"), 403, "proxy_disabled")


def test_a_source_that_has_not_passed_its_check_cannot_proxy(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers, check=False)
    assert_error(proxy(client, account, source_id, "echo/allowed/x"), 409, "not_ready")


def test_every_call_is_an_audit_event_without_values(app, client, account, servers):
    source_id = proxied_source(app, client, account, servers)
    proxy(client, account, source_id, "echo/allowed/x?token=value-in-query")
    proxy(client, account, source_id, "check")
    found = events(app, source_id, "source_proxied")
    assert [(e["method"], e["path"], e["status"]) for e in found] == [
        ("GET", "echo/allowed/x", 200), ("GET", "check", 403)]
    assert "value-in-query" not in str(found)


def test_proxy_calls_count_against_the_accounts_rate_limit(app, client, make_app, account, servers):
    source_id = proxied_source(app, client, account, servers)
    limited = make_app(RATE_LIMIT="3/minute").test_client()
    for _ in range(3):
        assert proxy(limited, account, source_id, "echo/allowed/x").status_code == 200
    assert_error(proxy(limited, account, source_id, "echo/allowed/x"), 429, "rate_limited")


def test_the_network_rules_apply_to_proxied_calls(app, client, make_app, account, servers):
    source_id = proxied_source(app, client, account, servers)
    strict = make_app(ALLOWED_SOURCE_NETWORKS="").test_client()  # loopback refused, as by default
    before = sum(servers.data_api.requests.values())
    error = assert_error(proxy(strict, account, source_id, "echo/allowed/x"), 424, "destination_refused")
    assert "127.0.0.1" in error["message"]
    assert sum(servers.data_api.requests.values()) == before


# --- the pure rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("base, url, inside", [
    ("https://api.example.com/v1", "https://api.example.com/v1/contacts?x=1", True),
    ("https://api.example.com/v1", "https://api.example.com/v1", True),
    ("https://api.example.com/v1", "https://api.example.com/v10/contacts", False),
    ("https://api.example.com/v1", "https://api.example.com/v1/../admin", False),
    ("https://api.example.com/v1", "http://api.example.com/v1/contacts", False),
    ("https://api.example.com/v1", "https://api.example.com:8443/v1/contacts", False),
    ("https://api.example.com/v1", "https://user:pw@api.example.com/v1/contacts", False),
    ("https://api.example.com/v1", "https://evil.example/v1/contacts", False),
])
def test_a_url_is_within_the_base_url_only_on_its_origin_and_under_its_path(base, url, inside):
    from app.connectors.http_records import within

    assert within(url, base) is inside


def test_pinned_url_joins_a_plain_path_and_refuses_the_rest():
    from app.errors import Invalid
    from app.execute.proxy import pinned_url

    assert pinned_url("https://api.example.com/v1/", "crm/contacts") == "https://api.example.com/v1/crm/contacts"
    for path in ("../x", "a/%2E%2E/b", "a%2Fb", "HTTPS://x", "a\\b", "a@b", "a//b"):
        with pytest.raises(Invalid):
            pinned_url("https://api.example.com/v1", path)
