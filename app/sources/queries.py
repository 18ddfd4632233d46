"""The read model of sources: :class:`SourceView`, one source, a page of them, their events.

Reads are plain Core rows (no ORM objects to build, track or flush, since nothing read here is
changed), each in one transaction. :func:`live_view` is also the read that a write use case
starts with (``lock=True``), in the caller's transaction.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import RowMapping, Select, bindparam, select
from sqlalchemy.orm import Session, lazyload

from ..crypto import Sealed
from ..errors import ApiError, NotFound, Problem
from ..models import Source, SourceCredential, SourceEvent, table_of
from ..schemas import id_from_text

_SOURCES = table_of(Source)
_CREDENTIALS = table_of(SourceCredential)
_VIEW_FIELDS = (
    "id", "account_id", "type", "name", "display_name", "properties", "version", "config_generation",
    "discovered_generation", "connected_at", "broken_at", "broken_reason", "created_at", "updated_at",
    "paused_at", "system_paused_at", "deleted_at", "announced_step", "announced_state",
)


@dataclass(frozen=True, slots=True)
class SourceView:
    """A source as a response shows it: its columns and the names of its credentials (never their
    values). What reads return, and what the write use cases read, change and return."""

    id: int
    account_id: int
    type: str
    name: str
    display_name: str
    properties: dict[str, Any]
    version: int
    config_generation: int
    discovered_generation: int | None
    connected_at: datetime | None
    broken_at: datetime | None
    broken_reason: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None
    system_paused_at: datetime | None
    deleted_at: datetime | None
    # What the webhooks last said (app/sources/lifecycle.py); never in a response.
    announced_step: str | None
    announced_state: str | None
    credential_names: frozenset[str]

    @classmethod
    def from_row(cls, row: RowMapping, credential_names: frozenset[str]) -> SourceView:
        # Positional, in _VIEW_FIELDS order (a list page builds one per row).
        return cls(*(row[name] for name in _VIEW_FIELDS), credential_names)  # type: ignore[call-arg]


# A source as the step machine and the presenter read it: a view, or a loaded ORM row.
AnySource = Source | SourceView

_VIEW_COLUMNS = tuple(_SOURCES.c[name] for name in _VIEW_FIELDS)
_LIVE_OF_ACCOUNT = (_SOURCES.c.account_id == bindparam("account_id"), _SOURCES.c.deleted_at.is_(None))
# Built once: SQLAlchemy then reuses their compiled form without building a statement per request.
# One source and its credential names in one query: a row per credential (or one with a null name).
_READ_VIEW = (select(*_VIEW_COLUMNS, _CREDENTIALS.c.name.label("credential_name"))
              .select_from(_SOURCES.outerjoin(_CREDENTIALS, _CREDENTIALS.c.source_id == _SOURCES.c.id))
              .where(_SOURCES.c.id == bindparam("source_id"), *_LIVE_OF_ACCOUNT))
# A locking read must not join: on PostgreSQL a statement that waited for the row lock re-reads the
# locked row but keeps the joined rows of its snapshot from before the wait, so it would miss a
# credential the previous lock holder committed (and insert it twice: a 500, seen in
# tests/test_concurrency_pg.py). Its credential names are read by a second query once the lock is held.
_LOCK_VIEW = (select(*_VIEW_COLUMNS).where(_SOURCES.c.id == bindparam("source_id"), *_LIVE_OF_ACCOUNT)
              .with_for_update())
_CREDENTIAL_NAMES_OF = select(_CREDENTIALS.c.name).where(_CREDENTIALS.c.source_id == bindparam("source_id"))
_CREDENTIAL_NAMES = (select(_CREDENTIALS.c.source_id, _CREDENTIALS.c.name)
                     .where(_CREDENTIALS.c.source_id.in_(bindparam("source_ids", expanding=True))))
_READ_ANY_VIEW = (select(*_VIEW_COLUMNS, _CREDENTIALS.c.name.label("credential_name"))
                  .select_from(_SOURCES.outerjoin(_CREDENTIALS, _CREDENTIALS.c.source_id == _SOURCES.c.id))
                  .where(_SOURCES.c.id == bindparam("source_id")))
# A live source with its sealed credentials, for a call that opens them (execute, the proxy): a
# row per credential (or one with a null name), in a read transaction.
_READ_SEALED = _READ_VIEW.add_columns(_CREDENTIALS.c.key_id, _CREDENTIALS.c.ciphertext)
# The read of app/sources/lifecycle.py at commit: the writer already holds the source's lock (so
# this waits for nothing and the join is safe); FOR UPDATE OF keeps two writers from announcing one
# move should a writer ever not hold it.
_ANNOUNCED_VIEW = _READ_ANY_VIEW.with_for_update(of=_SOURCES)
_LOCK_SOURCE = (select(Source).options(lazyload(Source.credentials))
                .where(Source.id == bindparam("source_id"), Source.account_id == bindparam("account_id"),
                       Source.deleted_at.is_(None)).with_for_update())


def live_view(session: Session, account_id: int, source_id: int, *, lock: bool) -> SourceView:
    """The account's live source in the caller's transaction (locked with ``lock``), or 404."""
    params = {"source_id": source_id, "account_id": account_id}
    connection = session.connection()
    # On SQLite a writer holds the database's write lock from BEGIN IMMEDIATE (begin_write), so
    # its first read already sees every committed credential: the one joined query is right there.
    if not lock or connection.dialect.name == "sqlite":
        view = _joined_view(session, _READ_VIEW, params)
        if view is None:
            raise NotFound(f"source {source_id} not found")
        return view
    row = connection.execute(_LOCK_VIEW, params).mappings().one_or_none()
    if row is None:
        raise NotFound(f"source {source_id} not found")
    names = frozenset(connection.execute(_CREDENTIAL_NAMES_OF, {"source_id": source_id}).scalars())
    return SourceView.from_row(row, names)


def view_of(session: Session, source_id: int) -> SourceView | None:
    """The source with this id, live or deleted (what an idempotent replay answers with)."""
    return _joined_view(session, _READ_ANY_VIEW, {"source_id": source_id})


def sealed_view(session: Session, account_id: int, source_id: int) -> tuple[SourceView, dict[str, Sealed]]:
    """The account's live source and its credentials, still sealed, by name (one query), or 404."""
    params = {"source_id": source_id, "account_id": account_id}
    rows = session.connection().execute(_READ_SEALED, params).mappings().all()
    if not rows:
        raise NotFound(f"source {source_id} not found")
    sealed = {row["credential_name"]: Sealed(row["key_id"], row["ciphertext"])
              for row in rows if row["credential_name"] is not None}
    return SourceView.from_row(rows[0], frozenset(sealed)), sealed


