"""Tables as Singer catalog entries, in the shape Stitch's own database taps give them.

* ``tap_stream_id``: ``<database>-<schema>-<table>`` on PostgreSQL (as tap-postgres), and
  ``<database>-<table>`` on MySQL/MariaDB, where a database *is* the schema (as tap-mysql);
  ``stream_name`` is the table's name (not unique across schemas, as in Stitch).
* stream metadata: ``database-name``, ``schema-name`` (PostgreSQL only, as the taps),
  ``is-view``, ``row-count`` (the catalog's estimate, never a count; tables only),
  ``table-key-properties`` (the primary key; ``[]`` for views and tables without one),
  ``valid-replication-keys`` (integer, date and timestamp columns), ``selected-by-default: false``
  and ``forced-replication-method: FULL_TABLE`` where nothing else can work: no replication key,
  and a view (never log-based) or a source without log-based replication.
* field metadata: ``sql-datatype`` (the type as the database writes it), ``inclusion``
  (``automatic`` for key columns, ``unsupported`` for types the service cannot represent, else
  ``available``), ``selected-by-default`` (true unless unsupported), and for unsupported ones
  ``unsupported-description``.
* schema: ``{"type": "object", "properties": {column: JSON Schema}}``; a nullable column's type
  admits ``null``; an unsupported column's schema is ``{}``.
* ``table_name`` beside them in the entry (as both taps write it): the taps read it back from the
  catalog they are given, so the hand-off (``GET …/catalog``) of a database source runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import DiscoveredStream


@dataclass(frozen=True)
class Column:
    name: str
    sql_datatype: str
    schema: Mapping[str, Any] | None  # None: a type the service cannot represent
    nullable: bool
    replication_key: bool = False  # integers, dates and timestamps


@dataclass(frozen=True)
class Table:
    database: str
    schema: str | None  # None where the database is the schema (MySQL)
    name: str
    is_view: bool
    row_count: int | None
    columns: Sequence[Column] = field(default_factory=tuple)
    primary_key: Sequence[str] = field(default_factory=tuple)

    @property
    def tap_stream_id(self) -> str:
        return "-".join(part for part in (self.database, self.schema, self.name) if part is not None)


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema admitting ``null`` too."""
    widened = dict(schema)
    kind = widened.get("type")
    if isinstance(kind, str):
        widened["type"] = ["null", kind]
    elif isinstance(kind, list) and "null" not in kind:
        widened["type"] = ["null", *kind]
    if "enum" in widened and None not in widened["enum"]:
        widened["enum"] = [*widened["enum"], None]
    return widened


def _field_metadata(column: Column, is_key: bool) -> dict[str, Any]:
    if column.schema is None:
        return {"inclusion": "unsupported", "selected-by-default": False, "sql-datatype": column.sql_datatype,
                "unsupported-description": f"the service cannot represent {column.sql_datatype} values"}
    return {"inclusion": "automatic" if is_key else "available", "selected-by-default": True,
            "sql-datatype": column.sql_datatype}


def discovered_stream(table: Table, *, log_based: bool) -> DiscoveredStream:
    supported = {c.name for c in table.columns if c.schema is not None}
    keys = [] if table.is_view else [name for name in table.primary_key if name in supported]
    replication_keys = [c.name for c in table.columns if c.replication_key and c.name in supported]
    stream: dict[str, Any] = {"selected-by-default": False, "database-name": table.database}
    if table.schema is not None:
        stream["schema-name"] = table.schema
    stream.update({"is-view": table.is_view, "table-key-properties": keys,
                   "valid-replication-keys": replication_keys})
    if table.row_count is not None and not table.is_view:
        stream["row-count"] = max(int(table.row_count), 0)
    if not replication_keys and (table.is_view or not log_based):
        stream["forced-replication-method"] = "FULL_TABLE"
    metadata = [{"breadcrumb": [], "metadata": stream}]
    properties: dict[str, Any] = {}
    for column in table.columns:
        schema = {} if column.schema is None else (nullable(column.schema) if column.nullable else dict(column.schema))
        properties[column.name] = schema
        metadata.append({"breadcrumb": ["properties", column.name],
                         "metadata": _field_metadata(column, column.name in keys)})
    return DiscoveredStream(tap_stream_id=table.tap_stream_id, stream_name=table.name,
                            schema={"type": "object", "properties": properties}, metadata=tuple(metadata),
                            extra={"table_name": table.name})
