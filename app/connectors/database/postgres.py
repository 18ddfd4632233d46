"""The PostgreSQL protocol (PostgreSQL, Cloud SQL for PostgreSQL, Redshift) through psycopg.

The connection is made to the address the network rules vetted (``hostaddr``) while ``host``
keeps the name for TLS; every session is read-only with a statement timeout. Discovery of one
database is four catalog queries, whatever its number of tables: relations, columns, primary keys
and enum labels. Only relations the user may read (``has_any_column_privilege``) in schemas they
may use are listed, and only the columns they may read; ``pg_catalog``, ``information_schema`` and
the toast/temp schemas never are. Schema filters are bound parameters.

Types follow tap-postgres: integers with their range, ``numeric`` as a number with
``multipleOf``, dates and timestamps as ``date-time`` strings (as Stitch's tap writes them),
times as ``time``, json/jsonb as any JSON value, arrays of a supported element type, enums with
their labels; binary, geometric, range and composite types are unsupported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, text

from ..base import ConnectorFailure
from .section import ConnectionSettings
from .streams import Column, Table

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
_RELATIONS_WHERE = """
    c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
    AND has_schema_privilege(n.oid, 'USAGE') AND has_any_column_privilege(c.oid, 'SELECT')
"""
_SCHEMA_FILTER = " AND n.nspname IN :schemas"
RELATIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint AS estimate
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {where} ORDER BY n.nspname, c.relname
"""
COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) AS sql_type, NOT a.attnotnull AS nullable,
       COALESCE(bt.typname, t.typname) AS type_name, COALESCE(bt.typtype, t.typtype) AS type_kind,
       COALESCE(NULLIF(t.typbasetype, 0), t.oid) AS type_oid,
       et.typname AS element_name, et.typtype AS element_kind, et.oid AS element_oid
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_type et ON et.oid = COALESCE(bt.typelem, t.typelem) AND COALESCE(bt.typcategory, t.typcategory) = 'A'
WHERE a.attnum > 0 AND NOT a.attisdropped AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
  AND {where}
