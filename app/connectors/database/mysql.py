"""The MySQL protocol (MySQL, MariaDB, Cloud SQL for MySQL) through PyMySQL.

PyMySQL is given a socket already connected to the address the network rules vetted, while its
``host`` keeps the name (for TLS); every session is read-only with a statement timeout
(``max_statement_time`` on MariaDB, ``max_execution_time`` on MySQL). Discovery is two catalog
queries over ``information_schema`` whatever the number of tables; ``filter_dbs`` is a bound
``IN`` list, and the system databases (``information_schema``, ``performance_schema``, ``mysql``,
``sys``) are never listed. ``information_schema`` shows a user only the tables they hold a
privilege on, so a table they may not touch is not listed (one on which they hold only, say,
INSERT is: MySQL's catalog does not tell SELECT apart without reading the grant tables).

Streams follow tap-mysql: ``<database>-<table>`` and ``database-name`` (a MySQL database is the
schema); types as tap-mysql maps them: integers with their range (unsigned too), ``tinyint(1)``
and ``bit(1)`` as booleans, ``decimal`` with ``multipleOf``, dates and times as ``date-time``
strings, ``json``, enums with their labels; binary, spatial and other bit types are unsupported.
"""

from __future__ import annotations

import socket
import ssl
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, bindparam, text

from ..base import ConnectorFailure
from .section import ConnectionSettings
from .streams import Column, Table

SYSTEM_DATABASES = ("information_schema", "performance_schema", "mysql", "sys")
TABLES = """
SELECT table_schema, table_name, table_type, table_rows FROM information_schema.tables
WHERE table_schema NOT IN :system {filter} ORDER BY table_schema, table_name
"""
COLUMNS = """
SELECT table_schema, table_name, column_name, data_type, column_type, is_nullable, column_key,
       character_maximum_length, numeric_scale
FROM information_schema.columns
WHERE table_schema NOT IN :system {filter} ORDER BY table_schema, table_name, ordinal_position
"""
INTEGER_BYTES = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}
STRING_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "set"}
DATETIME_TYPES = {"datetime", "timestamp", "date", "time"}


def _query(sql: str, databases: tuple[str, ...]) -> Any:
    statement = text(sql.format(filter="AND table_schema IN :databases" if databases else ""))
    params: list[Any] = [bindparam("system", value=list(SYSTEM_DATABASES), expanding=True)]
    if databases:
        params.append(bindparam("databases", value=list(databases), expanding=True))
    return statement.bindparams(*params)


def enum_labels(column_type: str) -> list[str]:
    """The labels of ``enum('a','it''s')``, unquoted (a small reader, not a regex: labels may hold
    commas, parentheses and doubled quotes)."""
    body = column_type[column_type.index("(") + 1:column_type.rindex(")")]
    labels, current, inside, index = [], [], False, 0
    while index < len(body):
        char = body[index]
        if inside and char == "'" and body[index + 1:index + 2] == "'":
            current.append("'")
            index += 1
        elif char == "'":
            inside = not inside
            if not inside:
                labels.append("".join(current))
                current = []
        elif inside:
            current.append(char)
        index += 1
    return labels


def column_schema(data_type: str, column_type: str, max_length: int | None, scale: int | None) -> dict | None:
    if data_type == "bit" or (data_type == "tinyint" and column_type.startswith("tinyint(1)")):
        return {"type": "boolean"} if column_type in ("bit(1)",) or data_type == "tinyint" else None
    if data_type in INTEGER_BYTES:
        bits = INTEGER_BYTES[data_type] * 8
        if "unsigned" in column_type:
            return {"type": "integer", "minimum": 0, "maximum": 2 ** bits - 1}
        return {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1}
    if data_type in ("float", "double", "real"):
        return {"type": "number"}
    if data_type == "decimal":
        return {"type": "number", "multipleOf": 10 ** -scale if scale else 1}
    if data_type == "json":
        return {"type": ["object", "array", "string", "number", "boolean"]}
    if data_type == "enum":
        return {"type": "string", "enum": enum_labels(column_type)}
    if data_type in STRING_TYPES:
        return {"type": "string", **({"maxLength": int(max_length)} if max_length else {})}
    if data_type in DATETIME_TYPES:
        return {"type": "string", "format": "date-time"}
    if data_type == "year":
        return {"type": "integer"}
    return None


