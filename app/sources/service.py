"""Use cases of sources: create, update, read, list, delete, and their audit events.

Each use case is one transaction. Updates lock the source row (``SELECT … FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite) and merge the request into the newest stored state, so
two clients setting different properties at once both win; ``If-Match`` turns a stale write into
409 instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from ..catalog import Catalog
from ..catalog.access import access_denied
from ..catalog.cards import ReportCard
from ..crypto import Keyring, Sealed
from ..db import begin_write
from ..errors import ApiError, Conflict, Invalid, NotFound
from ..models import IdempotencyKey, Source, SourceCredential, SourceEvent, utcnow
from ..schemas import id_from_text
from ..templating import render
from .availability import type_unavailable
from .rules import DestinationRule, check_properties, derive_name, name_problem

CREDENTIAL_SENTINEL = object()  # stands for a stored credential's value, which is never compared
MAX_PAGE = 100
_SOURCES = Source.__table__
_CREDENTIALS = SourceCredential.__table__


@dataclass
class SourceChange:
    """What a create or update asks for, already parsed by the schema."""

    display_name: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    paused_at: datetime | None = None
    paused_at_given: bool = False
    # Extra properties supplied by the service itself (an OAuth secret_id): not checked against
    # read-only rules, but still against their schemas.
    system_properties: dict[str, Any] = field(default_factory=dict)
    # The result of an OAuth handshake to apply: redeemed into system_properties inside the
    # change's own transaction, so it is used up only if the change commits.
    secret_id: str | None = None


# Hooks that other modules register (the OAuth handshake fills properties from a secret_id,
# discovery queues a check when the credential steps complete), so this module need not import
# them. Each takes (session, source, card) and returns nothing.
after_properties_changed: list[Callable[[Session, Source, ReportCard, set[str]], None]] = []

# Set by app/oauth (``init_app``): takes (session, keyring, source, card, secret_id, the request's
# properties), uses the secret up and returns the property values it stands for, or raises the
# ApiError that says why it cannot be used.
redeem_secret: Callable[[Session, Keyring, Source, ReportCard, str, Mapping[str, Any]], dict[str, Any]] | None = None


def _system_properties(session: Session, keyring: Keyring, source: Source, card: ReportCard,
                       change: SourceChange) -> dict[str, Any]:
    if change.secret_id is None:
        return change.system_properties
    if redeem_secret is None:
        raise Invalid("secret_id is not accepted: the OAuth handshake is not set up in this service",
                      details=[{"field": "secret_id", "reason": "not accepted"}])
    redeemed = redeem_secret(session, keyring, source, card, change.secret_id, change.properties)
    return {**change.system_properties, **redeemed}


_INSERT_EVENT = SourceEvent.__table__.insert()


def record_event(session: Session, source: Source, type_: str, detail: dict | None = None) -> None:
    """Add an audit event to the current transaction. Events are only ever inserted, so it is one
    plain INSERT on the transaction's connection, sent at once (the source row exists: it has an
    id), not an object for the unit of work (nor a reason to flush other changes before it)."""
    if source.id is None:
        session.add(SourceEvent(source_id=source.id, type=type_, detail=detail or {}))
        return
    session.connection().execute(_INSERT_EVENT, {"source_id": source.id, "type": type_,
                                                 "at": utcnow(), "detail": detail or {}})


_UPDATE_SOURCE = update(_SOURCES).where(_SOURCES.c.id == bindparam("source_id_"))


def _set_loaded(source: Source, columns: Mapping[str, Any]) -> None:
    """Give the loaded object these values as if read from the database (nothing to flush)."""
    for key, value in columns.items():
        set_committed_value(source, key, value)


def _write_columns(session: Session, source: Source, columns: Mapping[str, Any]) -> None:
    """Write new column values of a stored source with one UPDATE in the current transaction, and
    give them to the loaded object. Used where a use case changes a locked source's own columns:
    one statement, instead of marking the object changed and having the flush at commit work out
    what changed (credentials, a queued job or a column a hook changed are still flushed then)."""
    if columns:
        session.connection().execute(_UPDATE_SOURCE, {"source_id_": source.id, **columns})
        _set_loaded(source, columns)


def _current_values(source: Source) -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in source.properties.items() if v is not None}
    values.update({c.name: CREDENTIAL_SENTINEL for c in source.credentials})
    return values


def _invalid_properties(problems: list[dict[str, str]]) -> Invalid:
    message = "; ".join(f"{p['property']}: {p['reason']}" for p in problems)
    return Invalid(message, details=problems, type="invalid_properties")


def _apply_properties(
    session: Session, keyring: Keyring, source: Source, card: ReportCard, values: Mapping[str, Any]
) -> set[str]:
    """Write values (None clears); return the names whose value changed."""
    changed, plain = _merge_properties(keyring, source, card, values)
    source.properties = plain
    return changed


def _merge_properties(
    keyring: Keyring, source: Source, card: ReportCard, values: Mapping[str, Any]
) -> tuple[set[str], dict[str, Any]]:
    """Apply values (None clears) to the credentials (sealed, in ``source.credentials``); return
    the names whose value changed and the new plain properties (not yet set on the source)."""
    changed: set[str] = set()
    plain = dict(source.properties)
    credentials = {c.name: c for c in source.credentials}
    for name, value in values.items():
        spec = card.properties[name]
        if spec.is_credential:
            existing = credentials.get(name)
            if value is None:
                if existing is not None:
                    source.credentials.remove(existing)
                    changed.add(name)
                continue
            sealed = keyring.seal(_as_text(value), f"source-credential:{source.id}:{name}")
            if existing is None:
                source.credentials.append(SourceCredential(
                    name=name, key_id=sealed.key_id, ciphertext=sealed.ciphertext))
            else:
                existing.key_id, existing.ciphertext = sealed.key_id, sealed.ciphertext
                existing.updated_at = utcnow()
            changed.add(name)  # a credential resent is treated as changed: it may be a new secret
        elif value is None:
            if plain.pop(name, None) is not None:
                changed.add(name)
        elif plain.get(name) != value:
            plain[name] = value
            changed.add(name)
    return changed, plain


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def open_credential(keyring: Keyring, credential: SourceCredential) -> Any:
    return keyring.open(Sealed(credential.key_id, credential.ciphertext), credential.associated_data)


def decrypted_properties(keyring: Keyring, source: Source) -> dict[str, Any]:
    """Every provided property with credentials opened: for the one call that needs them."""
    values = {k: v for k, v in source.properties.items() if v is not None}
    for credential in source.credentials:
        values[credential.name] = open_credential(keyring, credential)
    return values


_LIVE = (Source.id == bindparam("source_id"), Source.account_id == bindparam("account_id"),
         Source.deleted_at.is_(None))
# Built once: SQLAlchemy then reuses their compiled form without building a statement per request.
# A read gets the source with its credentials in one query (an outer join, not a second SELECT).
_READ_SOURCE = (select(Source).outerjoin(Source.credentials).options(contains_eager(Source.credentials))
                .where(*_LIVE))
# A locking read must not join: on PostgreSQL a statement that waited for the row lock re-reads the
# locked row but keeps the joined rows of its snapshot from before the wait, so it would miss a
# credential the previous lock holder committed (and insert it twice: a 500, seen in
# tests/test_concurrency_pg.py). Its credentials are read by a second query once the lock is held.
_LOCK_SOURCE = select(Source).options(lazyload(Source.credentials)).where(*_LIVE).with_for_update()
_CREDENTIALS_OF = select(SourceCredential).where(SourceCredential.source_id == bindparam("source_id"))


def _live_source(session: Session, account_id: int, source_id: int, *, lock: bool) -> Source:
    """The account's live source with its credentials loaded, or 404."""
    params = {"source_id": source_id, "account_id": account_id}
    # On SQLite a writer holds the database's write lock from BEGIN IMMEDIATE (begin_write), so
    # its first read already sees every committed credential: the one joined query is right there.
    if not lock or session.get_bind().dialect.name == "sqlite":
        source = session.scalars(_READ_SOURCE, params).unique().one_or_none()
    else:
        source = session.scalars(_LOCK_SOURCE, params).one_or_none()
        if source is not None:
            # What the relationship's selectin load would do, without its per-query machinery.
            set_committed_value(source, "credentials",
                                list(session.scalars(_CREDENTIALS_OF, {"source_id": source.id})))
    if source is None:
        raise NotFound(f"source {source_id} not found")
    return source


