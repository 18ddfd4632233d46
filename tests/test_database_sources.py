"""Database sources end to end, against this machine's PostgreSQL and MariaDB as the sources (and
the suite's SQLite or PostgreSQL as the service's own database): creation → check → discovery →
field_selection → stream selection → fully_configured, every bad input the issue lists, and a
bounded number of catalog queries for thousands of tables."""

from __future__ import annotations

import secrets
import socket
from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from app.catalog import get_catalog
from app.connectors.base import SourceTarget
from app.connectors.registry import get_connectors

from .connectors_support import create_source
from .source_databases import SourceDatabase, mariadb_admin, mariadb_source, pg_admin, postgres_source  # noqa: F401
from .test_discovery import run_jobs, step
from .test_service_basics import assert_error


def pg_properties(db: SourceDatabase, **overrides: Any) -> dict[str, Any]:
    return {"host": db.host, "port": str(db.port), "dbname": db.database, "user": db.user,
            "password": db.password, **overrides}


def mysql_properties(db: SourceDatabase, **overrides: Any) -> dict[str, Any]:
    return {"host": db.host, "port": str(db.port), "database": db.database, "user": db.user,
            "password": db.password, **overrides}


def source_body(client, account, source_id: int) -> dict[str, Any]:
    return client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()


def last_check(client, account, source_id: int) -> dict[str, Any]:
    return client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers).get_json()


def streams_of(client, account, source_id: int) -> dict[str, dict[str, Any]]:
    """tap_stream_id → the stream's schema and metadata by breadcrumb."""
    listed = client.get(f"/v4/sources/{source_id}/streams", headers=account.headers).get_json()
    found = {}
    for summary in listed:
        body = client.get(f"/v4/sources/{source_id}/streams/{summary['stream_id']}", headers=account.headers).get_json()
        found[summary["tap_stream_id"]] = {
            "summary": summary, "schema": body["schema"]["properties"],
            "stream": next(e["metadata"] for e in body["metadata"] if e["breadcrumb"] == []),
            "fields": {e["breadcrumb"][1]: e["metadata"] for e in body["metadata"] if e["breadcrumb"]}}
    return found


