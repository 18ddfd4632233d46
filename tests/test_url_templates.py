"""Property values cannot redirect outbound calls (issue 20): each value a card's URL template
takes is escaped for the part of the URL it lands in (app/connectors/urls.py), and the credential
header never reaches a place the card did not name.

The end-to-end tests run the connection check against a real server on 127.0.0.1 that records
every request it receives, and a second one the injections try to reach instead. The cards
(tests/report_cards/test.url-templates.json, test.url-template-issue.json) name hosts under
``tenant.example``; the only stand-in is name resolution, which maps those names to 127.0.0.1
(no real exchange can give a test a DNS zone).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask, jsonify, request

from app.catalog import Catalog
from app.connectors.context import context_of
from app.connectors.errors import AuthConfigurationError
from app.connectors.http import request_arguments
from app.connectors.urls import UrlValueRefused, render_url, url_problems

from .servers.threaded import serve
from .test_discovery import run_jobs
from .test_service_basics import assert_error

CARD = "test.url-templates"  # http://{{subdomain}}.tenant.example:{{port}}/api + /check/{{segment}}?tag={{tag}}
ISSUE_CARD = "test.url-template-issue"  # the issue's http://{{ properties.subdomain }}.tenant.example/api
TENANT = "tenant.example"

# What the outside run tried, in every position. "{other}" is the decoy server's port.
INJECTIONS = [
    "/", "a/b", "?", "a?x=1", "#", "a#b", "@", "user@127.0.0.1", ":80", "a:{other}", "..", ".",
    "%2f", "%2F..%2F", "%2e%2e", "%252f", "%25252e", "a b", " a", "a\tb", "a\r\nX-Injected: 1", "a\nb", "a\x00b",
    "\u0430cme",  # Cyrillic 'а'
    "ex\uff0eample",  # full-width dot
    "xn--80ak6aa92e", "a\\b", "a&tag=evil", "a;b=c", "evil.example", "127.0.0.1",
    "127.0.0.1:{other}/ssrf?x=", "[::1]", "\u2024", "a\u200bb",
]


@dataclass
class Recorder:
    """A server on 127.0.0.1 that answers 200 to everything and keeps what it was sent."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def app(self) -> Flask:
        application = Flask("recorder")

        @application.before_request  # before routing: every path is answered, newlines included
        def record():  # type: ignore[no-untyped-def]
            self.seen.append({"host": request.headers.get("Host"), "raw": request.environ.get("RAW_URI")
                              or request.environ.get("REQUEST_URI"), "query": request.query_string.decode(),
                              "api_key": request.headers.get("X-Api-Key")})
            return jsonify(results=[])

        return application


@pytest.fixture(scope="module")
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    named, decoy = Recorder(), Recorder()
    with serve(named.app()) as named_url, serve(decoy.app()) as decoy_url:
        named.port, decoy.port = urlsplit(named_url).port or 0, urlsplit(decoy_url).port or 0
        yield named, decoy


@pytest.fixture(autouse=True)
def tenant_names_resolve_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        if isinstance(host, str) and host.lower().rstrip(".").endswith("." + TENANT):
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _forget(recorders: tuple[Recorder, Recorder]) -> None:
    for recorder in recorders:
        recorder.seen.clear()


def _properties(named: Recorder, **values: str) -> dict[str, str]:
    return {"subdomain": "acme", "port": str(named.port), "segment": "items", "tag": "t1",
            "api_key": "key-" + secrets.token_hex(8), **values}


def _check(app, client, account, properties: dict[str, str], card: str = CARD):  # type: ignore[no-untyped-def]
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": card, "display_name": "URL " + secrets.token_hex(3), "properties": properties})
    if response.status_code == 201:
        run_jobs(app)
    return response


