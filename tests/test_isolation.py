"""The isolation matrix: one account can neither see nor change another's objects.

For every route of the app that names an object (a source, its check, streams and events, an
account, a token, an OAuth app override, a secret_id, a source named in a body, a webhook and its
deliveries), ``mine`` tries
``theirs``: the answer is 404 ``not_found``, exactly as for an id that does not exist, and their
objects are unchanged (every table row when the attempt is refused; their API views always; their
secret_id still works afterwards). Routes that only touch the caller's own objects (lists, the
caller's OAuth app) must answer without any of theirs.

Operator-only views (``operator_only``) refuse account tokens with 403 ``access_denied``, and
account-only views refuse the operator token the same way: both read as "this token may not make
this call" (not 404: the route exists for every account, so its existence is no secret).

The route list comes from ``app.url_map``: a new route with neither a case here nor an entry in
:data:`NO_ID_ROUTES` (with its reason) fails :func:`test_every_route_is_in_the_matrix`. The number
of attempts is written to ``tests/artifacts/isolation-pairs.txt``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app import db
from app.auth import account_only, operator_only
from app.db import begin_write
from app.jobs.worker import Worker
from app.webhooks.outbox import emit
from app.wiring import services

from .conftest import OPERATOR_TOKEN
from .connectors_support import running_data_api
from .test_bad_inputs import database_state, stored_source
from .test_oauth import (  # noqa: F401  (fixtures)
    REDIRECT,
    TYPE,
    connect,
    connect_app,
    operator_app,
    provider,
    provider_app,
    provider_port,
    secret_id_of,
)
from .test_service_basics import assert_error

GA = "platform.google-analytics"
DISCOVERY = "test.discovery"
DATA_TOKEN = "isolation-data-token"
OVERRIDE_TYPE = "platform.hubspot"  # theirs has an OAuth app override for it, mine none
MY_OVERRIDE_TYPE = "platform.asana"  # so that my list of overrides is not empty
WEBHOOK_URL = "https://hooks.example"  # never called: no delivery is sent in these tests
ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "isolation-pairs.txt"
PAIRS: Counter[str] = Counter()

# Routes with no object of one account to reach for, each with the reason.
NO_ID_ROUTES: dict[tuple[str, str], str] = {
    ("/v4/accounts", "GET"): "operator only: account tokens get 403 (the operator matrix below)",
    ("/v4/accounts", "POST"): "operator only: account tokens get 403 (the operator matrix below)",
    ("/v4/source-types", "GET"): "the catalog: the same for every account",
    ("/v4/source-types/<string:source_type>", "GET"): "the catalog: the same for every account",
    ("/v4/oauth/credentials/spec", "GET"): "the catalog's OAuth configuration schema",
    ("/v4/webhooks", "POST"): "registers an endpoint of the caller's own; names no object",
    ("/v4/oauth/callback", "GET"): "public: the browser's return; its 256-bit state names the handshake "
                                   "(tests/test_oauth.py)",
    ("/health", "GET"): "public",
    ("/openapi.json", "GET"): "public",
    ("/docs", "GET"): "public",
    ("/docs-assets/<path:filename>", "GET"): "public static files",
    ("/static/<path:filename>", "GET"): "public static files",
    ("/connect-static/<path:filename>", "GET"): "public static files of the connect page",
    # The Airbyte dialect answers in Airbyte's error shape, so its cross-workspace cases (404
    # "Workspace not found", nothing changed) are in its own tests.
    ("/api/v1/oauth/credentials", "PUT"): "sets the caller's own scope's app (tests/test_airbyte_dialect.py)",
    ("/api/v1/oauth/credentials/spec", "GET"): "the catalog's OAuth configuration schema",
    ("/api/v1/integrations/connectors/oauth/initiate", "POST"):
        "another's external_user_id: 404 Workspace not found (tests/test_airbyte_dialect.py)",
    ("/api/v1/integrations/connectors", "POST"):
        "another's external_user_id or secret: 404 (tests/test_airbyte_dialect.py)",
    ("/v1/sources/initiateOAuth", "POST"): "another workspaceId: 404 (tests/test_airbyte_public.py)",
    ("/v1/sources", "POST"): "another workspaceId or secretId: 404 (tests/test_airbyte_public.py)",
    ("/api/v1/connectors/sources/<int:source_id>/execute", "POST"):
        "another workspace's connector: 404 (tests/test_airbyte_dialect.py)",
    ("/v1/workspaces/<string:workspaceId>/oauthCredentials", "PUT"):
        "another workspaceId: 404 (tests/test_airbyte_public.py)",
}
# The hosted page (app/connect): no account token; its session token (in the path, or the OAuth
# return cookie next to a session id) is the credential, and a session is bound to one account's
# source when POST /v4/connect/sessions creates it, which is in the matrix.
CONNECT_PAGE_PREFIX = "/connect/"


@dataclass(frozen=True)
class Attempt:
    """``mine`` calls ``path`` (placeholders filled from the seeded ids); expects ``status``."""

    path: str
    json: Any = None
    status: int = 404
    absent: tuple[str, ...] = ()  # for 200 answers: ids of theirs that must not appear
    field: str | None = None  # for a 404 about an id in the body: the field it names


@dataclass
class Seeded:
    mine: Any
    theirs: Any
    ids: dict[str, Any] = field(default_factory=dict)


def their(path: str, field: str | None = None, **json: Any) -> Attempt:
    return Attempt(path, json or None, field=field)


MATRIX: dict[tuple[str, str], list[Attempt]] = {
    ("/v4/accounts/<int:account_id>", "GET"): [their("/v4/accounts/{their_account}")],
    ("/v4/accounts/<int:account_id>", "PUT"): [
        their("/v4/accounts/{their_account}", redirect_url_allowlist=["https://mine.example/cb"])],
    ("/v4/accounts/<int:account_id>/tokens", "GET"): [their("/v4/accounts/{their_account}/tokens")],
    ("/v4/accounts/<int:account_id>/tokens", "POST"): [their("/v4/accounts/{their_account}/tokens")],
    ("/v4/accounts/<int:account_id>/tokens/<int:token_id>", "DELETE"): [
        their("/v4/accounts/{their_account}/tokens/{their_token}"),
        their("/v4/accounts/{my_account}/tokens/{their_token}")],
    ("/v4/sources", "GET"): [Attempt("/v4/sources", status=200, absent=("their_source", "their_discovered"))],
    ("/v4/sources", "POST"): [
        their("/v4/sources", "secret_id", type=TYPE, display_name="stolen", secret_id="{their_secret}")],
    ("/v4/sources/<int:source_id>", "GET"): [their("/v4/sources/{their_source}"),
                                             their("/v4/sources/{their_discovered}")],
    ("/v4/sources/<int:source_id>", "PUT"): [
        their("/v4/sources/{their_source}", display_name="mine now"),
        their("/v4/sources/{their_source}", properties={"view_id": None}),
        their("/v4/sources/{their_discovered}", paused_at="2026-01-01T00:00:00Z"),
        # Their secret_id on my own source: 404, and it stays theirs to use.
        their("/v4/sources/{my_source}", "secret_id", secret_id="{their_secret}")],
    ("/v4/sources/<int:source_id>", "DELETE"): [their("/v4/sources/{their_source}"),
                                                their("/v4/sources/{their_discovered}")],
    ("/v4/sources/<int:source_id>/events", "GET"): [their("/v4/sources/{their_source}/events"),
                                                    their("/v4/sources/{their_discovered}/events")],
    ("/v4/sources/<int:source_id>/last-connection-check", "GET"): [
        their("/v4/sources/{their_discovered}/last-connection-check")],
    ("/v4/sources/<int:source_id>/discover", "POST"): [their("/v4/sources/{their_discovered}/discover"),
                                                       their("/v4/sources/{their_source}/discover")],
    ("/v4/sources/<int:source_id>/streams", "GET"): [their("/v4/sources/{their_discovered}/streams")],
    ("/v4/sources/<int:source_id>/catalog", "GET"): [their("/v4/sources/{their_discovered}/catalog"),
                                                     their("/v4/sources/{their_source}/catalog")],
    ("/v4/sources/<int:source_id>/execute", "POST"): [
        their("/v4/sources/{their_discovered}/execute", entity="{their_tap_stream}", action="list"),
        their("/v4/sources/{their_source}/execute", entity="contacts", action="list")],
    **{("/v4/sources/<int:source_id>/proxy/<path:path>", method): [
        their("/v4/sources/{their_discovered}/proxy/contacts"), their("/v4/sources/{their_source}/proxy/contacts")]
       for method in ("DELETE", "GET", "PATCH", "POST", "PUT")},
    ("/v4/sources/<int:source_id>/streams/<int:stream_id>", "GET"): [
        their("/v4/sources/{their_discovered}/streams/{their_stream}"),
        # My source with their stream's id: the stream is looked up within my source.
        their("/v4/sources/{my_discovered}/streams/{their_stream}")],
    ("/v4/sources/<int:source_id>/streams/metadata", "PUT"): [
        their("/v4/sources/{their_discovered}/streams/metadata", streams=[{
            "tap_stream_id": "{their_tap_stream}", "metadata": [{"breadcrumb": [], "metadata": {
                "selected": True}}]}])],
    ("/v4/oauth/initiate", "POST"): [
        their("/v4/oauth/initiate", "source_id", source_type=TYPE, redirect_url=REDIRECT,
              source_id="{their_oauth_source}", oauth_input_configuration={"provider_port": "{provider_port}"})],
    ("/v4/oauth/credentials", "GET"): [Attempt("/v4/oauth/credentials", status=200,
                                               absent=("their_override_client",))],
    ("/v4/oauth/credentials", "PUT"): [
        # Sets my own override for the same type; theirs stays as it was.
        Attempt("/v4/oauth/credentials", {"source_type": OVERRIDE_TYPE, "configuration": {
            "client_id": "my-client", "client_secret": "my-secret"}}, status=200)],
    ("/v4/oauth/credentials/<source_type:source_type>", "DELETE"): [
        their("/v4/oauth/credentials/" + OVERRIDE_TYPE)],
    ("/v4/connect/sessions", "POST"): [
        their("/v4/connect/sessions", "source_id", source_id="{their_source}", redirect_url=REDIRECT)],
    ("/v4/webhooks", "GET"): [Attempt("/v4/webhooks", status=200, absent=("their_webhook",))],
    ("/v4/webhooks/<int:webhook_id>", "GET"): [their("/v4/webhooks/{their_webhook}")],
    ("/v4/webhooks/<int:webhook_id>", "PUT"): [their("/v4/webhooks/{their_webhook}", url=WEBHOOK_URL + "/mine")],
    ("/v4/webhooks/<int:webhook_id>", "DELETE"): [their("/v4/webhooks/{their_webhook}")],
    ("/v4/webhooks/<int:webhook_id>/rotate-secret", "POST"): [
        their("/v4/webhooks/{their_webhook}/rotate-secret", overlap_seconds=0)],
    ("/v4/webhooks/<int:webhook_id>/deliveries", "GET"): [their("/v4/webhooks/{their_webhook}/deliveries")],
    ("/v4/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>", "GET"): [
        their("/v4/webhooks/{their_webhook}/deliveries/{their_delivery}"),
        # My webhook with their delivery's id: the delivery is looked up within my webhook.
        their("/v4/webhooks/{my_webhook}/deliveries/{their_delivery}")],
    ("/v4/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver", "POST"): [
        their("/v4/webhooks/{their_webhook}/deliveries/{their_delivery}/redeliver"),
        their("/v4/webhooks/{my_webhook}/deliveries/{their_delivery}/redeliver")],
}


def routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method))
    return sorted(found)


def view_decorators(app, rule_text: str) -> set:  # type: ignore[no-untyped-def]
    rule = next(r for r in app.url_map.iter_rules() if r.rule == rule_text)
    view = app.view_functions[rule.endpoint]
    return set(getattr(getattr(view, "view_class", None), "decorators", None) or [])


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_api():
    with running_data_api(DATA_TOKEN) as api:
        yield api


@pytest.fixture(scope="module", autouse=True)
def _record_pairs():
    yield
    if PAIRS:
        line = (f"isolation pairs tried: {PAIRS['cross-account']} cross-account attempts over "
                f"{PAIRS['routes']} routes, {PAIRS['principal']} wrong-principal attempts\n")
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.write_text(line)
        print("\n" + line)


def discovered_source(connect_app, client, account, data_api) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    created = client.post("/v4/sources", headers=account.headers, json={
        "type": DISCOVERY, "display_name": "Discovered " + os.urandom(3).hex(),
        "properties": {"api_url": data_api.base_url, "api_token": DATA_TOKEN}})
    assert created.status_code == 201, created.get_json()
    source_id = created.get_json()["id"]
    worker, deadline = Worker(connect_app, services(connect_app).jobs, poll_interval=0.05), time.monotonic() + 20
    while worker.run_once():
        assert time.monotonic() < deadline, "discovery did not finish"
    streams = client.get(f"/v4/sources/{source_id}/streams", headers=account.headers).get_json()
    assert streams, "no streams discovered"
    return source_id, streams[0]


@pytest.fixture()
def seeded(connect_app, connect, new_account, operator, operator_app, provider_port, data_api) -> Seeded:
    mine, theirs = new_account("mine"), new_account("theirs")
    ids: dict[str, Any] = {"my_account": mine.id, "their_account": theirs.id, "provider_port": provider_port}
    ga = connect.post("/v4/sources", headers=theirs.headers, json={"type": GA, "display_name": "Their GA",
        "properties": {"start_date": "2019-03-25T00:00:00Z", "frequency_in_minutes": "60", "view_id": "1",
                       "client_id": "their-cid", "client_secret": "their-secret", "refresh_token": "their-rt"}})
    assert ga.status_code == 201, ga.get_json()
    ids["their_source"] = ga.get_json()["id"]
    ids["their_discovered"], stream = discovered_source(connect_app, connect, theirs, data_api)
    ids["their_stream"], ids["their_tap_stream"] = stream["stream_id"], stream["tap_stream_id"]
    ids["my_discovered"], _ = discovered_source(connect_app, connect, mine, data_api)
    mine_ga = connect.post("/v4/sources", headers=mine.headers, json={"type": GA, "display_name": "My GA"})
    ids["my_source"] = mine_ga.get_json()["id"]
    oauth_source = connect.post("/v4/sources", headers=theirs.headers, json={
        "type": TYPE, "display_name": "Their OAuth", "properties": {"provider_port": provider_port}})
    assert oauth_source.status_code == 201, oauth_source.get_json()
    ids["their_oauth_source"] = oauth_source.get_json()["id"]
    ids["their_secret"] = secret_id_of(connect, theirs, provider_port)
    override = connect.put("/v4/oauth/credentials", headers=theirs.headers, json={
        "source_type": OVERRIDE_TYPE, "configuration": {"client_id": "their-override-client",
                                                         "client_secret": "their-override-secret"}})
    assert override.status_code == 200, override.get_json()
    ids["their_override_client"] = "their-override-client"
    own = connect.put("/v4/oauth/credentials", headers=mine.headers, json={
        "source_type": MY_OVERRIDE_TYPE, "configuration": {"client_id": "my-own-client", "client_secret": "x" * 12}})
    assert own.status_code == 200, own.get_json()
    token = connect.post(f"/v4/accounts/{theirs.id}/tokens", headers=operator).get_json()
    ids["their_token"] = token["id"]
    ids["their_webhook"], ids["their_delivery"] = webhook_with_delivery(connect_app, connect, theirs)
    ids["my_webhook"], _ = webhook_with_delivery(connect_app, connect, mine)
    return Seeded(mine, theirs, ids)


def webhook_with_delivery(connect_app, client, account) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A webhook of the account and one (unsent) delivery to it."""
    created = client.post("/v4/webhooks", headers=account.headers,
                          json={"url": f"{WEBHOOK_URL}/{account.id}", "events": ["*"]})
    assert created.status_code == 201, created.get_json()
    with db.get_db(connect_app).Session() as session, begin_write(session):
        emit(session, account.id, "source.deleted", {}, source_id=1)
    webhook_id = created.get_json()["id"]
    [delivery] = client.get(f"/v4/webhooks/{webhook_id}/deliveries", headers=account.headers).get_json()["data"]
    return webhook_id, delivery["id"]


