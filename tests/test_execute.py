"""Execute (``POST /v4/sources/{id}/execute``): a configured source's records, a page and then the
cursor's page, and one by key, with only the fields its user selected — against this machine's
PostgreSQL and MariaDB as database sources, and the loopback data API for every authenticator
and every pagination style a card can declare."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from app.models import utcnow

from .connectors_support import (  # noqa: F401  (fixtures)
    Servers,
    _default_server_behaviour,
    create_source,
    events,
    servers,
    set_token_times,
    stored_properties,
)
from .servers import ApiFault
from .servers.planted import new_secret
from .source_databases import SourceDatabase, mariadb_admin, mariadb_source, pg_admin, postgres_source  # noqa: F401
from .test_database_sources import checked_source, mysql_properties, pg_properties
from .test_discovery import run_jobs
from .test_service_basics import assert_error

# --- helpers -------------------------------------------------------------------------------------


def execute(client, account, source_id: int, entity: str, action: str = "list", **params: Any):
    return client.post(f"/v4/sources/{source_id}/execute", headers=account.headers,
                       json={"entity": entity, "action": action, "params": params})


def ok(response) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"result", "connector_metadata"}
    return body


def select(client, account, source_id: int, tap_stream_id: str, unselected: tuple[str, ...] = ()) -> None:
    metadata = [{"breadcrumb": [], "metadata": {"selected": True, "replication-method": "FULL_TABLE"}}]
    metadata += [{"breadcrumb": ["properties", name], "metadata": {"selected": False}} for name in unselected]
    response = client.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers,
                          json={"streams": [{"tap_stream_id": tap_stream_id, "metadata": metadata}]})
    assert response.status_code == 200, response.get_json()


def every_page(client, account, source_id: int, entity: str, limit: int) -> tuple[list[dict], int]:
    """All records, following cursors; and how many pages that took."""
    found, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = ok(execute(client, account, source_id, entity, **params))
        found += body["result"]
        pages += 1
        cursor = body["connector_metadata"]["pagination"]["cursor"]
        if cursor is None:
            return found, pages
        assert pages < 50


# --- database sources ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_rows(postgres_source):
    """Rows in the keyless shop.audit_log (the fixture's customers already hold 50)."""
    with pg_admin(postgres_source.database) as connection:
        connection.execute("INSERT INTO shop.audit_log SELECT 'line ' || g FROM generate_series(1, 7) g")
        # A keyless view with a json column, which PostgreSQL cannot order by.
        connection.execute("UPDATE shop.customers SET raw = json_build_object('n', id)")
        connection.execute("CREATE VIEW shop.raw_view AS SELECT email, raw FROM shop.customers")
        connection.execute(f'GRANT SELECT ON shop.raw_view TO "{postgres_source.user}"')
    return postgres_source


def pg_source(app, client, account, db: SourceDatabase) -> int:
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(db))
    select(client, account, source_id, f"{db.database}-shop-customers", unselected=("name", "visits", "id"))
    return source_id