def announced_view(session: Session, source_id: int) -> SourceView | None:
    """The source with this id, live or deleted, locked, as a transaction leaves it."""
    return _joined_view(session, _ANNOUNCED_VIEW, {"source_id": source_id})


def _joined_view(session: Session, query: Select[Any], params: dict[str, Any]) -> SourceView | None:
    rows = session.connection().execute(query, params).mappings().all()
    if not rows:
        return None
    names = frozenset(row["credential_name"] for row in rows if row["credential_name"] is not None)
    return SourceView.from_row(rows[0], names)


def locked_source(session: Session, account_id: int, source_id: int) -> Source:
    """The account's live source as an ORM object, its row locked, for a use case that writes
    through the unit of work (credentials load when first read), or 404."""
    source = session.scalars(_LOCK_SOURCE, {"source_id": source_id, "account_id": account_id}).one_or_none()
    if source is None:
        raise NotFound(f"source {source_id} not found")
    return source


def read_source(session: Session, account_id: int, source_id: int) -> SourceView:
    """The account's live source as a response shows it (one query), or 404."""
    with session.begin():
        return live_view(session, account_id, source_id, lock=False)


def encode_cursor(source_id: int) -> str:
    return base64.urlsafe_b64encode(str(source_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor of :func:`encode_cursor` holds: its exact ASCII digits, nothing int() would
    also read ("４", " 4", "4_0")."""
    value: int | None
    try:
        value = id_from_text(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if value is None:
        raise ApiError("cursor is not one this service gave out", status=400,
                       details=[Problem("cursor", "invalid cursor").detail()])
    return value


@lru_cache(maxsize=256)
def _page_query(limit: int, after_cursor: bool) -> Select[Any]:
    """A page of live sources, newest first.

    The ORDER BY names every column of ``ix_sources_account_live_id`` (account_id, deleted_at, id),
    all descending: the first two are fixed by the WHERE, so the order is by id, and PostgreSQL
    sees that a backward scan of the index returns the rows in that order. With ``ORDER BY id``
    alone it does not (``deleted_at IS NULL`` is no equality to it) and may walk the primary key
    from the newest row down instead, through every newer row of other accounts.
    """
    query = select(*_VIEW_COLUMNS).where(*_LIVE_OF_ACCOUNT)
    if after_cursor:
        query = query.where(_SOURCES.c.id < bindparam("before_id"))
    return (query.order_by(_SOURCES.c.account_id.desc(), _SOURCES.c.deleted_at.desc(), _SOURCES.c.id.desc())
            .limit(limit + 1))


def list_sources(
    session: Session, account_id: int, limit: int, cursor: str | None
) -> tuple[list[SourceView], str | None]:
    """Newest first, by keyset on id (so a deep page costs what the first does): one transaction,
    two queries (the page, then the credential names of all its sources)."""
    params: dict[str, Any] = {"account_id": account_id}
    if cursor:
        params["before_id"] = decode_cursor(cursor)
    with session.begin():
        connection = session.connection()
        rows = connection.execute(_page_query(limit, bool(cursor)), params).mappings().all()
        page = rows[:limit]
        names: dict[int, set[str]] = {row["id"]: set() for row in page}
        if page:
            for source_id, name in connection.execute(_CREDENTIAL_NAMES, {"source_ids": list(names)}):
                names[source_id].add(name)
    next_cursor = encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    return [SourceView.from_row(row, frozenset(names[row["id"]])) for row in page], next_cursor


def list_events(session: Session, account_id: int, source_id: int) -> list[SourceEvent]:
    with session.begin():
        live_view(session, account_id, source_id, lock=False)
        return list(session.scalars(
            select(SourceEvent).where(SourceEvent.source_id == source_id).order_by(SourceEvent.id)))