# --- helpers ---------------------------------------------------------------------------------------


def fill(template: Any, ids: dict[str, Any]) -> Any:
    """Placeholders become the seeded values; a whole-string placeholder keeps the value's type."""
    if isinstance(template, str):
        for name, value in ids.items():
            if template == "{" + name + "}":
                return value
            template = template.replace("{" + name + "}", str(value))
        return template
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, ids) for value in template]
    return template


def identifiers(document: Any) -> set:
    """Every ``id`` and ``client_id`` value in a response body."""
    found, stack = set(), [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.update(v for k, v in value.items() if k in {"id", "client_id"} and isinstance(v, int | str))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def their_views(client, seeded: Seeded) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """What the other account sees of its own objects (its token's view)."""
    ids, headers = seeded.ids, seeded.theirs.headers
    paths = [f"/v4/accounts/{ids['their_account']}", f"/v4/accounts/{ids['their_account']}/tokens",
             "/v4/sources", "/v4/oauth/credentials",
             f"/v4/sources/{ids['their_discovered']}/streams",
             f"/v4/sources/{ids['their_discovered']}/streams/{ids['their_stream']}",
             f"/v4/sources/{ids['their_discovered']}/last-connection-check"]
    for name in ("their_source", "their_discovered", "their_oauth_source"):
        paths += [f"/v4/sources/{ids[name]}", f"/v4/sources/{ids[name]}/events"]
    paths += ["/v4/webhooks", f"/v4/webhooks/{ids['their_webhook']}", f"/v4/webhooks/{ids['their_webhook']}/deliveries",
              f"/v4/webhooks/{ids['their_webhook']}/deliveries/{ids['their_delivery']}"]
    views = {}
    for path in paths:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.get_json())
        views[path] = response.get_data()
    return views