def discover(connection: Connection, settings: ConnectionSettings, database: str | None) -> list[Table]:
    databases = settings.filter_dbs
    relations = connection.execute(_query(TABLES, databases)).mappings().all()
    columns: dict[tuple[str, str], list[Column]] = defaultdict(list)
    keys: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in connection.execute(_query(COLUMNS, databases)).mappings():
        where = (row["table_schema"], row["table_name"])
        data_type, column_type = row["data_type"].lower(), row["column_type"].lower()
        columns[where].append(Column(
            name=row["column_name"], sql_datatype=column_type,
            schema=column_schema(data_type, column_type, row["character_maximum_length"], row["numeric_scale"]),
            nullable=row["is_nullable"] == "YES",
            replication_key=(data_type in INTEGER_BYTES and not column_type.startswith("tinyint(1)"))
            or data_type in ("datetime", "timestamp", "date")))
        if row["column_key"] == "PRI":
            keys[where].append(row["column_name"])
    return [Table(database=r["table_schema"], schema=None, name=r["table_name"], is_view=r["table_type"] == "VIEW",
                  row_count=r["table_rows"], columns=tuple(columns[(r["table_schema"], r["table_name"])]),
                  primary_key=tuple(keys[(r["table_schema"], r["table_name"])])) for r in relations]


def connect(settings: ConnectionSettings, address: str, database: str | None, *, connect_timeout: float,
            statement_timeout: float) -> Any:
    """A PyMySQL connection over a socket to the vetted ``address``, read-only, with a timeout."""
    import pymysql

    context = None
    if settings.ssl:  # encrypted, as libpq's sslmode=require: the server must offer TLS
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    connection = pymysql.connections.Connection(
        host=settings.host, port=settings.port, user=settings.user, password=settings.password,
        database=database, connect_timeout=connect_timeout, read_timeout=statement_timeout + 5,
        write_timeout=statement_timeout + 5, ssl=context, charset="utf8mb4", autocommit=True, defer_connect=True)
    try:
        sock = socket.create_connection((address, settings.port), timeout=connect_timeout)
    except OSError as error:
        raise pymysql.err.OperationalError(2003, f"Can't connect to the server ({error.strerror or error})") from None
    connection.connect(sock)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            if "mariadb" in connection.get_server_info().lower():
                cursor.execute("SET SESSION max_statement_time = %s", (float(statement_timeout),))
            else:
                cursor.execute("SET SESSION max_execution_time = %s", (int(statement_timeout * 1000),))
    except BaseException:
        connection.close()
        raise
    return connection


_USER = {1045: ("credentials_rejected", "the database refused the user name or password"),
         1698: ("credentials_rejected", "the database refused the user name or password"),
         1044: ("access_denied", "the user may not use that database"),
         1049: ("unknown_database", "the server has no such database"),
         1130: ("connection_not_allowed", "the database server does not accept connections from this service's "
                                          "address for that user"),
         1129: ("connection_not_allowed", "the database server blocks this service's address after too many "
                                          "failed connections (FLUSH HOSTS clears it)"),
         2026: ("ssl_refused", "the server does not support SSL, but the source requires it (ssl is true)"),
         3159: ("ssl_required", "the server accepts only encrypted connections: set ssl to true"),
         1142: ("permission_denied", "the user may not read the database's catalog")}
_TIME = {1040: ("too_many_connections", "the database server has too many connections"),
         1203: ("too_many_connections", "the user has too many connections open"),
         1226: ("too_many_connections", "the user has too many connections open, or has used up another "
                                        "resource limit of the server"),
         2002: ("source_unreachable", "the database server cannot be reached"),
         2003: ("source_unreachable", "the database server cannot be reached"),
         2006: ("source_unavailable", "the database server went away"),
         2013: ("source_unavailable", "the connection to the database server was lost"),
         1969: ("source_unavailable", "a catalog query took too long"),
         3024: ("source_unavailable", "a catalog query took too long")}


def failure(error: BaseException) -> ConnectorFailure | None:
    import pymysql

    if not isinstance(error, pymysql.err.Error):
        return None
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    detail = str(error)[:500]
    if code in _USER:
        error_type, message = _USER[code]
        return ConnectorFailure(error_type, message, fixed_by="user", operator_detail=detail)
    if code in _TIME or isinstance(error, pymysql.err.OperationalError):
        error_type, message = _TIME.get(code or 0, ("source_unavailable", "the database server cannot be reached"))
        return ConnectorFailure(error_type, message, fixed_by="time", operator_detail=detail)
    return ConnectorFailure("discovery_failed", "the database's catalog could not be read", fixed_by="operator",
                            operator_detail=detail)