def select_stream(client, account, source_id: int, tap_stream_id: str) -> None:
    response = client.put(f"/v4/sources/{source_id}/streams/metadata", headers=account.headers, json={
        "streams": [{"tap_stream_id": tap_stream_id, "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "FULL_TABLE"}}]}]})
    assert response.status_code == 200, response.get_json()


def checked_source(app, client, account, source_type: str, properties: dict[str, Any]) -> int:
    source_id = create_source(client, account, source_type, properties)
    run_jobs(app)
    return source_id


# --- PostgreSQL ----------------------------------------------------------------------------------

def test_a_postgres_source_is_checked_discovered_and_fully_configured(app, client, account, postgres_source):
    db = postgres_source.database
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source))
    body = source_body(client, account, source_id)
    assert body["report_card"]["current_step_type"] == "field_selection", last_check(client, account, source_id)
    assert last_check(client, account, source_id)["stream_count"] == 4

    streams = streams_of(client, account, source_id)
    # payroll (no SELECT), hidden.secrets (no USAGE on the schema) and public.canary are not listed.
    assert set(streams) == {f"{db}-shop-customers", f"{db}-shop-orders", f"{db}-shop-audit_log",
                            f"{db}-shop-big_spenders"}
    customers = streams[f"{db}-shop-customers"]
    assert customers["summary"]["stream_name"] == "customers"
    assert customers["stream"] == {
        "selected-by-default": False, "database-name": db, "schema-name": "shop", "is-view": False,
        "table-key-properties": ["id"], "row-count": 50, "selected": False,
        "valid-replication-keys": ["id", "age", "visits", "born", "created_at", "updated_at"]}
    fields, schema = customers["fields"], customers["schema"]
    assert fields["id"] == {"inclusion": "automatic", "selected-by-default": True, "sql-datatype": "bigint",
                            "selected": True}
    assert fields["email"]["sql-datatype"] == "character varying(200)"
    assert fields["email"]["inclusion"] == "available"
    for unsupported in ("photo", "location"):
        assert fields[unsupported]["inclusion"] == "unsupported"
        assert schema[unsupported] == {}
    assert schema["id"] == {"type": "integer", "minimum": -(2 ** 63), "maximum": 2 ** 63 - 1}
    assert schema["email"] == {"type": "string", "maxLength": 200}
    assert schema["name"] == {"type": ["null", "string"]}
    assert schema["code"] == {"type": ["null", "string"], "maxLength": 3}
    assert schema["age"] == {"type": ["null", "integer"], "minimum": -32768, "maximum": 32767}
    assert schema["balance"] == {"type": ["null", "number"], "multipleOf": 0.01, "maximum": 100000000,
                                 "exclusiveMaximum": True, "minimum": -100000000, "exclusiveMinimum": True}
    assert schema["ratio"] == schema["score"] == {"type": ["null", "number"]}
    assert schema["active"] == schema["flags"] == {"type": ["null", "boolean"]}
    assert schema["born"] == {"type": ["null", "string"], "format": "date-time"}
    assert schema["created_at"] == {"type": "string", "format": "date-time"}
    assert schema["wakes_at"] == {"type": ["null", "string"], "format": "time"}
    assert schema["mood"] == {"type": ["null", "string"], "enum": ["happy", "sad", "it's complicated", None]}
    assert schema["tags"] == {"type": ["null", "array"], "items": {"type": ["null", "string"]}}
    assert schema["lucky"]["items"]["type"] == ["null", "integer"]
    assert schema["profile"] == schema["raw"] == {"type": ["null", "object", "array", "string", "number", "boolean"]}
    assert schema["external_id"] == schema["address"] == {"type": ["null", "string"]}

    assert streams[f"{db}-shop-orders"]["stream"]["table-key-properties"] == ["customer_id", "order_no"]
    view = streams[f"{db}-shop-big_spenders"]["stream"]
    assert view["is-view"] is True and view["table-key-properties"] == [] and "row-count" not in view
    assert streams[f"{db}-shop-audit_log"]["stream"]["forced-replication-method"] == "FULL_TABLE"

    select_stream(client, account, source_id, f"{db}-shop-customers")
    assert step(client, account, source_id) == "fully_configured"


def test_filter_dbs_and_a_missing_database_on_postgres(app, client, account, postgres_source):
    listed = checked_source(app, client, account, "platform.hp-postgres",
                            pg_properties(postgres_source, dbname="postgres", filter_dbs=postgres_source.database))
    assert step(client, account, listed) == "field_selection"
    assert all(s.startswith(postgres_source.database + "-") for s in streams_of(client, account, listed))

    filter_dbs = f"{postgres_source.database},nope_{secrets.token_hex(3)}"
    missing = checked_source(app, client, account, "platform.hp-postgres",
                             pg_properties(postgres_source, filter_dbs=filter_dbs))
    assert source_body(client, account, missing)["report_card"]["setup_error"]["type"] == "unknown_database"


# --- MariaDB as platform.mariadb and platform.mysql ---------------------------------------------

@pytest.mark.parametrize("source_type", ["platform.mariadb", "platform.mysql"])
def test_a_mariadb_source_is_checked_discovered_and_fully_configured(app, client, account, mariadb_source,
                                                                      source_type):
    db = mariadb_source.database
    source_id = checked_source(app, client, account, source_type, mysql_properties(mariadb_source))
    assert step(client, account, source_id) == "field_selection", last_check(client, account, source_id)
    streams = streams_of(client, account, source_id)
    # payroll is not granted; the other database holds nothing the user may see.
    assert set(streams) == {f"{db}-customers", f"{db}-orders", f"{db}-canary", f"{db}-big_spenders"}
    customers = streams[f"{db}-customers"]
    assert customers["stream"] == {
        "selected-by-default": False, "database-name": db, "is-view": False, "table-key-properties": ["id"],
        "row-count": 0, "selected": False,
        "valid-replication-keys": ["id", "age", "visits", "born", "created_at", "updated_at"]}
    fields, schema = customers["fields"], customers["schema"]
    assert fields["id"]["inclusion"] == "automatic" and fields["id"]["sql-datatype"] == "int(10) unsigned"
    assert schema["id"] == {"type": "integer", "minimum": 0, "maximum": 2 ** 32 - 1}
    assert schema["email"] == {"type": "string", "maxLength": 200}
    assert schema["age"] == {"type": ["null", "integer"], "minimum": -128, "maximum": 127}
    assert schema["active"] == schema["flags"] == {"type": ["null", "boolean"]}
    assert schema["balance"] == {"type": ["null", "number"], "multipleOf": 0.01}
    assert schema["created_at"] == schema["born"] == {"type": ["null", "string"], "format": "date-time"}
    assert schema["mood"] == {"type": ["null", "string"], "enum": ["happy", "sad", "it's, (complicated)", None]}
    for unsupported in ("photo", "location"):
        assert fields[unsupported]["inclusion"] == "unsupported" and schema[unsupported] == {}
    assert streams[f"{db}-orders"]["stream"]["table-key-properties"] == ["customer_id", "order_no"]
    assert streams[f"{db}-big_spenders"]["stream"]["is-view"] is True

    select_stream(client, account, source_id, f"{db}-customers")
    assert step(client, account, source_id) == "fully_configured"


def test_filter_dbs_on_mysql_lists_only_those_databases(app, client, account, mariadb_source):
    source_id = checked_source(app, client, account, "platform.mysql",
                               mysql_properties(mariadb_source, filter_dbs=mariadb_source.other_database))
    assert step(client, account, source_id) == "field_selection"
    assert streams_of(client, account, source_id) == {}  # the user may see nothing there


# --- bad inputs ----------------------------------------------------------------------------------

def _broken_with(client, account, source_id: int, error_type: str) -> dict[str, Any]:
    body = source_body(client, account, source_id)
    assert body["report_card"]["current_step_type"] == "discover_schema"
    assert body["report_card"]["setup_error"]["type"] == error_type, body["report_card"]
    check = last_check(client, account, source_id)
    assert check["status"] == "failed" and check["error"]["type"] == error_type
    return check["error"]


def test_a_wrong_password_breaks_the_source_without_showing_it(app, client, account, mariadb_source):
    wrong = "wrong-" + secrets.token_hex(12)
    source_id = checked_source(app, client, account, "platform.mariadb", mysql_properties(mariadb_source,
                                                                                          password=wrong))
    error = _broken_with(client, account, source_id, "credentials_rejected")
    assert "user name or password" in error["message"]
    assert wrong not in str(error) and mariadb_source.password not in str(error)


@pytest.mark.parametrize(("overrides", "error_type", "words"), [
    ({"user": "nobody_here"}, "credentials_rejected", "no user 'nobody_here'"),
    ({"dbname": "no_such_db"}, "unknown_database", "no database 'no_such_db'"),
    ({"ssl": "true"}, "ssl_refused", "does not support SSL"),
], ids=["unknown user", "unknown database", "ssl refused"])
def test_postgres_refusals_break_the_source_with_a_reason(app, client, account, postgres_source, overrides,
                                                          error_type, words):
    source_id = checked_source(app, client, account, "platform.hp-postgres",
                               pg_properties(postgres_source, **overrides))
    assert words in _broken_with(client, account, source_id, error_type)["message"]


def test_a_postgres_user_that_may_no_longer_log_in_breaks_the_source(app, client, account, postgres_source):
    """The grant taken back at the database (ALTER ROLE … NOLOGIN) is the user's to fix, not a
    network problem to retry."""
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source))
    assert step(client, account, source_id) == "field_selection"
    with pg_admin() as admin:
        admin.execute(f'ALTER ROLE "{postgres_source.user}" NOLOGIN')
    try:
        assert client.post(f"/v4/sources/{source_id}/discover", headers=account.headers).status_code == 202
        run_jobs(app)
        check = last_check(client, account, source_id)
        assert check["status"] == "failed" and check["error"]["type"] == "credentials_rejected", check
        assert check["error"]["message"] == "the database user may not log in"
    finally:
        with pg_admin() as admin:
            admin.execute(f'ALTER ROLE "{postgres_source.user}" LOGIN')