def their_rows(connect_app, seeded: Seeded) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [stored_source(connect_app, str(seeded.ids[name]))
            for name in ("their_source", "their_discovered", "their_oauth_source")]


# --- the tests -------------------------------------------------------------------------------------


def test_every_route_is_in_the_matrix(connect_app):
    unclassified = [route for route in routes(connect_app) if route not in MATRIX and route not in NO_ID_ROUTES
                    and not route[0].startswith(CONNECT_PAGE_PREFIX)]
    assert not unclassified, f"routes without an isolation case or a reason in NO_ID_ROUTES: {unclassified}"
    stale = [route for route in list(MATRIX) + list(NO_ID_ROUTES) if route not in routes(connect_app)]
    assert not stale, f"cases for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=[f"{m} {r}" for r, m in sorted(MATRIX)])
def test_another_accounts_objects_are_404_and_unchanged(connect_app, connect, seeded, route):
    rule, method = route
    ids = seeded.ids
    for attempt in MATRIX[route]:
        database_before = database_state(connect_app)
        rows_before, views_before = their_rows(connect_app, seeded), their_views(connect, seeded)

        response = connect.open(fill(attempt.path, ids), method=method, headers=seeded.mine.headers,
                                json=fill(attempt.json, ids) if attempt.json is not None else None)
        PAIRS["cross-account"] += 1

        if attempt.status == 404:
            error = assert_error(response, 404, "not_found")
            if attempt.field:
                assert attempt.field in {d.get("field") for d in error["details"]}, error
            changed = [t for t, rows in database_state(connect_app).items() if rows != database_before[t]]
            assert not changed, f"{method} {attempt.path} changed {changed}"
        else:
            assert response.status_code == attempt.status, response.get_data(as_text=True)
            shown = identifiers(response.get_json())
            assert shown, "nothing listed: the check below could not fail"
            for name in attempt.absent:
                assert ids[name] not in shown, (name, shown)
        assert their_rows(connect_app, seeded) == rows_before
        assert their_views(connect, seeded) == views_before
    PAIRS["routes"] += 1
    # Their secret_id was never consumed: it still fills their own source, once.
    used = connect.put(f"/v4/sources/{ids['their_oauth_source']}", headers=seeded.theirs.headers,
                       json={"secret_id": ids["their_secret"]})
    assert used.status_code == 200, used.get_json()


