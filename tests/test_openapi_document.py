"""The OpenAPI document tells the truth (issue 20): no catch-all ``default`` response, the statuses
every operation shares come from one rule (app/extensions.py ``CommonResponses``), request strings
carry the service's own refusals as patterns, and ``/v4/oauth/credentials/spec`` is no source type.

tests/test_fuzz_openapi.py holds the whole service to the document; these pin the rule itself,
each against a real request where one shows it."""

from __future__ import annotations

import re

import pytest

from .test_service_basics import assert_error

METHODS = ("get", "put", "post", "delete", "patch")


def operations(spec):  # type: ignore[no-untyped-def]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


@pytest.fixture()
def spec(client):  # type: ignore[no-untyped-def]
    return client.get("/openapi.json").get_json()


def passes_back(operation) -> bool:  # type: ignore[no-untyped-def]
    """The proxy: it passes the provider's answer back, so any status and content type may come."""
    return set(operation["responses"].get("default", {}).get("content", {})) == {"*/*"}


def test_no_operation_has_a_catch_all_response_but_the_proxy(spec):
    found = [(path, method) for path, method, operation in operations(spec)
             if "default" in operation["responses"] and not passes_back(operation)]
    assert found == []
    proxied = [path for path, _method, operation in operations(spec) if passes_back(operation)]
    assert proxied and all("/proxy/" in path for path in proxied)


def test_every_operation_lists_the_statuses_it_shares(spec):
    for path, method, operation in operations(spec):
        if passes_back(operation):
            continue
        statuses = set(operation["responses"])
        secured = operation.get("security") != []
        expected = {"400"} | ({"401", "429"} if secured else set()) | ({"404"} if "{" in path else set())
        if "requestBody" in operation:
            expected |= {"413", "415", "422"}
        assert expected <= statuses, (method, path, sorted(statuses))


def test_a_dialect_keeps_its_own_error_shape(spec):
    operation = spec["paths"]["/api/v1/oauth/credentials"]["put"]
    own = operation["responses"]["422"]["content"]["application/json"]["schema"]
    assert operation["responses"]["401"]["content"]["application/json"]["schema"] == own
    assert operation["responses"]["413"]["content"]["application/json"]["schema"] == own
    assert own != {"$ref": "#/components/schemas/ApiError"}


def test_401_is_listed_and_answered_where_a_token_is_needed(client, spec):
    operation = spec["paths"]["/v4/sources"]["get"]
    assert operation["responses"]["401"] == {"$ref": "#/components/responses/UNAUTHORIZED"}
    assert_error(client.get("/v4/sources"), 401, "unauthorized")
    callback = spec["paths"]["/v4/oauth/callback"]["get"]
    assert callback["security"] == [] and "401" not in callback["responses"]


def test_403_is_listed_where_a_view_refuses_a_kind_of_caller(client, spec, account, operator):
    assert "403" in spec["paths"]["/v4/accounts"]["get"]["responses"]  # operator_only
    assert_error(client.get("/v4/accounts", headers=account.headers), 403, "access_denied")
    assert "403" in spec["paths"]["/v4/sources"]["get"]["responses"]  # account_only
    assert_error(client.get("/v4/sources", headers=operator), 403, "access_denied")
    assert "403" not in spec["paths"]["/v4/source-types"]["get"]["responses"]  # either may call it
    assert client.get("/v4/source-types", headers=operator).status_code == 200


def test_request_strings_refuse_nul_as_the_service_does(client, spec, operator):
    name = spec["components"]["schemas"]["AccountCreate"]["properties"]["name"]
    assert not re.fullmatch(name["pattern"], "a\x00b") and re.fullmatch(name["pattern"], "Ada")
    assert_error(client.post("/v4/accounts", json={"name": "a\x00b"}, headers=operator), 400, "malformed_request")
    cursor = next(p for p in spec["paths"]["/v4/sources"]["get"]["parameters"] if p["name"] == "cursor")
    assert not re.fullmatch(cursor["schema"]["pattern"], "a\x00")


def test_display_names_carry_their_rule_as_a_pattern(client, spec, operator):
    pattern = spec["components"]["schemas"]["AccountCreate"]["properties"]["name"]["pattern"]
    for refused in ("line\nbreak", "esc\x1b", "c1\x85", "bidi\u202e"):
        assert not re.fullmatch(pattern, refused), refused
        assert_error(client.post("/v4/accounts", json={"name": refused}, headers=operator), 422, "invalid_body")
    assert re.fullmatch(pattern, "Zoë & Co")


def test_options_on_the_credentials_spec_does_not_offer_delete(client, operator, spec):
    allowed = client.options("/v4/oauth/credentials/spec", headers=operator).headers["Allow"]
    assert "DELETE" not in allowed and "GET" in allowed
    assert "DELETE" in client.options("/v4/oauth/credentials/platform.hubspot", headers=operator).headers["Allow"]
    error = assert_error(client.delete("/v4/oauth/credentials/spec", headers=operator), 405, "method_not_allowed")
    assert error["message"]
    parameter = spec["paths"]["/v4/oauth/credentials/{source_type}"]["parameters"][0]
    assert parameter["schema"]["not"] == {"enum": ["spec"]}
    assert "405" in spec["paths"]["/v4/oauth/credentials/{source_type}"]["delete"]["responses"]