def test_ssl_required_but_refused_by_mariadb(app, client, account, mariadb_source):
    source_id = checked_source(app, client, account, "platform.mariadb", mysql_properties(mariadb_source, ssl="true"))
    assert "does not support SSL" in _broken_with(client, account, source_id, "ssl_refused")["message"]


def test_sql_in_dbname_and_filter_dbs_is_never_run(app, client, account, postgres_source, mariadb_source):
    injected = "x'; DROP TABLE public.canary; --"
    pg = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source, dbname=injected))
    _broken_with(client, account, pg, "unknown_database")
    pg_filter = checked_source(app, client, account, "platform.hp-postgres",
                               pg_properties(postgres_source, filter_dbs=f'{postgres_source.database}" ; DROP TABLE x'))
    _broken_with(client, account, pg_filter, "unknown_database")
    maria = checked_source(app, client, account, "platform.mysql", mysql_properties(
        mariadb_source, filter_dbs=f"{mariadb_source.database}') OR ('1'='1,x`; DROP TABLE canary; --"))
    assert step(client, account, maria) == "field_selection"
    assert streams_of(client, account, maria) == {}  # no database has those names
    with pg_admin(postgres_source.database) as connection:
        assert connection.execute("SELECT count(*) FROM public.canary").fetchone() == (1,)
    connection = mariadb_admin()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM `{mariadb_source.database}`.canary")
        assert cursor.fetchone() == (1,)
    connection.close()


