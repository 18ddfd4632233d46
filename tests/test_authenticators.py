"""Each authenticator against the real data API (right credentials pass, wrong ones are refused),
OAuth 2 grants against the real test provider, and the pure pieces: injection into each place,
expiry in every declared shape, durations, failure classification."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import requests
from requests.models import PreparedRequest

from app import db
from app.catalog import get_catalog
from app.connectors.authenticators import (
    BEARER,
    DEFAULT_EXPIRES_IN,
    BasicAuth,
    Injection,
    OAuth2Grant,
    classify_failure,
    parse_duration,
    retry_after_seconds,
)
from app.connectors.context import rendered, template_context
from app.connectors.errors import AuthConfigurationError, CredentialsRejected
from app.connectors.models import SESSION_TOKEN
from app.crypto import get_keyring
from app.models import Source

from .conftest import TESTS
from .connectors_support import (  # noqa: F401  (fixtures)
    BASIC_CLIENT,
    POST_CLIENT,
    Servers,
    _default_server_behaviour,
    call_api,
    create_source,
    event_types,
    running_servers,
    servers,
    set_token_times,
    stored_properties,
    token_row,
)

# --- static credentials against the data API ----------------------------------------------------


def test_none_reaches_a_public_api(client, app, account, servers):
    source_id = create_source(client, account, "test.auth-none", {"api_url": servers.api_url})
    response = call_api(app, source_id)
    assert response.status_code == 200 and response.json()["scheme"] == "public"
    assert "authorization" not in servers.data_api.last_request.header_names


@pytest.mark.parametrize("password, expected", [("pass", 200), ("wrong", 401)])
def test_basic_sends_username_and_password(client, app, account, servers, password, expected):
    source_id = create_source(client, account, "test.auth-basic",
                              {"api_url": servers.api_url, "username": "user", "password": password})
    assert call_api(app, source_id).status_code == expected


def test_basic_allows_an_empty_password(client, app, account, servers):
    # The card renders an absent password as "" (the service refuses an empty property value).
    servers.data_api.settings.password = ""
    source_id = create_source(client, account, "test.auth-basic", {"api_url": servers.api_url, "username": "user"})
    assert call_api(app, source_id).status_code == 200
    servers.data_api.settings.password = "pass"
    assert call_api(app, source_id).status_code == 401


def test_basic_with_an_api_key_as_username_and_no_password(client, app, account, servers):
    """Chargebee's way (issue 13): the card names an optional password the user leaves out. It
    renders as empty and the request is sent as ``key:``, not refused as a configuration error."""
    api_key = "live_" + secrets.token_hex(12)
    servers.data_api.settings.username, servers.data_api.settings.password = api_key, ""
    source_id = create_source(client, account, "test.auth-basic-api-key",
                              {"api_url": servers.api_url, "api_key": api_key})
    before = servers.data_api.requests["/basic/check"]
    assert call_api(app, source_id).status_code == 200
    assert servers.data_api.requests["/basic/check"] == before + 1
    # A password given later is sent, and the API's own check then refuses the wrong pair.
    assert client.put(f"/v4/sources/{source_id}", headers=account.headers,
                      json={"properties": {"password": "not-empty"}}).status_code == 200
    assert call_api(app, source_id).status_code == 401


def test_optional_properties_left_out_are_empty_but_not_defined(client, app, account, servers):
    """What a template sees of a property the source has not provided: an optional one renders as
    "" and is not ``defined`` (so ``default`` still applies); a required one is an error."""
    source_id = create_source(client, account, "test.auth-basic-api-key",
                              {"api_url": servers.api_url, "api_key": "k-" + secrets.token_hex(8)})
    with app.app_context():
        source = db.session().get(Source, source_id)
        context = template_context(get_keyring(), source, get_catalog().get(source.type))
    assert rendered({"password": "{{ properties.password }}",
                     "region": "{{ properties.region | default('us') }}",
                     "said": "{% if properties.region is defined %}given{% else %}not given{% endif %}",
                     "joined": "{{ properties.api_url ~ properties.region }}"}, context, "test") == {
        "password": "", "region": "us", "said": "not given", "joined": servers.api_url}
    with pytest.raises(AuthConfigurationError, match="region"):
        rendered("{{ properties.region.name }}", context, "test")  # nothing to look into
    with pytest.raises(AuthConfigurationError, match="nowhere"):
        rendered("{{ properties.nowhere }}", context, "test")  # not a property of the card
    with app.app_context():
        source.properties = {k: v for k, v in source.properties.items() if k != "api_url"}
        context = template_context(get_keyring(), source, get_catalog().get(source.type))
    with pytest.raises(AuthConfigurationError, match="api_url"):
        rendered("{{ properties.api_url }}", context, "test")  # required: no request without it


@pytest.mark.parametrize("token, expected", [("bearer-token", 200), ("other-token", 401)])
def test_bearer_sends_the_token(client, app, account, servers, token, expected):
    source_id = create_source(client, account, "test.auth-bearer", {"api_url": servers.api_url, "api_token": token})
    assert call_api(app, source_id).status_code == expected


@pytest.mark.parametrize("source_type, place", [
    ("test.auth-apikey-header", "header_names"),
    ("test.auth-apikey-query", "query_keys"),
    ("test.auth-apikey-form", "form_keys"),
    ("test.auth-apikey-json", "json_keys"),
])
def test_api_key_goes_where_the_card_says(client, app, account, servers, source_type, place):
    good = create_source(client, account, source_type, {"api_url": servers.api_url, "api_key": "api-key"})
    bad = create_source(client, account, source_type, {"api_url": servers.api_url, "api_key": "not-the-key"})
    assert call_api(app, good).status_code == 200
    record = servers.data_api.last_request
    expected = "x-api-key" if place == "header_names" else "api_key"
    assert expected in getattr(record, place)
    if place != "header_names":
        # The request's own parameters or body fields are kept next to the key.
        assert "probe" in getattr(record, place)
    assert call_api(app, bad).status_code == 401


def test_api_key_header_with_a_prefix(client, app, account, servers):
    servers.data_api.settings.api_key = "Token k-123456"
    with_prefix = create_source(client, account, "test.auth-apikey-header",
                                {"api_url": servers.api_url, "api_key": "k-123456", "key_prefix": "Token "})
    without = create_source(client, account, "test.auth-apikey-header",
                            {"api_url": servers.api_url, "api_key": "k-123456"})
    assert call_api(app, with_prefix).status_code == 200
    assert call_api(app, without).status_code == 401


def test_a_stream_request_uses_the_same_authenticator(client, app, account, servers):
    source_id = create_source(client, account, "test.auth-bearer",
                              {"api_url": servers.api_url, "api_token": "bearer-token"})
    response = call_api(app, source_id, stream="contacts")
    assert response.status_code == 200 and response.json()["results"][0]["id"] == "1"


def test_a_missing_credential_property_is_a_configuration_error(client, app, account, servers):
    source_id = create_source(client, account, "test.auth-basic", {"api_url": servers.api_url})
    before = sum(servers.data_api.requests.values())
    with pytest.raises(AuthConfigurationError, match="username"):
        call_api(app, source_id)
    assert sum(servers.data_api.requests.values()) == before


# --- session tokens -----------------------------------------------------------------------------

SESSION = {"username": "session-user", "password": "session-pass"}


def test_a_session_token_with_an_expiration_is_reused_until_it_passes(client, app, account, servers):
    source_id = create_source(client, account, "test.session-cached", {"api_url": servers.api_url, **SESSION})
    logins = servers.data_api.session_logins
    for _ in range(3):
        assert call_api(app, source_id).status_code == 200
    assert servers.data_api.session_logins == logins + 1
    row = token_row(app, source_id, SESSION_TOKEN)
    assert 595 <= (row.expires_at - row.refreshed_at).total_seconds() <= 600  # PT10M from the card

    now = datetime.now(UTC)
    set_token_times(app, source_id, now - timedelta(seconds=1), now - timedelta(minutes=10), SESSION_TOKEN)
    assert call_api(app, source_id).status_code == 200
    assert servers.data_api.session_logins == logins + 2
    assert event_types(app, source_id).count("token_refreshed") == 2


def test_a_session_token_without_an_expiration_means_a_login_per_request(client, app, account, servers):
    source_id = create_source(client, account, "test.session-per-request", {"api_url": servers.api_url, **SESSION})
    logins = servers.data_api.session_logins
    for _ in range(3):
        assert call_api(app, source_id).status_code == 200
    assert servers.data_api.session_logins == logins + 3
    assert "x-session-token" in servers.data_api.last_request.header_names
    assert token_row(app, source_id, SESSION_TOKEN) is None


def test_a_session_ended_by_the_api_is_renewed_once(client, app, account, servers):
    source_id = create_source(client, account, "test.session-cached", {"api_url": servers.api_url, **SESSION})
    assert call_api(app, source_id).status_code == 200
    servers.data_api.expire_session_tokens()  # our cache still believes in it
    logins = servers.data_api.session_logins
    assert call_api(app, source_id).status_code == 200
    assert servers.data_api.session_logins == logins + 1


def test_a_login_with_its_own_basic_auth(client, app, account, servers):
    servers.data_api.settings.session_login_via = "basic"
    source_id = create_source(client, account, "test.session-basic-login", {"api_url": servers.api_url, **SESSION})
    assert call_api(app, source_id).status_code == 200


def test_a_refused_login_breaks_the_source_and_says_why(client, app, account, servers):
    source_id = create_source(client, account, "test.session-per-request",
                              {"api_url": servers.api_url, "username": "session-user", "password": "wrong"})
    with pytest.raises(CredentialsRejected):
        call_api(app, source_id)
    body = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert body["setup_state"] == "broken"
    assert body["report_card"]["setup_error"]["status"] == 401
    assert "refresh_failed" in event_types(app, source_id)


# --- OAuth 2 ------------------------------------------------------------------------------------


def test_oauth2_refresh_token_grant_reaches_the_api(client, app, account, servers):
    source_id = create_source(client, account, "test.oauth2-refresh", servers.oauth_properties())
    calls = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert call_api(app, source_id, stream="contacts").status_code == 200
    assert servers.provider.token_requests == calls + 1
    sent = servers.provider.last_token_request
    assert sent.grant_type == "refresh_token" and sent.client_auth == "client_secret_post"


@pytest.mark.parametrize("source_type, content_type", [
    ("test.oauth2-refresh", "application/x-www-form-urlencoded"),
    ("test.oauth2-refresh-json", "application/json"),
])
def test_oauth2_token_requests_are_form_or_json_encoded_as_the_card_says(
        client, app, account, servers, source_type, content_type):
    """auth.token_request_encoding (issue 13): "form" by default, "json" for providers that take
    one JSON object, as Square's ObtainToken does. The provider here takes only its own encoding."""
    servers.provider.settings.rotate_refresh_tokens = True
    servers.provider.settings.token_request_encoding = "json" if "json" in content_type else "form"
    source_id = create_source(client, account, source_type, servers.oauth_properties())
    sent_token = stored_properties(app, source_id)["refresh_token"]
    assert call_api(app, source_id).status_code == 200
    sent = servers.provider.last_token_request
    assert sent.content_type.split(";")[0] == content_type
    assert sent.grant_type == "refresh_token" and sent.client_auth == "client_secret_post"
    assert sent.form["refresh_token"] == sent_token and sent.form["client_id"] == POST_CLIENT
    # The rotated refresh token came back and was kept, whatever the encoding.
    assert stored_properties(app, source_id)["refresh_token"] == servers.provider.last_refresh_token

    # The other encoding is refused by this provider: the card's choice is what made it work.
    servers.provider.settings.token_request_encoding = "form" if "json" in content_type else "json"
    other = create_source(client, account, source_type, servers.oauth_properties())
    with pytest.raises(CredentialsRejected) as refused:
        call_api(app, other)
    assert refused.value.reason["error"] == "invalid_request"


