"""Discovery time of a database source as it grows: PostgreSQL (and MariaDB when it runs) databases
of N tables × 20 columns each, discovered by the database connector in this process (what the
check job calls), median of a few runs, with the number of catalog statements sent.

``python -m bench.discovery [--tables 200 2000] [--runs 3]`` prints the table alone (writes no
file); ``make bench`` includes it in bench/results/latest.md. The ratio column is the time for N
tables ÷ the time for the smallest N: with a bounded number of queries it grows with the rows the
catalog returns, not with one round trip per table.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pymysql
from sqlalchemy import Engine, event

from app.catalog import load_catalog
from app.config import DEFAULT_REPORT_CARDS
from app.connectors.base import SourceTarget
from app.connectors.database import DatabaseConnector
from app.connectors.network import NetworkPolicy, parse_networks

COLUMNS = 20
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MARIADB: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@contextmanager
def postgres_database(tables: int) -> Iterator[dict[str, Any]]:
    name = f"bench_discovery_{tables}_{secrets.token_hex(3)}"
    with psycopg.connect(**PG, dbname="test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        columns = ", ".join(f"c{i} {'integer' if i % 2 else 'text'}" for i in range(1, COLUMNS))
        with psycopg.connect(**PG, dbname=name, autocommit=True) as connection:
            connection.execute(f"""DO $$ BEGIN FOR i IN 1..{tables} LOOP
                EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, {columns})', i); END LOOP; END $$""")
        yield {"host": "127.0.0.1", "port": "5432", "dbname": name, "user": "postgres", "password": "unused"}
    finally:
        with psycopg.connect(**PG, dbname="test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def mariadb_database(tables: int) -> Iterator[dict[str, Any]]:
    name = f"bench_discovery_{tables}_{secrets.token_hex(3)}"
    connection = pymysql.connect(**MARIADB, autocommit=True)
    columns = ", ".join(f"c{i} {'int' if i % 2 else 'text'}" for i in range(1, COLUMNS))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            for table in range(tables):
                cursor.execute(f"CREATE TABLE `{name}`.t{table} (id bigint PRIMARY KEY, {columns})")
        yield {"host": "127.0.0.1", "port": "3306", "user": "root", "password": "", "filter_dbs": name}
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


def timed_discovery(card: Any, properties: dict[str, Any], runs: int) -> dict[str, Any]:
    connector = DatabaseConnector(NetworkPolicy(parse_networks("127.0.0.0/8")))
    target = SourceTarget(source_id=1, account_id=1, name="bench", config_generation=1, card=card,
                          properties=properties)
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(args[2])

    seconds, streams = [], 0
    for _ in range(runs):
        statements.clear()
        event.listen(Engine, "before_cursor_execute", counted)
        started = time.perf_counter()
        try:
            streams = len(connector.discover(target))
        finally:
            event.remove(Engine, "before_cursor_execute", counted)
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "streams": streams, "statements": len(statements)}


def _available(check: Any) -> bool:
    try:
        check()
    except Exception:  # the server is not running here: that row is skipped
        return False
    return True


def measure(sizes: list[int], runs: int = 3) -> dict[str, dict[str, Any]]:
    """{database: {tables: {median_s, streams, statements, ratio}}} for each server that runs."""
    catalog = load_catalog(str(DEFAULT_REPORT_CARDS))
    servers = {
        "postgresql": (catalog.get("platform.hp-postgres"), postgres_database,
                       lambda: psycopg.connect(**PG, dbname="test").close()),
        "mariadb": (catalog.get("platform.mysql"), mariadb_database,
                    lambda: pymysql.connect(**MARIADB).close()),
    }
    results: dict[str, dict[str, Any]] = {}
    for server, (card, database, probe) in servers.items():
        if not _available(probe):
            continue
        rows: dict[str, Any] = {}
        for tables in sorted(sizes):
            with database(tables) as properties:
                rows[str(tables)] = timed_discovery(card, properties, runs)
        smallest = rows[str(min(sizes))]["median_s"] or 1e-9
        for row in rows.values():
            row["ratio"] = round(row["median_s"] / smallest, 2)
        results[server] = rows
    return results


def markdown(results: dict[str, dict[str, Any]], runs: int) -> list[str]:
    lines = ["## Database discovery (tables × 20 columns, in process, median of " f"{runs})", "",
             "| database | tables | streams | catalog statements | discovery s | ÷ smallest |",
             "|---|---:|---:|---:|---:|---:|"]
    for server, rows in results.items():
        for tables, row in rows.items():
            lines.append(f"| {server} | {int(tables):,} | {row['streams']:,} | {row['statements']} | "
                         f"{row['median_s']} | {row['ratio']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(markdown(measure(args.tables, args.runs), args.runs)))


if __name__ == "__main__":
    main()
