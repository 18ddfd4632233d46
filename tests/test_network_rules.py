"""The network rules every outbound connection obeys (app/connectors/network.py): which addresses
are refused always, which only unless the operator allows them, the service's own database, and
that API calls and the token store's requests go through them (against the real test servers)."""

from __future__ import annotations

import ipaddress
import secrets

import pytest

from app.connectors.network import DestinationRefused, NetworkPolicy, OwnDatabase, parse_networks

from .connectors_support import (  # noqa: F401  (fixtures)
    _default_server_behaviour,
    create_source,
    servers,
)
from .test_discovery import run_jobs
from .test_service_basics import assert_error

LOOPBACK = parse_networks("127.0.0.0/8,::1/128")

ALWAYS = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "168.63.129.16", "0.0.0.0", "0.1.2.3",
          "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.0.192", "fe80::1", "fd00:ec2::254", "ff02::1", "::",
          "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "192.0.2.10", "2001:db8::1"]
UNLESS_ALLOWED = ["127.0.0.1", "127.9.9.9", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1",
                  "198.18.0.1", "fd12:3456::1", "::ffff:10.0.0.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", ALWAYS)
def test_metadata_link_local_and_reserved_addresses_are_refused_even_when_allowed(address):
    everything = NetworkPolicy(parse_networks("0.0.0.0/0,::/0"))
    assert "never allowed" in everything.literal_problem(address, 80)


@pytest.mark.parametrize("address", UNLESS_ALLOWED)
def test_private_and_loopback_addresses_need_the_operators_permission(address):
    assert "CONNECT_ALLOWED_SOURCE_NETWORKS" in NetworkPolicy().literal_problem(address, 80)
    network = ipaddress.ip_network(address.removeprefix("::ffff:"))
    assert NetworkPolicy((network,)).literal_problem(address, 80) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert NetworkPolicy().literal_problem(address, 443) is None


def test_the_services_own_database_is_refused_but_not_its_neighbours():
    policy = NetworkPolicy(LOOPBACK, OwnDatabase.from_url("postgresql+psycopg://svc@127.0.0.1:5432/connect"))
    assert "own database" in policy.literal_problem("127.0.0.1", 5432, "connect")
    assert "own database" in policy.literal_problem("127.0.0.2", 5432, "connect")  # the same host
    assert "own database" in policy.literal_problem("::1", 5432, "connect")
    assert "own database" in policy.literal_problem("127.0.0.1", 5432)  # HTTP to the database's port
    assert policy.literal_problem("127.0.0.1", 5432, "a_source_db") is None
    assert policy.literal_problem("127.0.0.1", 5433, "connect") is None
    with pytest.raises(DestinationRefused, match="own database"):
        policy.resolve("localhost", 5432, "connect")
    named = NetworkPolicy(LOOPBACK, OwnDatabase.from_url("postgresql+psycopg://svc@localhost/connect"))
    assert "own database" in named.literal_problem("127.0.0.1", 5432, "connect")
    assert OwnDatabase.from_url("sqlite:///instance/connect.db") is None


def test_names_are_judged_by_what_they_resolve_to():
    policy = NetworkPolicy(LOOPBACK)
    assert policy.resolve("localhost", 80) in ("127.0.0.1", "::1")
    with pytest.raises(DestinationRefused, match="resolves to 169.254.169.254"):
        policy.resolve("2852039166", 80)  # 169.254.169.254 as one number
    with pytest.raises(DestinationRefused, match="not allowed by this deployment"):
        NetworkPolicy().resolve("localhost", 80)
    with pytest.raises(DestinationRefused, match="at most 253"):
        policy.resolve("a" * 300, 80)


def test_a_bad_allowed_network_stops_start_up(make_app):
    with pytest.raises(ValueError, match="CONNECT_ALLOWED_SOURCE_NETWORKS: 'not-a-network'"):
        make_app(ALLOWED_SOURCE_NETWORKS="10.0.0.0/8,not-a-network")


def test_the_http_session_connects_only_to_vetted_addresses(servers):
    strict = NetworkPolicy()
    with strict.http_session() as http, pytest.raises(DestinationRefused, match="loopback"):
        http.get(servers.api_url + "/health", timeout=5)
    with NetworkPolicy(LOOPBACK).http_session() as http:
        answer = http.get(servers.api_url.replace("127.0.0.1", "localhost") + "/bearer/check", timeout=5)
    assert answer.status_code == 401  # reached: the data API wants a token


def _properties(servers, **overrides):
    return {"api_url": servers.api_url, "api_token": "t-" + secrets.token_hex(10), **overrides}


def test_an_api_on_a_refused_literal_is_422_and_on_a_refused_name_breaks_the_check(make_app, account, servers):
    strict = make_app(ALLOWED_SOURCE_NETWORKS="")
    client = strict.test_client()
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": "test.discovery", "display_name": "Literal", "properties": _properties(servers)})
    error = assert_error(response, 422, "invalid_properties")
    assert error["details"][0]["field"] == "properties.api_url" and "loopback" in error["message"]
    source_id = create_source(client, account, "test.discovery",
                              _properties(servers, api_url=servers.api_url.replace("127.0.0.1", "localhost")))
    run_jobs(strict)
    setup_error = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()["report_card"][
        "setup_error"]
    assert setup_error["type"] == "destination_refused" and "resolves to 127.0.0.1" in setup_error["message"]


def test_a_token_endpoint_on_a_refused_address_breaks_the_check(app, client, account, servers):
    properties = servers.oauth_properties()
    properties["token_url"] = "http://2852039166/token"
    before = servers.provider.token_requests
    source_id = create_source(client, account, "test.oauth2-refresh", properties)
    run_jobs(app)
    body = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert body["report_card"]["setup_error"]["type"] == "destination_refused"
    assert "169.254.169.254" in body["report_card"]["setup_error"]["message"]
    assert servers.provider.token_requests == before