def test_a_token_request_encoding_the_card_cannot_have_is_refused_at_load(tmp_path):
    from app.catalog.loader import check_paths

    document = json.loads((TESTS / "report_cards" / "test.oauth2-refresh-json.json").read_text())
    document["auth"]["token_request_encoding"] = "xml"
    (tmp_path / "card.json").write_text(json.dumps(document))
    _cards, problems = check_paths([tmp_path])
    assert [p.json_path for p in problems] == ["$.auth.token_request_encoding"]


def test_oauth2_client_secret_basic_and_scopes(client, app, account, servers):
    properties = servers.oauth_properties(BASIC_CLIENT, scope="contacts.read deals.read")
    source_id = create_source(client, account, "test.oauth2-refresh-basic", properties)
    assert call_api(app, source_id).status_code == 200
    sent = servers.provider.last_token_request
    assert sent.client_auth == "client_secret_basic" and sent.basic_client_id == BASIC_CLIENT
    assert "client_secret" not in sent.fields and sent.form["scope"] == "contacts.read deals.read"


def test_oauth2_client_credentials_grant(client, app, account, servers):
    properties = servers.oauth_properties(BASIC_CLIENT)
    del properties["refresh_token"]
    source_id = create_source(client, account, "test.oauth2-client-credentials", properties)
    assert call_api(app, source_id).status_code == 200
    sent = servers.provider.last_token_request
    assert sent.grant_type == "client_credentials" and sent.form["scope"] == "contacts.read"
    assert sent.client_auth == "client_secret_basic"
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests_by_grant["client_credentials"] >= 1