def test_postgres_lists_a_first_page_then_the_cursors_with_only_selected_fields(app, client, account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    entity = f"{pg_rows.database}-shop-customers"
    first = ok(execute(client, account, source_id, entity, limit=20))
    assert [r["id"] for r in first["result"]] == list(range(1, 21))
    # The key is always there (its inclusion is automatic); unselected and unsupported columns never are.
    assert {"id", "email", "created_at"} <= set(first["result"][0])
    assert not {"name", "visits", "photo", "location"} & set(first["result"][0])
    assert first["result"][0]["email"] == "c1@example.com"
    cursor = first["connector_metadata"]["pagination"]["cursor"]
    assert isinstance(cursor, str) and "after" not in cursor  # opaque
    second = ok(execute(client, account, source_id, entity, limit=20, cursor=cursor))
    assert [r["id"] for r in second["result"]] == list(range(21, 41))
    records, pages = every_page(client, account, source_id, entity, limit=20)
    assert [r["id"] for r in records] == list(range(1, 51)) and pages == 3


def test_postgres_gets_one_record_by_its_key(app, client, account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    entity = f"{pg_rows.database}-shop-customers"
    record = ok(execute(client, account, source_id, entity, "get", id=7))["result"]
    assert record["id"] == 7 and record["email"] == "c7@example.com" and "name" not in record
    assert ok(execute(client, account, source_id, entity, "get", id="8"))["result"]["id"] == 8
    assert_error(execute(client, account, source_id, entity, "get", id=999), 404, "record_not_found")
    missing = assert_error(execute(client, account, source_id, entity, "get"), 422, "invalid_body")
    assert missing["details"][0]["field"] == "params.id"
    other = assert_error(execute(client, account, source_id, entity, "get", id=1, email="x"), 422, "invalid_body")
    assert [d["field"] for d in other["details"]] == ["params.email"]


def test_a_keyless_view_pages_by_offset(app, client, account, pg_rows):
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(pg_rows))
    entity = f"{pg_rows.database}-shop-audit_log"
    select(client, account, source_id, entity)
    records, pages = every_page(client, account, source_id, entity, limit=3)
    assert sorted(r["line"] for r in records) == sorted(f"line {n}" for n in range(1, 8)) and pages == 3
    assert_error(execute(client, account, source_id, entity, "get", line="line 1"), 422, "invalid_body")
    view = f"{pg_rows.database}-shop-raw_view"
    select(client, account, source_id, view)
    records, pages = every_page(client, account, source_id, view, limit=20)
    assert len({r["email"] for r in records}) == 50 and pages == 3
    assert {"email", "raw"} == set(records[0]) and isinstance(records[0]["raw"], dict)


@pytest.fixture(scope="module")
def maria_rows(mariadb_source):
    connection = mariadb_admin()
    try:
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO `{mariadb_source.database}`.customers (email, name, balance, born) "
                               "VALUES (%s, %s, %s, %s)",
                               [(f"m{n}@example.com", f"M {n}", n * 1.5, "2020-01-02") for n in range(1, 31)])
    finally:
        connection.close()
    return mariadb_source


@pytest.mark.parametrize("source_type", ["platform.mariadb", "platform.mysql"])
def test_mariadb_lists_and_gets_with_only_selected_fields(app, client, account, maria_rows, source_type):
    source_id = checked_source(app, client, account, source_type, mysql_properties(maria_rows))
    entity = f"{maria_rows.database}-customers"
    select(client, account, source_id, entity, unselected=("name", "visits"))
    first = ok(execute(client, account, source_id, entity, limit=12))
    assert [r["id"] for r in first["result"]] == list(range(1, 13))
    assert first["result"][0]["balance"] == 1.5 and first["result"][0]["born"] == "2020-01-02"
    assert not {"name", "visits", "photo"} & set(first["result"][0])
    records, pages = every_page(client, account, source_id, entity, limit=12)
    assert [r["id"] for r in records] == list(range(1, 31)) and pages == 3
    record = ok(execute(client, account, source_id, entity, "get", id=30))["result"]
    assert record["email"] == "m30@example.com" and "name" not in record


def test_a_table_dropped_since_discovery_is_a_clear_424(app, client, account, pg_rows):
    with pg_admin(pg_rows.database) as connection:
        connection.execute("CREATE TABLE shop.doomed (id integer PRIMARY KEY)")
        connection.execute(f'GRANT SELECT ON shop.doomed TO "{pg_rows.user}"')
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(pg_rows))
    entity = f"{pg_rows.database}-shop-doomed"
    select(client, account, source_id, entity)
    with pg_admin(pg_rows.database) as connection:
        connection.execute("DROP TABLE shop.doomed")
    error = assert_error(execute(client, account, source_id, entity), 424, "query_failed")
    assert "refused the query" in error["message"]


