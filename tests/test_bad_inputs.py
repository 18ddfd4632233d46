"""The bad-input catalogue: one table of malformed, invalid and hostile requests across the
endpoints, each with the status and error ``type`` it must get, the field its details must name,
and proof that it changed nothing: every row of every table (source properties, credential
ciphertexts, updated_at, version and config generation, events, jobs, tokens, OAuth apps) and the
GET responses of the seeded sources are byte for byte what they were before.

Decisions the table pins down (README, "Errors"):
- A JSON body with a duplicate key in any object is 400 ``malformed_request``: parsers disagree on
  which value wins (this one used to take the last silently), so a proxy, an audit log and the
  service could each read a different request.
- A body over ``CONNECT_MAX_BODY_BYTES`` (``MAX_CONTENT_LENGTH``, 1 MiB by default) is 413
  ``payload_too_large``; a body under ``/v4/`` that is not JSON is 415 ``unsupported_media_type``.
- Not I-JSON or not storable (invalid UTF-8, a BOM, lone surrogates, NUL, NaN/Infinity, a number
  too long or too large, nesting deeper than 32) is 400 ``malformed_request`` naming where.
- Names people read (``display_name``, an account's ``name``) refuse control characters and bidi
  overrides (422 ``invalid_body``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from app import db
from app.jobs.worker import Worker
from app.models import Base, Source, SourceCredential
from app.wiring import services

from .connectors_support import running_data_api
from .test_service_basics import assert_error

GA = "platform.google-analytics"
DISCOVERY = "test.discovery"
DATA_TOKEN = "bad-inputs-data-token"
OAUTH_TYPE = "platform.hubspot"
CLIENT_SECRET = "cs-" + secrets.token_hex(8)
REFRESH_TOKEN = "rt-" + secrets.token_hex(8)
PROBE = "probe-" + secrets.token_hex(6)  # a credential value a bad request submits
GA_PROPERTIES = {"start_date": "2019-03-25T00:00:00Z", "frequency_in_minutes": "60", "view_id": "123",
                 "client_id": "cid-1", "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}


@dataclass(frozen=True)
class Bad:
    label: str
    method: str
    path: str  # {source}: the GA source, {discovered}: the source with streams, {account}, {stream}
    status: int
    type: str
    field: str | None  # a field (or a prefix of one) the details must name
    json: Any = None
    raw: bytes | None = None
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    operator: bool = False


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def new_source(**extra: Any) -> dict[str, Any]:
    return {"type": GA, "display_name": "New GA", **extra}


CATALOGUE = [
    # --- POST /v4/sources: types, patterns, unknown and read-only properties ----------------------
    Bad("type not a string", "POST", "/v4/sources", 422, "invalid_body", "type",
        json={"type": 5, "display_name": "x"}),
    Bad("unknown source type", "POST", "/v4/sources", 422, "invalid_type", "type",
        json={"type": "platform.nope", "display_name": "x"}),
    Bad("missing display_name", "POST", "/v4/sources", 422, "invalid_body", "display_name", json={"type": GA}),
    Bad("display_name of 256 characters", "POST", "/v4/sources", 422, "invalid_body", "display_name",
        json=new_source(display_name="x" * 256)),
    Bad("name of 50 characters", "POST", "/v4/sources", 422, "invalid_body", "name",
        json=new_source(name="n" * 50)),
    Bad("name against the pattern", "POST", "/v4/sources", 422, "invalid_name", "name",
        json=new_source(name="Bad Name")),
    Bad("unknown body field", "POST", "/v4/sources", 422, "invalid_body", "colour",
        json=new_source(colour="blue")),
    Bad("read-only property on create", "POST", "/v4/sources", 422, "invalid_properties", "quota_user",
        json=new_source(properties={"quota_user": "me"})),
    Bad("properties not an object", "POST", "/v4/sources", 422, "invalid_body", "properties",
        json=new_source(properties=["start_date"])),
    Bad("body a JSON array", "POST", "/v4/sources", 422, "invalid_body", "body", json=[new_source()]),
    Bad("body JSON null", "POST", "/v4/sources", 422, "invalid_body", "body", raw=b"null"),
    Bad("secret_id not a string", "POST", "/v4/sources", 422, "invalid_body", "secret_id",
        json=new_source(secret_id=123)),
    Bad("unknown secret_id", "POST", "/v4/sources", 404, "not_found", "secret_id",
        json=new_source(secret_id="sid_" + "0" * 40)),
    Bad("Idempotency-Key of 256 characters", "POST", "/v4/sources", 422, "invalid_body", "Idempotency-Key",
        json=new_source(), headers={"Idempotency-Key": "k" * 256}),
    # --- the JSON layer: syntax, encoding, duplicates, numbers, depth, size, media type -----------
    Bad("broken JSON", "POST", "/v4/sources", 400, "malformed_request", "body", raw=b'{"type": "platform.'),
    Bad("duplicate key at the top", "POST", "/v4/sources", 400, "malformed_request", "body",
        raw=b'{"type": "platform.google-analytics", "display_name": "a", "display_name": "b"}'),
    Bad("duplicate key inside properties", "PUT", "/v4/sources/{source}", 400, "malformed_request", "body",
        raw=b'{"properties": {"view_id": "1", "view_id": "2"}}'),
    Bad("invalid UTF-8", "POST", "/v4/sources", 400, "malformed_request", "body",
        raw=b'{"type": "platform.google-analytics", "display_name": "\xff\xfe"}'),
    Bad("UTF-8 byte order mark", "POST", "/v4/sources", 400, "malformed_request", "body",
        raw=b'\xef\xbb\xbf{"type": "platform.google-analytics", "display_name": "x"}'),
    Bad("lone surrogate in a value", "POST", "/v4/sources", 400, "malformed_request", "display_name",
        raw=b'{"type": "platform.google-analytics", "display_name": "x\\ud800y"}'),
    Bad("lone surrogate in a property name", "PUT", "/v4/sources/{source}", 400, "malformed_request",
        "properties", raw=b'{"properties": {"view\\udfff": "1"}}'),
    Bad("NUL in display_name", "POST", "/v4/sources", 400, "malformed_request", "display_name",
        json=new_source(display_name="GA\x00admin")),
    Bad("NUL in a credential", "PUT", "/v4/sources/{source}", 400, "malformed_request",
        "properties.client_secret", json={"properties": {"client_secret": PROBE + "\x00"}}),
    Bad("NaN", "PUT", "/v4/sources/{source}", 400, "malformed_request", "properties.view_id",
        raw=b'{"properties": {"view_id": NaN}}'),
    Bad("Infinity", "PUT", "/v4/sources/{source}", 400, "malformed_request", "properties.view_id",
        raw=b'{"properties": {"view_id": -Infinity}}'),
    Bad("Infinity in a list", "PUT", "/v4/sources/{source}", 400, "malformed_request", "properties.view_id.1",
        raw=b'{"properties": {"view_id": [1, Infinity]}}'),
    Bad("number beyond a double", "PUT", "/v4/sources/{source}", 400, "malformed_request", "properties.view_id",
        raw=b'{"properties": {"view_id": 1e999}}'),
    Bad("integer of 5,000 digits", "PUT", "/v4/sources/{source}", 400, "malformed_request", "body",
        raw=b'{"properties": {"view_id": ' + b"9" * 5000 + b"}}"),
    Bad("nesting 40 deep", "PUT", "/v4/sources/{source}", 400, "malformed_request", "properties.view_id",
        json={"properties": {"view_id": nested(40)}}),
    Bad("nesting 100,000 deep", "POST", "/v4/sources", 400, "malformed_request", "body",
        raw=b"[" * 100_000 + b"]" * 100_000),
    Bad("body over 1 MiB", "POST", "/v4/sources", 413, "payload_too_large", "body",
        json=new_source(properties={"view_id": "v" * 1_100_000})),
    Bad("text/plain body", "PUT", "/v4/sources/{source}", 415, "unsupported_media_type", "Content-Type",
        raw=b'{"display_name": "renamed"}', content_type="text/plain"),
    Bad("form-encoded body", "POST", "/v4/sources", 415, "unsupported_media_type", "Content-Type",
        raw=b"type=platform.google-analytics&display_name=x", content_type="application/x-www-form-urlencoded"),
    Bad("body without a Content-Type", "POST", "/v4/sources", 415, "unsupported_media_type", "Content-Type",
        raw=b'{"type": "platform.google-analytics", "display_name": "x"}', content_type=None),
    Bad("body on a POST that takes none", "POST", "/v4/sources/{source}/discover", 415,
        "unsupported_media_type", "Content-Type", raw=b"now please", content_type="text/plain"),
    # --- unicode oddities in names people read -----------------------------------------------------
    Bad("right-to-left override in display_name", "POST", "/v4/sources", 422, "invalid_body", "display_name",
        json=new_source(display_name="invoice\u202egpj.exe")),
    Bad("bidi isolate in display_name", "PUT", "/v4/sources/{source}", 422, "invalid_body", "display_name",
        json={"display_name": "GA \u2067main\u2069"}),
    Bad("newline in display_name", "PUT", "/v4/sources/{source}", 422, "invalid_body", "display_name",
        json={"display_name": "GA\nmain"}),
    Bad("escape sequence in display_name", "PUT", "/v4/sources/{source}", 422, "invalid_body", "display_name",
        json={"display_name": "GA \x1b[31mred"}),
    Bad("display_name of 10,000 emoji", "PUT", "/v4/sources/{source}", 422, "invalid_body", "display_name",
        json={"display_name": "\U0001f600" * 10_000}),
    # --- PUT /v4/sources/{id}: property rules, read-only, timestamps, versions ---------------------
    Bad("pattern mismatch", "PUT", "/v4/sources/{source}", 422, "invalid_properties", "start_date",
        json={"properties": {"start_date": "2019-03-25"}}),
    Bad("property of the wrong JSON type", "PUT", "/v4/sources/{source}", 422, "invalid_properties", "view_id",
        json={"properties": {"view_id": 123}}),
    Bad("read-only property", "PUT", "/v4/sources/{source}", 422, "invalid_properties", "image_version",
        json={"properties": {"image_version": "2.latest"}}),
    Bad("unknown property", "PUT", "/v4/sources/{source}", 422, "invalid_properties", "colour",
        json={"properties": {"colour": "blue"}}),
    Bad("empty-string property", "PUT", "/v4/sources/{source}", 422, "invalid_properties", "view_id",
        json={"properties": {"view_id": ""}}),
    Bad("credential of the wrong type", "PUT", "/v4/sources/{source}", 422, "invalid_properties",
        "client_secret", json={"properties": {"client_secret": {"value": PROBE}}}),
    Bad("name is not updatable", "PUT", "/v4/sources/{source}", 422, "invalid_body", "name",
        json={"name": "renamed"}),
    Bad("naive paused_at", "PUT", "/v4/sources/{source}", 422, "invalid_body", "paused_at",
        json={"paused_at": "2020-01-01T00:00:00"}),
    Bad("paused_at before year 1 in UTC", "PUT", "/v4/sources/{source}", 422, "invalid_body", "paused_at",
        json={"paused_at": "0001-01-01T00:00:00+14:00"}),
    Bad("paused_at not a timestamp", "PUT", "/v4/sources/{source}", 422, "invalid_body", "paused_at",
        json={"paused_at": "yesterday"}),
    Bad("stale If-Match", "PUT", "/v4/sources/{source}", 409, "stale_version", "If-Match",
        json={"display_name": "renamed"}, headers={"If-Match": '"0-stale"'}),
    Bad("source id beyond BIGINT", "PUT", "/v4/sources/99999999999999999999999", 404, "not_found", None,
        json={"display_name": "renamed"}),
    Bad("source id 0", "DELETE", "/v4/sources/0", 404, "not_found", None),
    Bad("source id negative", "DELETE", "/v4/sources/-1", 404, "not_found", None),
    # Ids are ASCII digits: int() and werkzeug's \d also read other scripts' digits.
    Bad("source id in full-width digits", "DELETE", "/v4/sources/{source_fullwidth}", 404, "not_found", None),
    Bad("source id in Arabic-Indic digits", "PUT", "/v4/sources/{source_arabic}", 404, "not_found", None,
        json={"display_name": "renamed"}),
    Bad("source id in Arabic-Indic digits, read", "GET", "/v4/sources/{source_arabic}", 404, "not_found", None),
    Bad("source id in full-width digits, discover", "POST", "/v4/sources/{source_fullwidth}/discover", 404,
        "not_found", None),
    # --- lists and query strings ------------------------------------------------------------------
    Bad("limit 0", "GET", "/v4/sources?limit=0", 422, "invalid_body", "limit"),
    Bad("limit not a number", "GET", "/v4/sources?limit=ten", 422, "invalid_body", "limit"),
    Bad("cursor not given out", "GET", "/v4/sources?cursor=zzz", 400, "malformed_request", "cursor"),
    Bad("cursor of full-width digits", "GET", "/v4/sources?cursor={cursor_fullwidth}", 400,
        "malformed_request", "cursor"),
    Bad("cursor of Arabic-Indic digits", "GET", "/v4/sources?cursor={cursor_arabic}", 400,
        "malformed_request", "cursor"),
    Bad("cursor of digits with an underscore", "GET", "/v4/sources?cursor={cursor_underscore}", 400,
        "malformed_request", "cursor"),
    Bad("cursor beyond BIGINT", "GET", "/v4/sources?cursor={cursor_huge}", 400, "malformed_request", "cursor"),
    Bad("limit in full-width digits", "GET", "/v4/sources?limit=%EF%BC%95", 422, "invalid_body", "limit"),
    Bad("limit with an underscore", "GET", "/v4/sources?limit=1_0", 422, "invalid_body", "limit"),
    Bad("unknown query parameter", "GET", "/v4/sources?limt=5", 422, "invalid_body", "limt"),
    Bad("NUL in a query parameter", "GET", "/v4/sources?cursor=a%00b", 400, "malformed_request", "cursor"),
    Bad("NUL in a path segment", "DELETE", "/v4/oauth/credentials/" + OAUTH_TYPE + "%00", 400,
        "malformed_request", "path"),
    Bad("NUL in Idempotency-Key", "POST", "/v4/sources", 400, "malformed_request", "Idempotency-Key",
        json=new_source(), headers={"Idempotency-Key": "key\x00one"}),
    Bad("unknown query parameter of the spec", "GET", "/v4/oauth/credentials/spec?source_type=" + OAUTH_TYPE
        + "&verbose=1", 422, "invalid_body", "verbose"),
    # --- streams and field selection --------------------------------------------------------------
    Bad("no streams", "PUT", "/v4/sources/{discovered}/streams/metadata", 422, "invalid_body", "streams",
        json={"streams": []}),
    Bad("unknown stream", "PUT", "/v4/sources/{discovered}/streams/metadata", 422, "invalid_selection", None,
        json={"streams": [{"tap_stream_id": "nope", "metadata": [{"breadcrumb": [], "metadata": {
            "selected": True}}]}]}),
    Bad("unknown breadcrumb", "PUT", "/v4/sources/{discovered}/streams/metadata", 422, "invalid_selection",
        None, json={"streams": [{"tap_stream_id": "{stream}", "metadata": [
            {"breadcrumb": ["properties", "nope"], "metadata": {"selected": True}}]}]}),
    Bad("breadcrumb of 11 parts", "PUT", "/v4/sources/{discovered}/streams/metadata", 422, "invalid_body",
        "streams.0.metadata.0.breadcrumb", json={"streams": [{"tap_stream_id": "{stream}", "metadata": [
            {"breadcrumb": ["properties"] * 11, "metadata": {"selected": True}}]}]}),
    Bad("metadata not an object", "PUT", "/v4/sources/{discovered}/streams/metadata", 422, "invalid_body",
        "streams.0.metadata.0.metadata", json={"streams": [{"tap_stream_id": "{stream}", "metadata": [
            {"breadcrumb": [], "metadata": ["selected"]}]}]}),
    Bad("stream id beyond BIGINT", "GET", "/v4/sources/{discovered}/streams/99999999999999999999", 404,
        "not_found", None),
    # --- accounts (operator) ----------------------------------------------------------------------
    Bad("empty account name", "POST", "/v4/accounts", 422, "invalid_body", "name", json={"name": ""},
        operator=True),
    Bad("account name of 201 characters", "POST", "/v4/accounts", 422, "invalid_body", "name",
        json={"name": "a" * 201}, operator=True),
    Bad("right-to-left override in an account name", "POST", "/v4/accounts", 422, "invalid_body", "name",
        json={"name": "Acme\u202e"}, operator=True),
    Bad("duplicate key in an account", "POST", "/v4/accounts", 400, "malformed_request", "body",
        raw=b'{"name": "Acme", "name": "Evil"}', operator=True),
    Bad("plain-http redirect allowlist", "PUT", "/v4/accounts/{account}", 422, "invalid_redirect_url",
        "redirect_url_allowlist.0", json={"redirect_url_allowlist": ["http://evil.example/cb"]}, operator=True),
    Bad("101 redirect URLs", "PUT", "/v4/accounts/{account}", 422, "invalid_body", "redirect_url_allowlist",
        json={"redirect_url_allowlist": ["https://app.example/cb"] * 101}, operator=True),
    Bad("allowlist not a list", "PUT", "/v4/accounts/{account}", 422, "invalid_body", "redirect_url_allowlist",
        json={"redirect_url_allowlist": "https://app.example/cb"}, operator=True),
    Bad("token id beyond BIGINT", "DELETE", "/v4/accounts/{account}/tokens/99999999999999999999", 404,
        "not_found", None, operator=True),
    Bad("account id in full-width digits", "PUT", "/v4/accounts/{account_fullwidth}", 404, "not_found", None,
        json={"name": "renamed"}, operator=True),
    # --- OAuth --------------------------------------------------------------------------------------
    # Beyond 64 bits the JSON layer refuses any integer, so no id field can overflow a query.
    Bad("initiate: source_id beyond BIGINT", "POST", "/v4/oauth/initiate", 400, "malformed_request",
        "source_id", json={"source_type": OAUTH_TYPE, "redirect_url": "https://app.example/cb",
                           "source_id": 2**63}),
    Bad("initiate: source_id 0", "POST", "/v4/oauth/initiate", 422, "invalid_body", "source_id",
        json={"source_type": OAUTH_TYPE, "redirect_url": "https://app.example/cb", "source_id": 0}),
    Bad("connect session: source_id of 31 digits", "POST", "/v4/connect/sessions", 400, "malformed_request",
        "source_id", json={"source_id": 10**30, "redirect_url": "https://app.example/cb"}),
    Bad("connect session: RTL override in the title", "POST", "/v4/connect/sessions", 422, "invalid_body",
        "display.title", json={"source_type": GA, "redirect_url": "https://app.example/cb",
                               "display": {"title": "Acme ‮"}}),
    Bad("initiate: source_id as a string", "POST", "/v4/oauth/initiate", 422, "invalid_body", "source_id",
        json={"source_type": OAUTH_TYPE, "redirect_url": "https://app.example/cb", "source_id": "{source}"}),
    Bad("initiate: source_id in full-width digits", "POST", "/v4/oauth/initiate", 422, "invalid_body",
        "source_id", json={"source_type": OAUTH_TYPE, "redirect_url": "https://app.example/cb",
                           "source_id": "{source_fullwidth}"}),
    Bad("connect session: source_id in Arabic-Indic digits", "POST", "/v4/connect/sessions", 422,
        "invalid_body", "source_id", json={"source_id": "{source_arabic}", "redirect_url": "https://app.example/cb"}),
    Bad("initiate: javascript redirect_url", "POST", "/v4/oauth/initiate", 422, "invalid_redirect_url",
        "redirect_url", json={"source_type": OAUTH_TYPE, "redirect_url": "javascript:alert(1)"}),
    Bad("credentials: configuration not an object", "PUT", "/v4/oauth/credentials", 422, "invalid_body",
        "configuration", json={"source_type": OAUTH_TYPE, "configuration": ["client_id"]}),
    Bad("credentials: no client_secret", "PUT", "/v4/oauth/credentials", 422, "invalid_configuration",
        "configuration.client_secret", json={"source_type": OAUTH_TYPE, "configuration": {"client_id": "x"}}),
    Bad("credentials spec without source_type", "GET", "/v4/oauth/credentials/spec", 422, "invalid_body",
        "source_type"),
    Bad("callback without state", "GET", "/v4/oauth/callback?code=abc", 400, "invalid_state", "state"),
]


# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_api():
    with running_data_api(DATA_TOKEN) as api:
        yield api


@dataclass
class Seeded:
    account: Any
    ids: dict[str, str]


def seed(app, client, account, data_api, with_streams: bool) -> Seeded:  # type: ignore[no-untyped-def]
    ga = client.post("/v4/sources", headers=account.headers, json={
        "type": GA, "display_name": "GA main", "properties": GA_PROPERTIES})
    assert ga.status_code == 201, ga.get_json()
    override = client.put("/v4/oauth/credentials", headers=account.headers, json={
        "source_type": OAUTH_TYPE, "configuration": {"client_id": "own", "client_secret": CLIENT_SECRET}})
    assert override.status_code == 200, override.get_json()
    ids = {"source": str(ga.get_json()["id"]), "account": str(account.id)}
    ids.update(other_spellings(ids["source"], ids["account"]))
    if with_streams:
        discovered = client.post("/v4/sources", headers=account.headers, json={
            "type": DISCOVERY, "display_name": "Discovered " + os.urandom(3).hex(),
            "properties": {"api_url": data_api.base_url, "api_token": DATA_TOKEN}})
        assert discovered.status_code == 201, discovered.get_json()
        ids["discovered"] = str(discovered.get_json()["id"])
        worker, deadline = Worker(app, services(app).jobs, poll_interval=0.05), time.monotonic() + 20
        while worker.run_once():
            assert time.monotonic() < deadline, "discovery did not finish"
        streams = client.get(f"/v4/sources/{ids['discovered']}/streams", headers=account.headers).get_json()
        ids["stream"] = streams[0]["tap_stream_id"]
    return Seeded(account, ids)


def other_spellings(source_id: str, account_id: str) -> dict[str, str]:
    """The seeded ids in digits int() also reads: full-width (U+FF10…) and Arabic-Indic (U+0660…),
    in paths and inside cursors (a cursor is the base64 of the id's digits)."""
    def cursor(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    fullwidth = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))
    arabic = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
    return {"source_fullwidth": source_id.translate(fullwidth), "source_arabic": source_id.translate(arabic),
            "account_fullwidth": account_id.translate(fullwidth),
            "cursor_fullwidth": cursor(source_id.translate(fullwidth)),
            "cursor_arabic": cursor(source_id.translate(arabic)),
            "cursor_underscore": cursor(source_id + "_0"), "cursor_huge": cursor(str(2**63))}