def test_a_closed_port_is_retried_as_transient(app, client, account, postgres_source):
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    source_id = checked_source(app, client, account, "platform.hp-postgres",
                               pg_properties(postgres_source, port=str(closed_port)))
    check = last_check(client, account, source_id)
    assert check["status"] == "queued" and check["error"]["type"] == "source_unreachable", check
    assert source_body(client, account, source_id)["report_card"].get("setup_error") is None


def test_a_server_that_never_answers_is_a_timeout_retried_later(make_app, account, postgres_source):
    quick = make_app(HTTP_TIMEOUT=2)  # libpq's shortest connect timeout
    client = quick.test_client()
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        source_id = checked_source(quick, client, account, "platform.hp-postgres",
                                   pg_properties(postgres_source, port=str(silent.getsockname()[1])))
    check = last_check(client, account, source_id)
    assert check["status"] == "queued" and check["error"]["type"] == "source_unreachable", check
    assert "did not answer in time" in check["error"]["message"]


def test_too_many_connections_is_retried_later(app, client, account, mariadb_source):
    user, password = f"connect_one_{secrets.token_hex(3)}", "one-" + secrets.token_hex(10)
    admin = mariadb_admin()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s WITH MAX_USER_CONNECTIONS 1", (password,))
        cursor.execute(f"GRANT SELECT ON `{mariadb_source.database}`.* TO '{user}'@'127.0.0.1'")
    holder = pymysql.connect(host="127.0.0.1", port=3306, user=user, password=password)
    try:
        source_id = checked_source(app, client, account, "platform.mariadb",
                                   mysql_properties(mariadb_source, user=user, password=password))
        check = last_check(client, account, source_id)
        assert check["status"] == "queued" and check["error"]["type"] == "too_many_connections", check
        assert "too many connections" in check["error"]["message"]
        assert source_body(client, account, source_id)["report_card"].get("setup_error") is None
    finally:
        holder.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.close()


