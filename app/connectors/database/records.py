"""Reading a table's records for execute: one keyset-paginated ``SELECT`` per page.

Only the selected columns are read, every name quoted by the dialect's own identifier preparer
(the names come from discovery, i.e. from the database's catalog, but are quoted all the same) and
every value a bound parameter, untyped (``NullType``), so that the database casts a key or a
cursor's value (a timestamp as ISO 8601 text) to its column's type. A table with a primary key
pages by it: ``WHERE (k1, k2) > (:k0, :k1) ORDER BY k1, k2 LIMIT n+1`` (one extra row says
whether there is a next page), so a page costs the same wherever it is. A table without one (a
view) pages by ``OFFSET``, ordered by its columns: stable only while nobody writes, which is the
best a keyless relation allows.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import NullType


def table_name(connection: Connection, metadata: Mapping[str, Any], stream_name: str) -> str:
    """The quoted ``schema.table`` (PostgreSQL) or ``database.table`` (MySQL) of a stream."""
    quote = connection.dialect.identifier_preparer.quote
    container = metadata.get("schema-name") or metadata.get("database-name")
    return f"{quote(container)}.{quote(stream_name)}" if container else quote(stream_name)


def _columns(connection: Connection, names: Sequence[str]) -> list[str]:
    quote = connection.dialect.identifier_preparer.quote
    return [quote(name) for name in names]


def select_page(connection: Connection, table: str, fields: Sequence[str], keys: Sequence[str], limit: int,
                position: Mapping[str, Any] | None, sortable: Sequence[str] = ()) -> tuple[list[dict[str, Any]],
                                                                                   dict[str, Any] | None]:
    """One page of records and where the next begins (None: this was the last page)."""
    columns = ", ".join(_columns(connection, fields))
    params: dict[str, Any] = {"limit": limit + 1}
    binds: list[Any] = []
    if keys:
        quoted = _columns(connection, keys)
        where = ""
        after = (position or {}).get("after")
        if after is not None:
            names = [f"k{i}" for i in range(len(keys))]
            where = f" WHERE ({', '.join(quoted)}) > ({', '.join(':' + n for n in names)})"
            binds += [_untyped(name, value) for name, value in zip(names, after, strict=True)]
        sql = f"SELECT {columns} FROM {table}{where} ORDER BY {', '.join(quoted)} LIMIT :limit"
    else:
        params["offset"] = int((position or {}).get("offset", 0))
        order = ", ".join(_columns(connection, sortable or fields))
        sql = f"SELECT {columns} FROM {table} ORDER BY {order} LIMIT :limit OFFSET :offset"
    rows = [dict(row) for row in connection.execute(text(sql).bindparams(*binds), params).mappings()]
    if len(rows) <= limit:
        return [json_record(row) for row in rows], None
    rows = rows[:limit]
    if keys:
        following = {"after": [json_value(rows[-1][key]) for key in keys]}
    else:
        following = {"offset": params["offset"] + limit}
    return [json_record(row) for row in rows], following


def select_one(connection: Connection, table: str, fields: Sequence[str], key: Mapping[str, Any]) -> dict | None:
    names = list(key)
    where = " AND ".join(f"{column} = :k{i}" for i, column in enumerate(_columns(connection, names)))
    statement = text(f"SELECT {', '.join(_columns(connection, fields))} FROM {table} WHERE {where}")
    statement = statement.bindparams(*(_untyped(f"k{i}", key[name]) for i, name in enumerate(names)))
    row = connection.execute(statement).mappings().first()
    return None if row is None else json_record(dict(row))


def _untyped(name: str, value: Any) -> Any:
    return bindparam(name, value=value, type_=NullType())


def json_record(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: json_value(value) for name, value in row.items()}


def json_value(value: Any) -> Any:
    """A column's value as JSON: times as ISO 8601 (as the taps write them), decimals as numbers."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Interface
                  | ipaddress.IPv6Interface | ipaddress.IPv4Network | ipaddress.IPv6Network | datetime.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return None  # never selected: discovery marks binary columns unsupported
    return value