def database_state(app) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """Every row of every table, in primary key order: what "changed nothing" means."""
    with db.get_db(app).engine.connect() as connection:
        return {table.name: [tuple(row) for row in connection.execute(
            table.select().order_by(*table.primary_key.columns))] for table in Base.metadata.sorted_tables}


def stored_source(app, source_id: str) -> tuple:  # type: ignore[no-untyped-def]
    """The source row and its credential rows, named, for a readable failure."""
    with db.get_db(app).Session() as session:
        source = session.get(Source, int(source_id))
        credentials = session.execute(select(SourceCredential.name, SourceCredential.key_id,
                                             SourceCredential.ciphertext, SourceCredential.updated_at)
                                      .where(SourceCredential.source_id == source.id)
                                      .order_by(SourceCredential.name)).all()
        return (source.display_name, source.properties, source.updated_at, source.version,
                source.config_generation, source.paused_at, source.deleted_at, [tuple(c) for c in credentials])


def api_views(client, seeded: Seeded) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    views = {}
    for name in ("source", "discovered"):
        if name in seeded.ids:
            response = client.get(f"/v4/sources/{seeded.ids[name]}", headers=seeded.account.headers)
            assert response.status_code == 200
            views[name] = (response.get_data(), response.headers["ETag"])
    return views


def fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        for name, value in ids.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, ids) for value in template]
    return template


def send(client, case: Bad, seeded: Seeded, operator: dict[str, str]):  # type: ignore[no-untyped-def]
    headers = dict(operator if case.operator else seeded.account.headers)
    headers.update(case.headers)
    if case.raw is not None:
        data = case.raw
    elif case.json is not None:
        # source_id as a string ("{source}" filled in) must stay a string: only fill strings.
        data = json.dumps(fill(case.json, seeded.ids)).encode()
    else:
        data = None
    if data is not None and case.content_type is not None:
        headers["Content-Type"] = case.content_type
    return client.open(fill(case.path, seeded.ids), method=case.method, data=data, headers=headers)


# --- the test --------------------------------------------------------------------------------------


def test_the_catalogue_is_big_and_reaches_every_kind_of_endpoint():
    assert len(CATALOGUE) >= 40
    assert len({case.label for case in CATALOGUE}) == len(CATALOGUE)
    prefixes = {case.path.split("?")[0].split("/")[2] for case in CATALOGUE}
    assert {"sources", "accounts", "oauth"} <= prefixes
    assert any("/streams" in case.path for case in CATALOGUE)


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.label for case in CATALOGUE])
def test_bad_input_is_refused_in_the_error_shape_and_changes_nothing(app, client, account, operator,
                                                                     data_api, case: Bad):
    needs_streams = "{discovered}" in case.path
    seeded = seed(app, client, account, data_api, with_streams=needs_streams)
    database_before = database_state(app)
    source_before = stored_source(app, seeded.ids["source"])
    views_before = api_views(client, seeded)

    response = send(client, case, seeded, operator)

    error = assert_error(response, case.status, case.type)
    if case.field is not None:
        named = {d.get("property") or d.get("field") for d in error["details"]}
        assert any(n == case.field or n.startswith(case.field + ".") for n in named if n), error
    text = response.get_data(as_text=True)
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, PROBE):
        assert secret not in text
    assert stored_source(app, seeded.ids["source"]) == source_before
    assert api_views(client, seeded) == views_before
    after = database_state(app)
    changed = [name for name in database_before if after[name] != database_before[name]]
    assert not changed, f"tables changed: {changed}"
