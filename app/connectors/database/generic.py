"""SQL Server (pymssql) and Oracle (oracledb), installed as optional extras.

Discovery uses SQLAlchemy's inspector, whose ``get_multi_*`` calls read a schema's columns and
keys in a bounded number of queries on Oracle (SQL Server's inspector goes table by table). Types
are mapped from SQLAlchemy's generic types. Neither database runs on this project's machines, so
this path is exercised only up to "driver not installed"; the PostgreSQL and MySQL dialects are
the tested ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine.reflection import ObjectKind

from ..base import ConnectorFailure
from .section import ConnectionSettings
from .streams import Column, Table

SYSTEM_SCHEMAS = {"sys", "information_schema", "guest", "system", "xdb", "outln", "dbsnmp", "appqossys",
                  "ctxsys", "mdsys", "ordsys", "wmsys", "olapsys", "lbacsys", "dvsys", "gsmadmin_internal"}


def connect_mssql(settings: ConnectionSettings, address: str, database: str | None, *, connect_timeout: float,
                  statement_timeout: float) -> Any:
    import pymssql  # type: ignore[import-not-found]

    connection = pymssql.connect(server=address, port=str(settings.port), user=settings.user,
                                 password=settings.password, database=database or "",
                                 login_timeout=int(connect_timeout), timeout=int(statement_timeout), appname="connect")
    connection.autocommit(False)
    return connection


def connect_oracle(settings: ConnectionSettings, address: str, database: str | None, *, connect_timeout: float,
                   statement_timeout: float) -> Any:
    import oracledb  # type: ignore[import-not-found]

    connection = oracledb.connect(user=settings.user, password=settings.password, host=address, port=settings.port,
                                  sid=database, tcp_connect_timeout=connect_timeout)
    connection.call_timeout = int(statement_timeout * 1000)
    return connection


def _schema_of(kind: Any) -> tuple[dict[str, Any] | None, bool]:
    """(JSON Schema, usable as replication key) of a reflected SQLAlchemy type."""
    if isinstance(kind, sqltypes.Boolean):
        return {"type": "boolean"}, False
    if isinstance(kind, sqltypes.Integer):
        return {"type": "integer"}, True
    if isinstance(kind, sqltypes.Numeric):
        return {"type": "number"}, False
    if isinstance(kind, sqltypes.DateTime | sqltypes.Date):
        return {"type": "string", "format": "date-time"}, True
    if isinstance(kind, sqltypes.Time):
        return {"type": "string", "format": "time"}, False
    if isinstance(kind, sqltypes.JSON):
        return {"type": ["object", "array", "string", "number", "boolean"]}, False
    if isinstance(kind, sqltypes.String):
        return {"type": "string"}, False
    return None, False


def discover(connection: Connection, settings: ConnectionSettings, database: str | None) -> list[Table]:
    inspector = inspect(connection)
    schemas = settings.filter_schemas or tuple(
        s for s in inspector.get_schema_names() if s.lower() not in SYSTEM_SCHEMAS and not s.lower().startswith("db_"))
    tables = []
    for schema in schemas:
        views = set(inspector.get_view_names(schema=schema))
        columns = inspector.get_multi_columns(schema=schema, kind=ObjectKind.TABLE | ObjectKind.VIEW)
        keys = inspector.get_multi_pk_constraint(schema=schema, kind=ObjectKind.TABLE)
        for (_, name), reflected in sorted(columns.items(), key=lambda item: item[0][1]):
            built = []
            for column in reflected:
                schema_of, replication_key = _schema_of(column["type"])
                built.append(Column(name=column["name"], sql_datatype=str(column["type"]).lower(), schema=schema_of,
                                    nullable=bool(column.get("nullable", True)), replication_key=replication_key))
            key: Mapping[str, Any] = keys.get((schema, name)) or {}
            tables.append(Table(database=database or "", schema=schema, name=name, is_view=name in views,
                                row_count=None, columns=tuple(built),
                                primary_key=tuple(key.get("constrained_columns") or ())))
    return tables


_USER_MARKERS = ("login failed", "ora-01017", "ora-12514", "ora-12505", "ora-28000", "cannot open database")


def failure(error: BaseException) -> ConnectorFailure | None:
    message = str(error)
    if any(marker in message.lower() for marker in _USER_MARKERS):
        return ConnectorFailure("credentials_rejected", "the database refused the user name, password or database",
                                fixed_by="user", operator_detail=message[:500])
    module = type(error).__module__.split(".")[0]
    if module in ("pymssql", "_mssql", "oracledb"):
        return ConnectorFailure("source_unavailable", "the database server cannot be reached or answered with an "
                                "error", fixed_by="time", operator_detail=message[:500])
    return None