ORDER BY a.attrelid, a.attnum
"""
PRIMARY_KEYS = """
SELECT i.indrelid, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indisprimary AND {where}
ORDER BY i.indrelid, array_position(i.indkey::int2[], a.attnum)
"""
ENUM_LABELS = "SELECT enumtypid, enumlabel FROM pg_enum ORDER BY enumtypid, enumsortorder"

INTEGER_RANGES = {"int2": 16, "int4": 32, "int8": 64}
STRING_TYPES = {"text", "varchar", "bpchar", "char", "name", "citext", "uuid", "inet", "cidr", "macaddr",
                "macaddr8", "xml", "money", "interval", "bit", "varbit", "tsvector", "tsquery", "oid"}
TIMESTAMP_TYPES = {"timestamp", "timestamptz", "date"}
_LENGTH = re.compile(r"\((\d+)\)$")
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)")


def relations_where(schemas: tuple[str, ...]) -> str:
    return _RELATIONS_WHERE + (_SCHEMA_FILTER if schemas else "")


def _query(sql: str, schemas: tuple[str, ...]) -> Any:
    statement = text(sql.format(where=relations_where(schemas)))
    return statement.bindparams(bindparam("schemas", value=list(schemas), expanding=True)) if schemas else statement


def scalar_schema(type_name: str, sql_type: str, enums: Mapping[int, list[str]], type_oid: int) -> dict | None:
    """The JSON Schema of one value of a (non-array) type, or None when it cannot be represented."""
    if type_name in INTEGER_RANGES:
        bits = INTEGER_RANGES[type_name]
        return {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1}
    if type_name == "numeric":
        return _numeric_schema(sql_type)
    if type_name in ("float4", "float8"):
        return {"type": "number"}
    if type_name == "bool" or sql_type == "bit(1)":
        return {"type": "boolean"}
    if type_name in TIMESTAMP_TYPES:
        return {"type": "string", "format": "date-time"}
    if type_name in ("time", "timetz"):
        return {"type": "string", "format": "time"}
    if type_name in ("json", "jsonb"):
        return {"type": ["object", "array", "string", "number", "boolean"]}
    if type_name == "hstore":
        return {"type": "object", "additionalProperties": {"type": ["null", "string"]}}
    if type_oid in enums:
        return {"type": "string", "enum": list(enums[type_oid])}
    if type_name in STRING_TYPES:
        schema: dict[str, Any] = {"type": "string"}
        length = _LENGTH.search(sql_type)
        if length and type_name in ("varchar", "bpchar"):
            schema["maxLength"] = int(length.group(1))
        return schema
    return None


def _numeric_schema(sql_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    match = _NUMERIC.match(sql_type)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        bound = 10 ** (precision - scale)
        schema.update({"multipleOf": 10 ** -scale if scale else 1, "maximum": bound, "exclusiveMaximum": True,
                       "minimum": -bound, "exclusiveMinimum": True})
    return schema


def column_of(row: Mapping[Any, Any], enums: Mapping[int, list[str]]) -> Column:
    if row["element_name"] is not None:
        item = scalar_schema(row["element_name"], row["sql_type"].removesuffix("[]"), enums, row["element_oid"])
        schema = None if item is None else {"type": "array", "items": {**item, "type": _with_null(item["type"])}}
        is_key_type = False
    else:
        schema = scalar_schema(row["type_name"], row["sql_type"], enums, row["type_oid"])
        is_key_type = row["type_name"] in INTEGER_RANGES or row["type_name"] in TIMESTAMP_TYPES
    return Column(name=row["attname"], sql_datatype=row["sql_type"], schema=schema, nullable=bool(row["nullable"]),
                  replication_key=is_key_type)


def _with_null(kind: Any) -> list[Any]:
    kinds = kind if isinstance(kind, list) else [kind]
    return ["null", *kinds]


def discover(connection: Connection, settings: ConnectionSettings, database: str) -> list[Table]:
    """The readable tables and views of the database ``connection`` is connected to."""
    schemas = settings.filter_schemas
    relations = connection.execute(_query(RELATIONS, schemas)).mappings().all()
    enums: dict[int, list[str]] = defaultdict(list)
    for type_oid, label in connection.execute(text(ENUM_LABELS)):
        enums[type_oid].append(label)
    columns: dict[int, list[Column]] = defaultdict(list)
    for row in connection.execute(_query(COLUMNS, schemas)).mappings():
        columns[row["attrelid"]].append(column_of(row, enums))
    keys: dict[int, list[str]] = defaultdict(list)
    for relation_id, name in connection.execute(_query(PRIMARY_KEYS, schemas)):
        keys[relation_id].append(name)
    return [Table(database=database, schema=r["nspname"], name=r["relname"], is_view=r["relkind"] == "v",
                  row_count=None if r["relkind"] == "v" else r["estimate"], columns=tuple(columns[r["oid"]]),
                  primary_key=tuple(keys[r["oid"]])) for r in relations]


def connect(settings: ConnectionSettings, address: str, database: str | None, *, connect_timeout: float,
            statement_timeout: float, startup_options: bool = True) -> Any:
    """A psycopg connection to the vetted ``address``, read-only, with a statement timeout."""
    import psycopg

    timeout_ms = int(statement_timeout * 1000)
    session_options = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
    parameters: dict[str, Any] = {
        "host": settings.host, "hostaddr": address, "port": settings.port, "dbname": database or "postgres",
        "user": settings.user, "password": settings.password, "connect_timeout": max(2, int(connect_timeout)),
        "sslmode": "require" if settings.ssl else "prefer", "application_name": "connect"}
    if startup_options:
        parameters["options"] = session_options
    connection = psycopg.connect(**parameters)
    if not startup_options:  # Redshift takes no startup options: the same settings as statements
        connection.execute(f"SET statement_timeout TO {timeout_ms}")
        connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        connection.commit()
    return connection


# (pattern in the server's or libpq's message, error type, who fixes it, message for the user)
_FAILURES: tuple[tuple[str, str, str, str], ...] = (
    ("password authentication failed", "credentials_rejected", "user",
     "the database refused the user name or password"),
    ("does not exist", "unknown_database_or_user", "user", ""),
    # A role that may not log in (NOLOGIN, or its VALID UNTIL passed): the grant was taken back.
    ("is not permitted to log in", "credentials_rejected", "user", "the database user may not log in"),
    ("password is expired", "credentials_rejected", "user", "the database user's password has expired"),
    ("no pg_hba.conf entry", "connection_not_allowed", "user",
     "the database server does not accept connections from this service for that user and database "
     "(pg_hba.conf)"),
    ("server does not support SSL, but SSL was required", "ssl_refused", "user",
     "the server does not support SSL, but the source requires it (ssl is true)"),
    ("certificate verify failed", "ssl_failed", "user", "the server's SSL certificate could not be verified"),
    ("too many clients", "too_many_connections", "time", "the database server has too many connections"),
    ("too many connections", "too_many_connections", "time", "the database server has too many connections"),
    ("remaining connection slots are reserved", "too_many_connections", "time",
     "the database server has too many connections"),
    ("the database system is", "source_unavailable", "time", "the database server is starting up or shutting down"),
    ("timeout expired", "source_unreachable", "time", "the database server did not answer in time"),
    ("statement timeout", "source_unavailable", "time", "a catalog query took too long"),
    ("permission denied", "permission_denied", "user", "the user may not read the database's catalog"),
)
_QUOTED = re.compile(r'(role|database) "([^"]{0,200})" does not exist')


def failure(error: BaseException) -> ConnectorFailure | None:
    """A psycopg error as the user should hear it (never the password, never a DSN)."""
    import psycopg

    if not isinstance(error, psycopg.Error):
        return None
    text_ = str(error)
    for pattern, error_type, fixed_by, message in _FAILURES:
        if pattern in text_:
            if error_type == "unknown_database_or_user":
                return _unknown(text_)
            return ConnectorFailure(error_type, message, fixed_by=fixed_by, operator_detail=text_[:500])  # type: ignore[arg-type]
    if isinstance(error, psycopg.OperationalError):
        return ConnectorFailure("source_unreachable", "the database server cannot be reached", fixed_by="time",
                                operator_detail=text_[:500])
    return ConnectorFailure("discovery_failed", "the database's catalog could not be read", fixed_by="operator",
                            operator_detail=text_[:500])


def _unknown(message: str) -> ConnectorFailure:
    match = _QUOTED.search(message)
    if match and match.group(1) == "role":
        return ConnectorFailure("credentials_rejected", f"the database has no user {match.group(2)!r}",
                                fixed_by="user", operator_detail=message[:500])
    name = f" {match.group(2)!r}" if match else ""
    return ConnectorFailure("unknown_database", f"the server has no database{name}", fixed_by="user",
                            operator_detail=message[:500])


def discovery_databases(settings: ConnectionSettings) -> Iterable[str]:
    """The databases discovery connects to: ``filter_dbs`` when given, else the source's database."""
    return settings.filter_dbs or (settings.database or "postgres",)