def test_oauth2_wrong_client_secret_is_refused(client, app, account, servers):
    properties = {**servers.oauth_properties(), "client_secret": "not-the-secret"}
    source_id = create_source(client, account, "test.oauth2-refresh", properties)
    with pytest.raises(CredentialsRejected) as raised:
        call_api(app, source_id)
    assert raised.value.reason["error"] == "invalid_client"


def test_oauth2_token_refused_by_the_api_is_refreshed_once(client, app, account, servers):
    source_id = create_source(client, account, "test.oauth2-refresh", servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    servers.provider.expire_access_tokens()  # dead at the provider, fresh in our cache
    calls = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests == calls + 1


def _expiry_seconds(app, source_id):
    row = token_row(app, source_id)
    return (row.expires_at - row.refreshed_at).total_seconds()


def test_expiry_in_seconds(client, app, account, servers):
    servers.provider.settings.access_token_lifetime = 1800
    source_id = create_source(client, account, "test.oauth2-refresh", servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    assert 1795 <= _expiry_seconds(app, source_id) <= 1800


def test_expiry_in_milliseconds_under_custom_field_names(client, app, account, servers):
    servers.provider.settings.extra_token_fields = {"data_token": "custom-access-token-1", "expires_ms": 7_200_000}
    servers.data_api.register_oauth_token("custom-access-token-1")
    source_id = create_source(client, account, "test.oauth2-custom-fields", servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    assert 7195 <= _expiry_seconds(app, source_id) <= 7200


def test_expiry_as_an_absolute_date(client, app, account, servers):
    servers.provider.settings.access_token_lifetime = 5400
    servers.provider.fail_next_token_requests("expires_at_absolute", None)
    source_id = create_source(client, account, "test.oauth2-absolute-expiry", servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    assert 5390 <= _expiry_seconds(app, source_id) <= 5400


@pytest.mark.parametrize("source_type, lifetime", [
    ("test.oauth2-refresh", DEFAULT_EXPIRES_IN), ("test.oauth2-default-lifetime", 900)])
def test_missing_expiry_takes_the_default_lifetime(client, app, account, servers, source_type, lifetime):
    servers.provider.fail_next_token_requests("no_expires_in", None)
    source_id = create_source(client, account, source_type, servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    assert lifetime - 5 <= _expiry_seconds(app, source_id) <= lifetime


def test_rotation_is_written_back_even_when_the_card_does_not_declare_it(client, app, account, servers):
    servers.provider.settings.rotate_refresh_tokens = True
    source_id = create_source(client, account, "test.oauth2-refresh", servers.oauth_properties())
    assert call_api(app, source_id).status_code == 200
    assert stored_properties(app, source_id)["refresh_token"] == servers.provider.last_refresh_token
    assert "refresh_token_rotated" in event_types(app, source_id)


# --- pure pieces --------------------------------------------------------------------------------


def _prepared(method="POST", url="https://api.example.com/x?a=1", **kwargs) -> PreparedRequest:
    return requests.Request(method, url, **kwargs).prepare()


def test_injection_into_each_place_keeps_what_was_there():
    header = _prepared()
    Injection("header", "X-Key", "Token ").apply(header, "k1")
    assert header.headers["X-Key"] == "Token k1"

    query = _prepared()
    Injection("request_parameter", "key", "").apply(query, "k 2")
    assert query.url == "https://api.example.com/x?a=1&key=k+2"

    form = _prepared(data={"probe": "1"})
    Injection("body_data", "key", "").apply(form, "k3")
    assert form.body == "probe=1&key=k3"
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"

    body = _prepared(json={"probe": True})
    Injection("body_json", "key", "").apply(body, "k4")
    assert json.loads(body.body) == {"probe": True, "key": "k4"}

    empty = _prepared(method="GET")
    Injection("body_json", "key", "").apply(empty, "k5")
    assert json.loads(empty.body) == {"key": "k5"} and empty.headers["Content-Type"] == "application/json"


def test_injection_refuses_a_body_of_another_kind():
    with pytest.raises(AuthConfigurationError):
        Injection("body_json", "key", "").apply(_prepared(data={"a": "1"}), "k")
    with pytest.raises(AuthConfigurationError):
        Injection("body_data", "key", "").apply(_prepared(json={"a": 1}), "k")


def test_basic_auth_encodes_utf8_and_an_empty_password():
    request = _prepared()
    BasicAuth("zoë", "")(request)
    assert request.headers["Authorization"] == "Basic " + base64.b64encode("zoë:".encode()).decode()
    bearer = _prepared()
    BEARER.apply(bearer, "t-1")
    assert bearer.headers["Authorization"] == "Bearer t-1"


GRANT = OAuth2Grant(grant_type="refresh_token", token_url="https://p/token", client_id="c", client_secret="s",
                    refresh_token="r")
SENT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("grant, payload, expected", [
    (GRANT, {"expires_in": 60}, SENT + timedelta(seconds=60)),
    (GRANT, {"expires_in": "60"}, SENT + timedelta(seconds=60)),
    (GRANT, {}, SENT + timedelta(seconds=DEFAULT_EXPIRES_IN)),
    (GRANT, {"expires_in": "soon"}, SENT + timedelta(seconds=DEFAULT_EXPIRES_IN)),
    (OAuth2Grant(**{**GRANT.__dict__, "expires_in_unit": "milliseconds"}), {"expires_in": 90_000},
     SENT + timedelta(seconds=90)),
    (OAuth2Grant(**{**GRANT.__dict__, "expires_in_name": "exp", "expiry_date_format": "%Y-%m-%d %H:%M"}),
     {"exp": "2030-01-02 03:04"}, datetime(2030, 1, 2, 3, 4, tzinfo=UTC)),
    (OAuth2Grant(**{**GRANT.__dict__, "expires_in_name": "exp", "expiry_date_format": "%Y-%m-%dT%H:%M:%S%z"}),
     {"exp": "2030-01-02T05:04:00+02:00"}, datetime(2030, 1, 2, 3, 4, tzinfo=UTC)),
    (OAuth2Grant(**{**GRANT.__dict__, "default_expires_in": 120}), {"expires_in": None}, SENT + timedelta(seconds=120)),
])
def test_expiry_shapes(grant, payload, expected):
    assert grant.expiry(payload, SENT) == expected


def test_token_request_fields_follow_the_card():
    grant = OAuth2Grant(**{**GRANT.__dict__, "refresh_token_name": "rt", "scopes": ("a", "b"),
                           "scope_separator": ",", "token_params": (("audience", "x"),)})
    form, headers = grant.request_parts()
    assert form == {"grant_type": "refresh_token", "rt": "r", "scope": "a,b", "audience": "x",
                    "client_id": "c", "client_secret": "s"}
    basic = OAuth2Grant(**{**GRANT.__dict__, "client_id": "a:b", "client_auth": "client_secret_basic"})
    form, headers = basic.request_parts()
    assert "client_id" not in form and headers["Authorization"] == "Basic YSUzQWI6cw=="  # a%3Ab:s


def test_a_token_answer_without_access_token_still_hands_over_its_refresh_token():
    from app.connectors.errors import TokenRequestError

    with pytest.raises(TokenRequestError) as raised:
        GRANT.read_token_response({"refresh_token": "new-rt", "expires_in": 5}, SENT)
    assert raised.value.refresh_token == "new-rt" and not raised.value.permanent
    assert "new-rt" not in repr(raised.value)


def _response(status: int, body: object = None, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if body is not None else b"<html>"
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize("status, body, error, permanent", [
    (400, {"error": "invalid_grant"}, "invalid_grant", True),
    (401, {"error": "invalid_client"}, "invalid_client", True),
    (400, None, "http_400", True),
    (403, {"error": "access_denied"}, "access_denied", True),
    (429, {"error": "rate_limited"}, "rate_limited", False),
    (500, {"error": "server_error"}, "server_error", False),
    (503, None, "http_503", False),
    (302, None, "http_302", False),
    (400, {"error": "has spaces and <html>"}, "http_400", True),
])
def test_failure_classification(status, body, error, permanent):
    failure = classify_failure(_response(status, body), "the token endpoint", SENT)
    assert (failure.error, failure.permanent, failure.status) == (error, permanent, status)


def test_retry_after_as_seconds_or_a_date():
    assert retry_after_seconds(_response(429, {}, {"Retry-After": "7"}), SENT) == 7
    dated = _response(503, {}, {"Retry-After": "Tue, 01 Jan 2030 00:00:30 GMT"})
    assert retry_after_seconds(dated, SENT) == 30
    assert retry_after_seconds(_response(503, {}), SENT) is None


@pytest.mark.parametrize("text, expected", [
    ("PT10M", timedelta(minutes=10)), ("PT1H30M", timedelta(hours=1, minutes=30)),
    ("P1DT2H", timedelta(days=1, hours=2)), ("P2W", timedelta(weeks=2)), ("PT0.5S", timedelta(seconds=0.5)),
])
def test_iso8601_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "P1M", "P1Y", "1H", "PT1H2D", ""])
def test_durations_that_are_refused(text):
    with pytest.raises(AuthConfigurationError):
        parse_duration(text)