def test_a_missing_id_and_another_accounts_id_read_alike(connect, seeded):
    """The 404 for their object is byte for byte the 404 for no object at all (nothing to probe)."""
    headers = seeded.mine.headers
    pairs = [("/v4/sources/{}", seeded.ids["their_source"], 999_999_999),
             ("/v4/sources/{}/events", seeded.ids["their_source"], 999_999_999),
             ("/v4/sources/{}/streams", seeded.ids["their_discovered"], 999_999_999)]
    for template, theirs, missing in pairs:
        a = connect.get(template.format(theirs), headers=headers).get_json()
        b = connect.get(template.format(missing), headers=headers).get_json()
        a["error"]["message"] = a["error"]["message"].replace(str(theirs), "N")
        b["error"]["message"] = b["error"]["message"].replace(str(missing), "N")
        assert a == b
        PAIRS["cross-account"] += 1


def principal_cases(app) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """(rule, method, refused principal) for every operator-only and account-only view."""
    cases = []
    for rule, method in routes(app):
        decorators = view_decorators(app, rule)
        if operator_only in decorators:
            cases.append((rule, method, "account"))
        if account_only in decorators:
            cases.append((rule, method, "operator"))
    return cases


def test_operator_only_and_account_only_views_refuse_the_other_principal(connect_app, connect, seeded):
    cases = principal_cases(connect_app)
    assert {("/v4/accounts", "GET", "account"), ("/v4/accounts", "POST", "account")} <= set(cases)
    assert ("/v4/sources", "POST", "operator") in cases
    tokens = {"account": seeded.mine.headers, "operator": {"Authorization": f"Bearer {OPERATOR_TOKEN}"}}
    path_values = {"account_id": seeded.ids["their_account"], "source_id": seeded.ids["their_source"],
                   "stream_id": seeded.ids["their_stream"], "token_id": seeded.ids["their_token"],
                   "webhook_id": seeded.ids["their_webhook"], "delivery_id": seeded.ids["their_delivery"]}
    for rule, method, refused in cases:
        path = rule
        for name, value in path_values.items():
            path = path.replace(f"<int:{name}>", str(value))
        before = database_state(connect_app)
        response = connect.open(path, method=method, headers=tokens[refused],
                                json={} if method in {"POST", "PUT"} else None)
        PAIRS["principal"] += 1
        assert_error(response, 403, "access_denied")
        changed = [t for t, rows in database_state(connect_app).items() if rows != before[t]]
        assert not changed, f"{method} {path} as {refused} changed {changed}"