def _card_for(catalog: Catalog, source_type: str) -> ReportCard:
    card = catalog.get(source_type)
    if card is None:
        raise Invalid(f"unknown source type {source_type!r}", type="invalid_type",
                      details=[{"field": "type", "reason": "not a known source type"}])
    return card


def _request_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replay(session: Session, account_id: int, key: str, request_hash: str) -> Source | None:
    row = session.scalars(select(IdempotencyKey).where(
        IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)).one_or_none()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Invalid("this Idempotency-Key was used with another request body",
                      type="idempotency_key_reused",
                      details=[{"field": "Idempotency-Key", "reason": "used with another body"}])
    return session.get(Source, row.source_id)


def _name_clash(session: Session, account_id: int, name: str, derived_from: str | None) -> Conflict:
    how = f" (derived from display_name {derived_from!r})" if derived_from is not None else ""
    return Conflict(f"a source named {name!r}{how} exists in this account", type="invalid_name",
                    details=[{"field": "name" if derived_from is None else "display_name",
                              "reason": f"name {name!r} is taken"}])


def _system_values(card: ReportCard, account_id: int, source: Source) -> dict[str, Any]:
    # The loader rendered every template once with this context's shape, so this cannot fail.
    context = {"account": {"id": account_id}, "source": {"id": source.id, "name": source.name}}
    return {name: render(value, context) for name, value in card.system_values.items()}