def test_an_unselected_stream_is_403_not_selected(app, client, account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    assert_error(execute(client, account, source_id, f"{pg_rows.database}-shop-orders"), 403, "not_selected")


def test_a_source_that_has_not_passed_its_check_is_409_naming_the_step(app, client, account, pg_rows):
    source_id = create_source(client, account, "platform.hp-postgres", pg_properties(pg_rows))
    error = assert_error(execute(client, account, source_id, "anything"), 409, "not_ready")
    assert error["details"] == [{"field": "report_card.current_step_type", "reason": "discover_schema"}]
    broken = checked_source(app, client, account, "platform.hp-postgres",
                            pg_properties(pg_rows, user="nobody_" + new_secret("user")[-8:]))
    error = assert_error(execute(client, account, broken, "anything"), 409, "not_ready")
    assert "broken" in error["message"]


def test_bad_operations_are_422_naming_the_field(app, client, account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    entity = f"{pg_rows.database}-shop-customers"
    url = f"/v4/sources/{source_id}/execute"

    def field_of(response) -> list[str]:
        return [d["field"] for d in assert_error(response, 422, response.get_json()["error"]["type"])["details"]]

    assert field_of(execute(client, account, source_id, "no-such-stream")) == ["entity"]
    assert "action" in field_of(client.post(url, headers=account.headers, json={"entity": entity, "action": "drop"}))
    assert "entity" in field_of(client.post(url, headers=account.headers, json={"action": "list"}))
    for limit in (0, 101, "10", True, 2.5):
        assert field_of(execute(client, account, source_id, entity, limit=limit)) == ["params.limit"]
    assert field_of(execute(client, account, source_id, entity, order="id")) == ["params.order"]
    cursor = ok(execute(client, account, source_id, entity, limit=5))["connector_metadata"]["pagination"]["cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    assert field_of(execute(client, account, source_id, entity, cursor=tampered)) == ["params.cursor"]
    assert field_of(execute(client, account, source_id, entity, cursor="not-a-cursor")) == ["params.cursor"]
    # A cursor is bound to its source and entity.
    other = pg_source(app, client, account, pg_rows)
    assert field_of(execute(client, account, other, entity, cursor=cursor)) == ["params.cursor"]
    assert client.post("/v4/sources/999999/execute", headers=account.headers,
                       json={"entity": entity, "action": "list"}).status_code == 404


def test_every_call_is_an_audit_event_without_values(app, client, account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    entity = f"{pg_rows.database}-shop-customers"
    ok(execute(client, account, source_id, entity, limit=3))
    execute(client, account, source_id, entity, "get", id=12345)
    found = events(app, source_id, "source_executed")
    assert [(e["entity"], e["action"], e["status"]) for e in found] == [(entity, "list", 200), (entity, "get", 404)]
    assert found[0]["records"] == 3 and found[0]["duration_ms"] >= 0
    assert "12345" not in str(found) and "c1@example.com" not in str(found)


def test_another_accounts_source_is_404(app, client, account, new_account, pg_rows):
    source_id = pg_source(app, client, account, pg_rows)
    other = new_account("Other")
    assert_error(execute(client, other, source_id, f"{pg_rows.database}-shop-customers"), 404, "not_found")


# --- http sources: every authenticator, every pagination style -------------------------------------

STYLES = ("cursor", "next_link", "offset", "page", "link_header")
AUTH_TYPES = ("basic", "bearer", "apikey-header", "apikey-query", "apikey-form", "apikey-json", "session",
              "oauth2", "oauth2-rotating")


def http_properties(servers: Servers, auth: str) -> dict[str, Any]:
    settings = servers.data_api.settings
    if auth.startswith("oauth2"):
        if auth == "oauth2-rotating":  # client_secret_basic, with scopes
            return servers.oauth_properties("connect-basic", scope="contacts.read deals.read")
        return servers.oauth_properties("connect-post")
    if auth == "basic":
        settings.password = new_secret("api-password")
        return {"api_url": servers.api_url, "username": settings.username, "password": settings.password}
    if auth == "bearer":
        settings.bearer_token = new_secret("api-bearer")
        return {"api_url": servers.api_url, "api_token": settings.bearer_token}
    if auth == "session":
        settings.session_password = new_secret("session-password")
        return {"api_url": servers.api_url, "username": settings.session_username,
                "password": settings.session_password}
    settings.api_key = new_secret("api-key")
    return {"api_url": servers.api_url, "api_key": settings.api_key}


def http_source(app, client, account, servers: Servers, auth: str, stream: str, **kwargs: Any) -> int:
    source_id = create_source(client, account, f"test.execute-{auth}", http_properties(servers, auth))
    run_jobs(app)
    select(client, account, source_id, stream, unselected=("note",))
    return source_id


@pytest.mark.parametrize("auth, style", [(auth, "cursor") for auth in AUTH_TYPES]
                         + [("bearer", style) for style in STYLES if style != "cursor"])
def test_an_http_source_lists_every_page_with_its_credentials(app, client, account, servers, auth, style):
    if auth == "oauth2-rotating":
        servers.provider.settings.rotate_refresh_tokens = True
    source_id = http_source(app, client, account, servers, auth, f"items_{style}")
    first = ok(execute(client, account, source_id, f"items_{style}", limit=50))
    assert [r["id"] for r in first["result"]] == [f"i{n:03}" for n in range(1, 51)]
    assert set(first["result"][0]) == {"id", "name"}  # note is not selected
    records, pages = every_page(client, account, source_id, f"items_{style}", limit=50)
    assert [r["id"] for r in records] == [f"i{n:03}" for n in range(1, 121)] and pages == 3
    record = ok(execute(client, account, source_id, f"items_{style}", "get", id="i042"))["result"]
    assert record == {"id": "i042", "name": "Item 42"}


def test_a_key_value_stays_one_path_segment(app, client, account, servers):
    source_id = http_source(app, client, account, servers, "bearer", "items_cursor")
    for key in ("../../check", "i001/../i002", "i001?x=1", "%2e%2e"):
        assert_error(execute(client, account, source_id, "items_cursor", "get", id=key), 404, "record_not_found")


def test_an_expired_oauth_token_is_refreshed_and_a_rotated_refresh_token_kept(app, client, account, servers):
    servers.provider.settings.rotate_refresh_tokens = True
    source_id = http_source(app, client, account, servers, "oauth2-rotating", "items_page")
    before = stored_properties(app, source_id)["refresh_token"]
    set_token_times(app, source_id, utcnow() - timedelta(minutes=1), utcnow() - timedelta(hours=1))
    calls = servers.provider.token_requests
    ok(execute(client, account, source_id, "items_page", limit=5))
    assert servers.provider.token_requests == calls + 1
    assert stored_properties(app, source_id)["refresh_token"] != before
    ok(execute(client, account, source_id, "items_page", limit=5))
    assert servers.provider.token_requests == calls + 1  # the new token is reused


def test_a_401_twice_refreshes_once_then_says_so(app, client, account, servers):
    source_id = http_source(app, client, account, servers, "oauth2", "items_cursor")
    servers.data_api.settings.oauth_token_validator = lambda token: False  # every token refused from now on
    calls = servers.provider.token_requests
    error = assert_error(execute(client, account, source_id, "items_cursor"), 424, "credentials_rejected")
    assert servers.provider.token_requests == calls + 1
    assert "refused the credentials" in error["message"]


def test_a_429_with_retry_after_is_passed_back(app, client, account, servers):
    source_id = http_source(app, client, account, servers, "bearer", "items_cursor")
    servers.data_api.settings.retry_after_seconds = 7
    servers.data_api.fail_next_requests(ApiFault.RATE_LIMITED, path_prefix="/bearer/pages")
    response = execute(client, account, source_id, "items_cursor")
    assert_error(response, 429, "source_rate_limited")
    assert response.headers["Retry-After"] == "7"


def test_a_hanging_provider_times_out(make_app, account, servers):
    app = make_app(HTTP_TIMEOUT=1.0)
    client = app.test_client()
    source_id = http_source(app, client, account, servers, "bearer", "items_cursor")
    servers.data_api.fail_next_requests(ApiFault.SLOW, delay=4, path_prefix="/bearer/pages")
    started = time.monotonic()
    error = assert_error(execute(client, account, source_id, "items_cursor"), 424, "source_unavailable")
    assert error["message"] == "the API did not answer in time"
    assert time.monotonic() - started < 3.5


def test_an_answer_over_the_cap_is_refused(make_app, account, servers):
    app = make_app(SOURCE_ANSWER_MAX_BYTES=2000)
    client = app.test_client()
    source_id = http_source(app, client, account, servers, "bearer", "items_cursor")
    assert_error(execute(client, account, source_id, "items_cursor", limit=50), 424, "response_too_large")
    ok(execute(client, account, source_id, "items_cursor", limit=2))


def test_the_network_rules_apply_to_execute(app, client, make_app, account, servers, pg_rows):
    http_id = http_source(app, client, account, servers, "bearer", "items_cursor")
    pg_id = pg_source(app, client, account, pg_rows)
    strict = make_app(ALLOWED_SOURCE_NETWORKS="").test_client()
    assert_error(execute(strict, account, http_id, "items_cursor"), 424, "destination_refused")
    assert_error(execute(strict, account, pg_id, f"{pg_rows.database}-shop-customers"), 424, "destination_refused")


@pytest.mark.parametrize("pagination, problem", [
    ({"type": "cursor"}, "cursor_path"),
    ({"type": "next_link"}, "next_link_path"),
    ({"type": "offset"}, "limit_param"),
    ({"type": "cursor", "cursor_path": ["next"], "cursr_param": "x"}, "cursr_param"),
])
def test_a_pagination_a_card_cannot_use_is_a_load_error(pagination, problem):
    from app.catalog.sections import SectionProblem, parse_pagination

    with pytest.raises(SectionProblem) as raised:
        parse_pagination(pagination, "$.api.streams[0].pagination")
    assert problem in str(raised.value)