def test_a_name_resolving_to_the_metadata_service_is_refused(app, client, account, postgres_source):
    # 2852039166 is 169.254.169.254 written as one number: no literal to the service's rules,
    # but the system resolver turns it into the metadata address.
    source_id = checked_source(app, client, account, "platform.hp-postgres",
                               pg_properties(postgres_source, host="2852039166"))
    error = _broken_with(client, account, source_id, "destination_refused")
    assert "169.254.169.254" in error["message"] and "never allowed" in error["message"]


@pytest.mark.parametrize(("properties", "bad", "words"), [
    ({"host": "169.254.169.254"}, "host", "cloud metadata service"),
    ({"host": "x" * 10_000}, "host", "host name"),  # the card's hostname format, or the 253-character rule
    ({"host": "a b; DROP"}, "host", "host name"),
    ({"port": "0"}, "port", "1 to 65535"),
    ({"port": "65536"}, "port", "1 to 65535"),
    ({"port": "99999999999999999999"}, "port", "1 to 65535"),
    ({"port": "5432abc"}, "port", "1 to 65535"),
    ({"port": 70000}, "port", "1 to 65535"),
], ids=["metadata address", "10000-character host", "not a host", "port 0", "port 65536", "huge port",
        "port with letters", "integer port"])
def test_refused_addresses_and_absurd_ports_are_422_at_save(client, account, postgres_source, properties, bad, words):
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": "platform.hp-postgres", "display_name": "Bad " + secrets.token_hex(3),
        "properties": pg_properties(postgres_source, **properties)})
    error = assert_error(response, 422, "invalid_properties")
    assert {d["field"] for d in error["details"]} == {f"properties.{bad}"}
    assert words in error["message"]
    assert client.get("/v4/sources", headers=account.headers).get_json()["data"] == []


def test_an_update_to_a_refused_host_changes_nothing(app, client, account, postgres_source):
    source_id = create_source(client, account, "platform.hp-postgres", pg_properties(postgres_source))
    before = source_body(client, account, source_id)
    response = client.put(f"/v4/sources/{source_id}", headers=account.headers,
                          json={"properties": {"host": "100.100.100.200"}})
    assert "never allowed" in assert_error(response, 422, "invalid_properties")["message"]
    assert source_body(client, account, source_id) == before


def test_the_services_own_database_is_refused(app, client, account, postgres_source):
    own = make_url(app.config["DATABASE_URL"])
    if own.get_backend_name() != "postgresql":
        pytest.skip("the service's own database is SQLite here (tests/test_network_rules.py covers the rule)")
    literal = {"host": own.host, "port": str(own.port or 5432), "dbname": own.database}
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": "platform.hp-postgres", "display_name": "Own " + secrets.token_hex(3),
        "properties": pg_properties(postgres_source, **literal)})
    assert "own database" in assert_error(response, 422, "invalid_properties")["message"]
    by_name = checked_source(app, client, account, "platform.hp-postgres",
                             pg_properties(postgres_source, **{**literal, "host": "localhost"}))
    assert "own database" in _broken_with(client, account, by_name, "destination_refused")["message"]
    # Another database on the same server is a source like any other.
    other = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source))
    assert step(client, account, other) == "field_selection"


def test_ssh_tunnels_fail_as_the_operators_to_fix(app, client, account, postgres_source):
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source, ssh="true"))
    check = last_check(client, account, source_id)
    assert check["status"] == "failed"
    assert check["error"] == {"type": "ssh_not_supported",
                              "message": "SSH tunnels are not supported by this deployment"}
    assert source_body(client, account, source_id)["report_card"].get("setup_error") is None


def test_types_without_their_driver_say_which_extra_to_install(app, client, account):
    source_id = checked_source(app, client, account, "platform.mssql", {
        "host": "db.example.com", "user": "sa", "password": "pw-" + secrets.token_hex(10)})
    check = last_check(client, account, source_id)
    assert check["status"] == "failed" and check["error"]["type"] == "driver_not_installed"
    assert "connect[mssql]" in check["error"]["message"]
    with app.app_context():
        assert "connect[oracle]" in get_connectors().availability(get_catalog().get("platform.oracle")).reason