def _refused(response, value: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The error of a refused save: a 422, or for a NUL the 400 every string with one gets."""
    if "\x00" in value:
        return assert_error(response, 400, "malformed_request")
    return assert_error(response, 422, "invalid_properties")


def _injected(value: str, decoy: Recorder) -> str:
    return value.replace("{other}", str(decoy.port))


# -- end to end: what the recording server receives ----------------------------------------------


def test_the_issues_reproduction_is_refused_and_nothing_is_sent(app, client, account, recorders):
    named, decoy = recorders
    value = f"127.0.0.1:{decoy.port}/ssrf?x="
    response = _check(app, client, account, {"subdomain": value, "api_key": "key-" + secrets.token_hex(8)},
                      ISSUE_CARD)
    error = assert_error(response, 422, "invalid_properties")
    assert error["details"][0]["field"] == "properties.subdomain"
    assert "one DNS label" in error["details"][0]["reason"] and value not in error["message"]
    assert decoy.seen == [] and named.seen == []


def test_a_plain_value_in_each_position_reaches_the_named_place(app, client, account, recorders):
    named, decoy = recorders
    properties = _properties(named)
    response = _check(app, client, account, properties)
    assert response.status_code == 201, response.get_json()
    assert named.seen == [{"host": f"acme.{TENANT}:{named.port}", "raw": "/api/check/items?tag=t1",
                           "query": "tag=t1", "api_key": properties["api_key"]}]
    source = client.get(f"/v4/sources/{response.get_json()['id']}", headers=account.headers).get_json()
    assert source["report_card"].get("setup_error") is None, source["report_card"]
    assert decoy.seen == []


@pytest.mark.parametrize("raw", INJECTIONS)
def test_an_injection_in_the_host_is_422_naming_the_property_and_sends_nothing(app, client, account, recorders,
                                                                               raw):
    named, decoy = recorders
    value = _injected(raw, decoy)
    error = _refused(_check(app, client, account, _properties(named, subdomain=value)), value)
    assert error["details"][0]["field"] == "properties.subdomain", error
    assert named.seen == [] and decoy.seen == []


@pytest.mark.parametrize("raw", [*INJECTIONS, "65536", "0", "-1", "1e3", "\uff18\uff10"])
def test_anything_but_a_port_number_in_the_port_is_422(app, client, account, recorders, raw):
    named, decoy = recorders
    value = _injected(raw, decoy)
    error = _refused(_check(app, client, account, _properties(named, port=value)), value)
    assert error["details"][0]["field"] == "properties.port", error
    assert named.seen == [] and decoy.seen == []


@pytest.mark.parametrize("position", ["segment", "tag"])
@pytest.mark.parametrize("raw", INJECTIONS)
def test_an_injection_in_the_path_or_query_stays_there(app, client, account, recorders, position, raw):
    """The value arrives percent-encoded in its segment or query value, at the named host and path;
    or, where no encoding can make it harmless (a whole segment '.' or '..', a NUL the property
    rules refuse), the save is a 422 naming the property and nothing is sent."""
    named, decoy = recorders
    value = _injected(raw, decoy)
    properties = _properties(named, **{position: value})
    response = _check(app, client, account, properties)
    assert decoy.seen == []
    if response.status_code in (400, 422):
        assert _refused(response, value)["details"][0]["field"] == f"properties.{position}"
        assert named.seen == [] and (value in (".", "..") and position == "segment" or "\x00" in value)
        return
    assert response.status_code == 201, response.get_json()
    [seen] = named.seen
    assert seen["host"] == f"acme.{TENANT}:{named.port}" and seen["api_key"] == properties["api_key"]
    path, _, query = seen["raw"].partition("?")
    segment = value if position == "segment" else "items"
    tag = value if position == "tag" else "t1"
    assert path == "/api/check/" + quote(segment, safe="")
    assert parse_qs(query, keep_blank_values=True) == {"tag": [tag]}


# -- the shipped cards whose URLs take properties ------------------------------------------------


@pytest.mark.parametrize(("card_type", "name"), [("platform.shopify", "shop"), ("platform.zendesk", "subdomain")])
@pytest.mark.parametrize("raw", INJECTIONS)
def test_shipped_cards_refuse_an_injected_host_label(app, card_type, name, raw):
    card = _catalog(app).get(card_type)
    problems = url_problems(card, {name: _injected(raw, Recorder())})
    assert [p.field for p in problems] == [f"properties.{name}"]


@pytest.mark.parametrize(("card_type", "name", "host"), [("platform.shopify", "shop", "acme.myshopify.com"),
                                                         ("platform.zendesk", "subdomain", "acme.zendesk.com")])
def test_shipped_cards_take_a_plain_label(app, card_type, name, host):
    card = _catalog(app).get(card_type)
    assert url_problems(card, {name: "acme"}) == []
    assert card.oauth is not None
    assert urlsplit(render_url(card.oauth.token_url, {"properties": {name: "acme"}})).hostname == host


def test_the_oauth_initiate_names_the_refused_input(client, account):
    response = client.post("/v4/oauth/initiate", headers=account.headers, json={
        "source_type": "platform.zendesk", "redirect_url": "https://app.example/done",
        "oauth_input_configuration": {"subdomain": "evil.example#"}})
    error = assert_error(response, 422, "invalid_input")
    assert error["details"][0]["field"] == "oauth_input_configuration.subdomain", error


def _catalog(app: Flask) -> Catalog:
    catalog: Catalog = app.extensions["connect.catalog"]
    return catalog


# -- the rule itself ------------------------------------------------------------------------------


def _render(template: str, value: str) -> str:
    return render_url(template, {"properties": {"v": value}})


@pytest.mark.parametrize("raw", INJECTIONS)
def test_a_host_label_takes_one_dns_label_only(raw):
    with pytest.raises(UrlValueRefused, match="host|user info"):
        _render("https://{{ properties.v }}.tenant.example/api", _injected(raw, Recorder()))


@pytest.mark.parametrize("value", ["api.example.com", "127.0.0.1", "::1", "connect.squareup.com"])
def test_a_whole_host_takes_a_host_name_or_address(value):
    host = urlsplit(_render("https://{{ properties.v }}/x", value)).hostname
    assert host == value


@pytest.mark.parametrize("value", ["evil.example#", "a/b", "a@b", "h:1", "\u0430pi.example", "a\uff0eb", "xn--p1ai",
                                   "a..b", "", "a b"])
def test_a_whole_host_refuses_anything_else(value):
    with pytest.raises(UrlValueRefused, match="host|user info"):
        _render("https://{{ properties.v }}/x", value)


@pytest.mark.parametrize("value", ["http://127.0.0.1:5000", "https://api.example.com/v2"])
def test_a_whole_url_value_is_an_http_url_without_query_or_user_info(value):
    assert _render("{{ properties.v }}/check", value) == value + "/check"


@pytest.mark.parametrize("value", ["ftp://h.example", "javascript:alert(1)", "//h.example", "h.example",
                                   "http://u:p@h.example", "http://h.example?x=", "http://h.example#",
                                   "http://h.example:99999", "http://\u0430.example", "http://h.example/\r\n",
                                   "http://xn--80ak6aa92e.com"])
def test_a_whole_url_value_refuses_anything_else(value):
    with pytest.raises(UrlValueRefused):
        _render("{{ properties.v }}/check", value)


def test_literal_expressions_of_the_card_may_hold_a_host():
    # Square's cards choose between two hosts in the template itself.
    template = ("https://{{ 'connect.squareupsandbox.com' if properties.sandbox == 'true' "
                "else 'connect.squareup.com' }}/oauth2/token")
    assert render_url(template, {"properties": {"sandbox": "true"}}) == \
        "https://connect.squareupsandbox.com/oauth2/token"


def test_at_check_time_a_refused_value_is_a_configuration_error(app):
    """A value stored before this rule (or set by a path that does not judge it) fails the check
    with a message naming the field, and no request is built."""
    card = _catalog(app).get(CARD)
    assert card.api is not None
    context = context_of(card, {"subdomain": "evil.example#", "port": "80", "api_key": "k"}, 1, 1, "s")
    with pytest.raises(AuthConfigurationError, match=r"api\.base_url: a value in the host"):
        request_arguments(card, card.api.check, context)


def test_an_update_is_judged_the_same_way(app, client, account, recorders):
    named, decoy = recorders
    created = _check(app, client, account, _properties(named))
    assert created.status_code == 201
    named.seen.clear()
    response = client.put(f"/v4/sources/{created.get_json()['id']}", headers=account.headers,
                          json={"properties": {"subdomain": f"127.0.0.1:{decoy.port}/ssrf?x="}})
    error = assert_error(response, 422, "invalid_properties")
    assert error["details"][0]["field"] == "properties.subdomain"
    run_jobs(app)
    assert named.seen == [] and decoy.seen == []