def create_source(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    account_id: int,
    source_type: str,
    change: SourceChange,
    raw_body: Mapping[str, Any],
    idempotency_key: str | None = None,
    destinations: DestinationRule | None = None,
) -> tuple[Source, bool]:
    """Create a source; returns (source, replayed) where replayed means an Idempotency-Key hit."""
    request_hash = _request_hash(raw_body)
    if idempotency_key:
        with session.begin():
            replayed = _replay(session, account_id, idempotency_key, request_hash)
        if replayed is not None:
            return replayed, True
    card = _card_for(catalog, source_type)
    denied = access_denied(card, catalog.access)
    if denied is not None:
        raise denied
    problems = check_properties(card, change.properties, {}, destinations)
    assert change.display_name is not None
    derived_from = None if change.name else change.display_name
    name = change.name or derive_name(change.display_name)
    reason = name_problem(name)
    if reason:
        field_name = "name" if change.name else "display_name"
        problems.append({"field": field_name, "reason": f"name {name!r} {reason}" if name
                         else "leaves no usable name: give one with letters or digits"})
    if problems:
        kind = "invalid_properties" if any("property" in p for p in problems) else "invalid_name"
        raise Invalid("; ".join(f"{p['field']}: {p['reason']}" for p in problems),
                      details=problems, type=kind)
    try:
        with begin_write(session):
            if session.scalars(select(Source.id).where(
                    Source.account_id == account_id, Source.name == name,
                    Source.deleted_at.is_(None))).first() is not None:
                # A request with the same key may have committed since the check above: its
                # source is the clash, and its key is visible now too (both commit together).
                replayed = idempotency_key and _replay(session, account_id, idempotency_key, request_hash)
                if replayed:
                    return replayed, True
                raise _name_clash(session, account_id, name, derived_from)
            now = utcnow()
            source = Source(account_id=account_id, type=card.type, name=name,
                            display_name=change.display_name, properties={}, created_at=now,
                            updated_at=now, paused_at=change.paused_at)
            session.add(source)
            session.flush()  # the id binds credentials' ciphertexts to this source
            record_event(session, source, "created", {"type": card.type})
            values = {**_system_values(card, account_id, source), **change.properties,
                      **_system_properties(session, keyring, source, card, change)}
            changed = _apply_properties(session, keyring, source, card, values)
            if change.properties:
                record_event(session, source, "properties_updated",
                             {"names": sorted(change.properties)})
            for hook in after_properties_changed:
                hook(session, source, card, changed)
            if idempotency_key:
                session.add(IdempotencyKey(account_id=account_id, key=idempotency_key,
                                           request_hash=request_hash, source_id=source.id))
            session.flush()
    except IntegrityError:
        # A concurrent request won a race: the same Idempotency-Key, or the same name.
        session.rollback()
        if idempotency_key:
            with session.begin():
                replayed = _replay(session, account_id, idempotency_key, request_hash)
            if replayed is not None:
                return replayed, True
        raise _name_clash(session, account_id, name, derived_from) from None
    return source, False