# --- paging ---------------------------------------------------------------------------------------

def test_streams_are_paged_with_a_link_to_the_next_page(app, client, account, postgres_source):
    source_id = checked_source(app, client, account, "platform.hp-postgres", pg_properties(postgres_source))
    everything = client.get(f"/v4/sources/{source_id}/streams", headers=account.headers)
    assert "Link" not in everything.headers and len(everything.get_json()) == 4
    first = client.get(f"/v4/sources/{source_id}/streams?limit=3", headers=account.headers)
    assert [s["stream_id"] for s in first.get_json()] == [s["stream_id"] for s in everything.get_json()[:3]]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    second = client.get(link[1:link.index(">")], headers=account.headers)
    assert second.get_json() == everything.get_json()[3:] and "Link" not in second.headers
    assert client.get(f"/v4/sources/{source_id}/streams?limit=0", headers=account.headers).status_code == 422
    assert client.get(f"/v4/sources/{source_id}/streams?cursor=nope", headers=account.headers).status_code == 400


# --- scale ---------------------------------------------------------------------------------------

def count_statements(app, card_type: str, properties: dict[str, Any]) -> tuple[int, int]:
    """(catalog statements sent, streams found) by one discovery, counted at the engine."""
    statements: list[str] = []

    def counted(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with app.app_context():
        card = get_catalog().get(card_type)
        target = SourceTarget(source_id=1, account_id=1, name="scale", config_generation=1, card=card,
                              properties=properties)
        event.listen(Engine, "before_cursor_execute", counted)
        try:
            streams = get_connectors().for_card(card).discover(target)
        finally:
            event.remove(Engine, "before_cursor_execute", counted)
    return len(statements), len(streams)


def _pg_wide_database(name: str, tables: int) -> None:
    with pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    columns = ", ".join(f"c{i} {'integer' if i % 2 else 'text'}" for i in range(1, 20))
    with pg_admin(name) as connection:
        connection.execute(f"""DO $$ BEGIN FOR i IN 1..{tables} LOOP
            EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, {columns})', i); END LOOP; END $$""")


def test_postgres_discovery_of_2000_tables_takes_as_many_queries_as_20(app):
    names = {count: f"connect_wide_{count}_{secrets.token_hex(3)}" for count in (20, 2000)}
    try:
        found = {}
        for count, name in names.items():
            _pg_wide_database(name, count)
            found[count] = count_statements(app, "platform.hp-postgres", {
                "host": "127.0.0.1", "port": "5432", "dbname": name, "user": "postgres", "password": "unused"})
        assert found[20][1] == 20 and found[2000][1] == 2000
        assert found[2000][0] == found[20][0] <= 10, found
    finally:
        with pg_admin() as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_mariadb_discovery_takes_as_many_queries_for_200_tables_as_for_10(app):
    names = {count: f"connect_wide_{count}_{secrets.token_hex(3)}" for count in (10, 200)}
    connection = mariadb_admin()
    try:
        found = {}
        with connection.cursor() as cursor:
            for count, name in names.items():
                cursor.execute(f"CREATE DATABASE `{name}`")
                columns = ", ".join(f"c{i} {'int' if i % 2 else 'text'}" for i in range(1, 20))
                for table in range(count):
                    cursor.execute(f"CREATE TABLE `{name}`.t{table} (id bigint PRIMARY KEY, {columns})")
                found[count] = count_statements(app, "platform.mysql", {
                    "host": "127.0.0.1", "port": "3306", "user": "root", "password": "", "filter_dbs": name})
        assert found[10][1] == 10 and found[200][1] == 200
        assert found[200][0] == found[10][0] <= 12, found
    finally:
        with connection.cursor() as cursor:
            for name in names.values():
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()
