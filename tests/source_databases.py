"""Source databases for the database connector's tests, on this machine's real servers: PostgreSQL
(127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root).

Each fixture creates databases of its own with tables, views, keys, every common column type and a
table the source's user may not read (a role or user made for the test), and drops them all
afterwards. The users' passwords are planted secrets: the suite's scan fails if one ever shows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pymysql
import pytest

from .servers.planted import new_secret

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

PG_SCHEMA = """
CREATE SCHEMA shop;
CREATE SCHEMA hidden;
CREATE TYPE shop.mood AS ENUM ('happy', 'sad', 'it''s complicated');
CREATE TABLE shop.customers (
    id bigserial PRIMARY KEY,
    email varchar(200) NOT NULL,
    name text,
    code char(3),
    age smallint,
    visits integer NOT NULL DEFAULT 0,
    balance numeric(10, 2),
    ratio double precision,
    score real,
    active boolean,
    flags bit(1),
    born date,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp without time zone,
    wakes_at time,
    mood shop.mood,
    tags text[],
    lucky integer[],
    profile jsonb,
    raw json,
    external_id uuid,
    address inet,
    photo bytea,
    location point
);
CREATE TABLE shop.orders (
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    order_no integer NOT NULL,
    total numeric,
    PRIMARY KEY (customer_id, order_no)
);
CREATE TABLE shop.audit_log (line text);
CREATE VIEW shop.big_spenders AS SELECT id, email, balance FROM shop.customers WHERE balance > 1000;
CREATE TABLE shop.payroll (id integer PRIMARY KEY, salary numeric);
CREATE TABLE hidden.secrets (id integer PRIMARY KEY);
CREATE TABLE public.canary (id integer PRIMARY KEY);
INSERT INTO shop.customers (email, name) SELECT 'c' || g || '@example.com', 'C ' || g FROM generate_series(1, 50) g;
INSERT INTO public.canary VALUES (1);
ANALYZE shop.customers;
"""

MARIADB_TABLES = """
CREATE TABLE {db}.customers (
    id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email varchar(200) NOT NULL,
    name text,
    age tinyint,
    active tinyint(1),
    flags bit(1),
    visits bigint NOT NULL DEFAULT 0,
    balance decimal(10,2),
    ratio double,
    born date,
    created_at datetime,
    updated_at timestamp NULL,
    wakes_at time,
    mood enum('happy','sad','it''s, (complicated)'),
    profile json,
    photo blob,
    location point
);
CREATE TABLE {db}.orders (customer_id int unsigned NOT NULL, order_no int NOT NULL, total decimal(12,0),
                          PRIMARY KEY (customer_id, order_no));
CREATE TABLE {db}.payroll (id int PRIMARY KEY, salary decimal(10,2));
CREATE TABLE {db}.canary (id int PRIMARY KEY);
CREATE VIEW {db}.big_spenders AS SELECT id, email, balance FROM {db}.customers WHERE balance > 1000;
INSERT INTO {db}.canary VALUES (1);
"""


@dataclass(frozen=True)
class SourceDatabase:
    """Where a test's source database is, and the restricted user that reads it."""

    host: str
    port: int
    database: str
    user: str
    password: str
    other_database: str | None = None


def pg_admin(dbname: str = "test") -> psycopg.Connection:
    return psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True)


def _suffix() -> str:
    return f"{os.getpid()}_{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def postgres_source() -> Iterator[SourceDatabase]:
    """A database with shop.* tables and views, a user who may read all of shop but payroll, and
    a schema (hidden) they may not use."""
    suffix = _suffix()
    database, user, password = f"connect_src_{suffix}", f"connect_reader_{suffix}", new_secret("pg-password")
    with pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
        admin.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
    try:
        with pg_admin(database) as connection:
            connection.execute(PG_SCHEMA)
            connection.execute(f'GRANT USAGE ON SCHEMA shop TO "{user}"')
            connection.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA shop TO "{user}"')
            connection.execute(f'REVOKE SELECT ON shop.payroll FROM "{user}"')
            connection.execute(f'REVOKE ALL ON SCHEMA hidden FROM "{user}"')
        yield SourceDatabase("127.0.0.1", 5432, database, user, password)
    finally:
        with pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{user}"')


def mariadb_admin() -> pymysql.connections.Connection:
    return pymysql.connect(**MARIADB_ADMIN, autocommit=True)


@pytest.fixture(scope="module")
def mariadb_source() -> Iterator[SourceDatabase]:
    """Two databases; a user who may read all of the first but payroll, and nothing of the second."""
    suffix = _suffix()
    database, other = f"connect_src_{suffix}", f"connect_other_{suffix}"
    user, password = f"connect_{secrets.token_hex(4)}", new_secret("maria-password")
    connection = mariadb_admin()
    try:
        with connection.cursor() as cursor:
            for name in (database, other):
                cursor.execute(f"CREATE DATABASE `{name}`")
            for statement in filter(str.strip, MARIADB_TABLES.format(db=f"`{database}`").split(";")):
                cursor.execute(statement)
            cursor.execute(f"CREATE TABLE `{other}`.elsewhere (id int PRIMARY KEY)")
            cursor.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            for table in ("customers", "orders", "canary", "big_spenders"):
                cursor.execute(f"GRANT SELECT ON `{database}`.`{table}` TO '{user}'@'127.0.0.1'")
        yield SourceDatabase("127.0.0.1", 3306, database, user, password, other_database=other)
    finally:
        with connection.cursor() as cursor:
            for name in (database, other):
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        connection.close()