def update_source(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    account_id: int,
    source_id: int,
    change: SourceChange,
    if_match: list[str] | None = None,
    destinations: DestinationRule | None = None,
) -> Source:
    with begin_write(session):
        source = _live_source(session, account_id, source_id, lock=True)
        if if_match is not None and "*" not in if_match and \
                f'"{source.id}.{source.version}"' not in if_match:
            raise Conflict("the source changed since you read it (If-Match is stale)",
                           type="stale_version",
                           details=[{"field": "If-Match", "reason": "does not match the current ETag"}])
        card = catalog.get(source.type)
        if card is None:
            raise type_unavailable(source.type)
        problems = check_properties(card, change.properties, _current_values(source), destinations)
        if problems:
            raise _invalid_properties(problems)
        system_properties = _system_properties(session, keyring, source, card, change)
        changed, plain = _merge_properties(keyring, source, card,
                                           {**change.properties, **system_properties})
        # The source's new column values, written with one UPDATE at the end (_write_columns).
        columns: dict[str, Any] = {}
        if plain != source.properties:
            columns["properties"] = plain
        touched = bool(changed)
        if change.properties:
            record_event(session, source, "properties_updated", {"names": sorted(change.properties)})
        if changed:
            columns["config_generation"] = source.config_generation + 1
            _set_loaded(source, columns)  # the hooks see the new configuration
            for hook in after_properties_changed:
                hook(session, source, card, changed)
        if change.display_name is not None and change.display_name != source.display_name:
            columns["display_name"] = change.display_name
            touched = True
        if change.paused_at_given:
            was_paused = source.paused_at is not None
            columns["paused_at"] = change.paused_at
            touched = True
            if change.paused_at is not None and not was_paused:
                record_event(session, source, "paused")
            elif change.paused_at is None and was_paused:
                record_event(session, source, "unpaused")
        if touched:
            columns["version"] = source.version + 1
            columns["updated_at"] = utcnow()
        _write_columns(session, source, columns)
    return source


def get_source(session: Session, account_id: int, source_id: int) -> Source:
    with session.begin():
        return _live_source(session, account_id, source_id, lock=False)


# --- reads for responses: the source's columns and credential names, without ORM objects ---------

_VIEW_FIELDS = (
    "id", "account_id", "type", "name", "display_name", "properties", "version", "config_generation",
    "discovered_generation", "connected_at", "broken_at", "broken_reason", "created_at", "updated_at",
    "paused_at", "system_paused_at", "deleted_at",
)


@dataclass(frozen=True, slots=True)
class SourceView:
    """A source as a response shows it: its columns and the names of its credentials (never their
    values). What ``GET /v4/sources/{id}`` and the list read: plain rows, no ORM objects to build,
    track or flush, since nothing read here is changed."""

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
    credential_names: frozenset[str]

    @classmethod
    def from_row(cls, row: Any, credential_names: frozenset[str]) -> SourceView:
        return cls(*(row[name] for name in _VIEW_FIELDS), credential_names)  # type: ignore[arg-type]


_VIEW_COLUMNS = tuple(_SOURCES.c[name] for name in _VIEW_FIELDS)
_LIVE_OF_ACCOUNT = (_SOURCES.c.account_id == bindparam("account_id"), _SOURCES.c.deleted_at.is_(None))
# One source and its credential names in one query: a row per credential (or one with a null name).
_READ_VIEW = (select(*_VIEW_COLUMNS, _CREDENTIALS.c.name.label("credential_name"))
              .select_from(_SOURCES.outerjoin(_CREDENTIALS, _CREDENTIALS.c.source_id == _SOURCES.c.id))
              .where(_SOURCES.c.id == bindparam("source_id"), *_LIVE_OF_ACCOUNT))
_CREDENTIAL_NAMES = (select(_CREDENTIALS.c.source_id, _CREDENTIALS.c.name)
                     .where(_CREDENTIALS.c.source_id.in_(bindparam("source_ids", expanding=True))))


def read_source(session: Session, account_id: int, source_id: int) -> SourceView:
    """The account's live source as a response shows it (one query), or 404."""
    with session.begin():
        rows = session.connection().execute(
            _READ_VIEW, {"source_id": source_id, "account_id": account_id}).mappings().all()
    if not rows:
        raise NotFound(f"source {source_id} not found")
    names = frozenset(row["credential_name"] for row in rows if row["credential_name"] is not None)
    return SourceView.from_row(rows[0], names)


def delete_source(session: Session, account_id: int, source_id: int) -> Source:
    with begin_write(session):
        source = _live_source(session, account_id, source_id, lock=True)
        _write_columns(session, source, {"deleted_at": utcnow(), "version": source.version + 1})
        record_event(session, source, "deleted")
    return source


def encode_cursor(source_id: int) -> str:
    return base64.urlsafe_b64encode(str(source_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor of :func:`encode_cursor` holds: its exact ASCII digits, nothing int() would
    also read ("４", " 4", "4_0")."""
    try:
        value = id_from_text(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if value is None:
        raise ApiError("cursor is not one this service gave out", status=400,
                       details=[{"field": "cursor", "reason": "invalid cursor"}])
    return value


@lru_cache(maxsize=256)
def _page_query(limit: int, after_cursor: bool) -> Select:
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
        _live_source(session, account_id, source_id, lock=False)
        return list(session.scalars(
            select(SourceEvent).where(SourceEvent.source_id == source_id).order_by(SourceEvent.id)))


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
