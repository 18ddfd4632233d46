"""The write use cases of sources: create, update, delete.

Each is one transaction that writes with Core statements, sent in the order the use case says:
the source row, its credentials, its events; then the collaborators in :class:`SourceHooks`
(wired in ``create_app``) run with the new state and write their own rows before they return.
No ORM object of the source is built, so nothing is written behind the use case's back at a
flush. This is also the fast path the bench measures (see :func:`_write_source_rows`).

Updates lock the source row (``SELECT … FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite)
and merge the request into the newest stored state, so two clients setting different properties
at once both win; ``If-Match`` turns a stale write into 409 instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.access import access_denied
from ..catalog.cards import ReportCard
from ..connectors.models import SourceToken
from ..crypto import Keyring
from ..db import begin_write
from ..errors import Conflict, Invalid, Problem
from ..models import IdempotencyKey, Source, SourceCredential, table_of, utcnow
from ..templating import render
from .availability import type_unavailable
from .credentials import PropertyWrites, current_values, merge_properties
from .events import record_event
from .lifecycle import settled
from .queries import SourceView, live_view, view_of
from .rules import DestinationRule, check_properties, derive_name, name_problem

_SOURCES = table_of(Source)
_CREDENTIALS = table_of(SourceCredential)
_IDEMPOTENCY_KEYS = table_of(IdempotencyKey)
_TOKENS = table_of(SourceToken)

# Called when a change's properties changed (names in the set), with the source as it now is.
PropertiesChanged = Callable[[Session, SourceView, ReportCard, frozenset[str]], None]
# Uses a secret_id up for the source and returns the property values it stands for (or raises the
# ApiError that says why it cannot be used); the last argument is the request's properties.
SecretRedeemer = Callable[[Session, Keyring, SourceView, ReportCard, str, Mapping[str, Any]], dict[str, Any]]
# Called before a delete's write transaction, with none open (it may ask a provider to revoke).
BeforeDelete = Callable[[Session, SourceView], object]


@dataclass(frozen=True)
class SourceHooks:
    """What other packages do inside a source change's transaction (wired in ``create_app``):
    redeem an OAuth ``secret_id``, and react to changed properties (queue a connection check)."""

    redeem_secret: SecretRedeemer | None = None
    after_properties_changed: tuple[PropertiesChanged, ...] = ()
    # Where the properties would send connections, judged by the network rules (a refused literal
    # address, an absurd port: 422 before anything is stored).
    destinations: DestinationRule | None = None
    # Before a source is deleted: revoke its tokens at the provider (outside any transaction).
    before_delete: BeforeDelete | None = None


@dataclass
class SourceChange:
    """What a create or update asks for, already parsed by the schema."""

    display_name: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    paused_at: datetime | None = None
    paused_at_given: bool = False
    # The result of an OAuth handshake to apply: redeemed into properties inside the change's own
    # transaction, so it is used up only if the change commits.
    secret_id: str | None = None


def _redeemed(session: Session, keyring: Keyring, hooks: SourceHooks, source: SourceView, card: ReportCard,
              change: SourceChange) -> dict[str, Any]:
    if change.secret_id is None:
        return {}
    if hooks.redeem_secret is None:
        raise Invalid.from_problems([Problem("secret_id", "not accepted: the OAuth handshake is not set up "
                                             "in this service")])
    return hooks.redeem_secret(session, keyring, source, card, change.secret_id, change.properties)


def _card_for(catalog: Catalog, source_type: str) -> ReportCard:
    card = catalog.get(source_type)
    if card is None:
        raise Invalid(f"unknown source type {source_type!r}", type="invalid_type",
                      details=[Problem("type", "not a known source type").detail()])
    return card


# --- writing the source's rows ----------------------------------------------------------------

_UPDATE_SOURCE = update(_SOURCES).where(_SOURCES.c.id == bindparam("source_id_"))
_INSERT_CREDENTIAL = insert(_CREDENTIALS)
_UPDATE_CREDENTIAL = update(_CREDENTIALS).where(_CREDENTIALS.c.source_id == bindparam("source_id_"),
                                                _CREDENTIALS.c.name == bindparam("name_"))
_DELETE_CREDENTIALS = delete(_CREDENTIALS).where(
    _CREDENTIALS.c.source_id == bindparam("source_id_"), _CREDENTIALS.c.name.in_(bindparam("names", expanding=True)))


def _write_source_rows(session: Session, stored: SourceView, columns: Mapping[str, Any],
                       writes: PropertyWrites | None) -> None:
    """Write a locked source's changed columns (one UPDATE) and its credentials (an INSERT, UPDATE
    or DELETE each), as statements on the transaction's connection.

    Why statements and not the unit of work: the ORM would load the source and its credentials as
    objects and have the flush at commit work out what changed; this writes what the use case
    already knows changed. The bench's profiles of issue 7 put the ORM load and flush of a PUT at
    16–29% of its samples (bench/README.md). Measured for this change (the same update of a
    property and the display name, with its event, 150 times in a row in one process, 6 interleaved
    rounds, the fastest round, on a loaded 2-core machine): SQLite 2.6 ms per update with these
    statements against 17.4 ms through the unit of work; PostgreSQL 17.4 ms against 31.2 ms
    (bench/write_paths.py).
    """
    connection = session.connection()
    if columns:
        connection.execute(_UPDATE_SOURCE, {"source_id_": stored.id, **columns})
    if writes is None:
        return
    now = utcnow()
    for name, sealed in writes.sealed.items():
        values = {"key_id": sealed.key_id, "ciphertext": sealed.ciphertext, "updated_at": now}
        if name in stored.credential_names:
            connection.execute(_UPDATE_CREDENTIAL, {"source_id_": stored.id, "name_": name, **values})
        else:
            connection.execute(_INSERT_CREDENTIAL, {"source_id": stored.id, "name": name, **values})
    if writes.cleared:
        connection.execute(_DELETE_CREDENTIALS, {"source_id_": stored.id, "names": sorted(writes.cleared)})


def _after_changes(session: Session, hooks: SourceHooks, source: SourceView, card: ReportCard,
                   changed: frozenset[str]) -> None:
    if changed:
        for hook in hooks.after_properties_changed:
            hook(session, source, card, changed)


# --- create -------------------------------------------------------------------------------------


def _request_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replay(session: Session, account_id: int, key: str, request_hash: str) -> SourceView | None:
    row = session.execute(select(_IDEMPOTENCY_KEYS.c.request_hash, _IDEMPOTENCY_KEYS.c.source_id).where(
        _IDEMPOTENCY_KEYS.c.account_id == account_id, _IDEMPOTENCY_KEYS.c.key == key)).one_or_none()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise Invalid.from_problems([Problem("Idempotency-Key", "used with another body")],
                                    type="idempotency_key_reused")
    return view_of(session, row.source_id)


def _replayed(session: Session, account_id: int, key: str | None, request_hash: str) -> SourceView | None:
    if not key:
        return None
    with session.begin():
        return _replay(session, account_id, key, request_hash)


def _name_clash(name: str, derived_from: str | None) -> Conflict:
    how = f" (derived from display_name {derived_from!r})" if derived_from is not None else ""
    where = "name" if derived_from is None else "display_name"
    return Conflict(f"a source named {name!r}{how} exists in this account", type="invalid_name",
                    details=[Problem(where, f"name {name!r} is taken").detail()])


def _new_source_name(change: SourceChange, display_name: str) -> tuple[str, Problem | None]:
    """The name a new source gets (given, or derived from its display name), and what is wrong with it."""
    name = change.name or derive_name(display_name)
    reason = name_problem(name)
    if reason is None:
        return name, None
    where = "name" if change.name else "display_name"
    return name, Problem(where, f"name {name!r} {reason}" if name
                         else "leaves no usable name: give one with letters or digits")


def _system_values(card: ReportCard, account_id: int, source_id: int, name: str) -> dict[str, Any]:
    # The loader rendered every template once with this context's shape, so this cannot fail.
    context = {"account": {"id": account_id}, "source": {"id": source_id, "name": name}}
    return {key: render(value, context) for key, value in card.system_values.items()}


def _insert_source(session: Session, account_id: int, card: ReportCard, name: str, display_name: str,
                   paused_at: datetime | None) -> SourceView:
    now = utcnow()
    columns: dict[str, Any] = {
        "account_id": account_id, "type": card.type, "name": name, "display_name": display_name,
        "properties": {}, "version": 1, "config_generation": 1, "discovered_generation": None,
        "connected_at": None, "broken_at": None, "broken_reason": None, "created_at": now,
        "updated_at": now, "paused_at": paused_at, "system_paused_at": None, "deleted_at": None,
        "announced_step": None, "announced_state": None,
    }
    source_id = session.connection().execute(insert(_SOURCES).returning(_SOURCES.c.id), columns).scalar_one()
    return SourceView(id=source_id, credential_names=frozenset(), **columns)


def create_source(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    hooks: SourceHooks,
    account_id: int,
    source_type: str,
    change: SourceChange,
    raw_body: Mapping[str, Any],
    idempotency_key: str | None = None,
) -> tuple[SourceView, bool]:
    """Create a source; returns (source, replayed) where replayed means an Idempotency-Key hit."""
    request_hash = _request_hash(raw_body)
    replayed = _replayed(session, account_id, idempotency_key, request_hash)
    if replayed is not None:
        return replayed, True
    card = _card_for(catalog, source_type)
    denied = access_denied(card, catalog.access)
    if denied is not None:
        raise denied
    display_name = change.display_name or ""  # the schema requires it
    problems = check_properties(card, change.properties, {}, hooks.destinations)
    name, name_problem_ = _new_source_name(change, display_name)
    if name_problem_ is not None:
        problems.append(name_problem_)
    if problems:
        kind = "invalid_properties" if any(p.property for p in problems) else "invalid_name"
        raise Invalid.from_problems(problems, type=kind)
    derived_from = None if change.name else display_name
    try:
        with begin_write(session):
            if session.scalars(select(_SOURCES.c.id).where(
                    _SOURCES.c.account_id == account_id, _SOURCES.c.name == name,
                    _SOURCES.c.deleted_at.is_(None))).first() is not None:
                # A request with the same key may have committed since the check above: its
                # source is the clash, and its key is visible now too (both commit together).
                replayed = _replay(session, account_id, idempotency_key, request_hash) if idempotency_key else None
                if replayed is not None:
                    return replayed, True
                raise _name_clash(name, derived_from)
            source = _insert_source(session, account_id, card, name, display_name, change.paused_at)
            record_event(session, source, "created", {"type": card.type})
            values = {**_system_values(card, account_id, source.id, name), **change.properties,
                      **_redeemed(session, keyring, hooks, source, card, change)}
            writes = merge_properties(keyring, card, source, values)
            columns = {"properties": writes.plain} if writes.plain else {}
            _write_source_rows(session, source, columns, writes)
            if change.properties:
                record_event(session, source, "properties_updated", {"names": sorted(change.properties)})
            created = replace(source, properties=writes.plain, credential_names=writes.credential_names)
            _after_changes(session, hooks, created, card, writes.changed)
            if idempotency_key:
                session.connection().execute(insert(_IDEMPOTENCY_KEYS), {
                    "account_id": account_id, "key": idempotency_key, "request_hash": request_hash,
                    "source_id": source.id, "created_at": utcnow()})
            settled(session, created)
            session.flush()  # whatever a hook left to the unit of work fails here, not at commit
    except IntegrityError:
        # A concurrent request won a race: the same Idempotency-Key, or the same name.
        session.rollback()
        replayed = _replayed(session, account_id, idempotency_key, request_hash)
        if replayed is not None:
            return replayed, True
        raise _name_clash(name, derived_from) from None
    return created, False


# --- update and delete --------------------------------------------------------------------------


def _check_version(source: SourceView, if_match: list[str] | None) -> None:
    if if_match is not None and "*" not in if_match and f'"{source.id}.{source.version}"' not in if_match:
        raise Conflict("the source changed since you read it (If-Match is stale)", type="stale_version",
                       details=[Problem("If-Match", "does not match the current ETag").detail()])


def _pause_columns(source: SourceView, change: SourceChange) -> tuple[dict[str, Any], str | None]:
    """The column a pause or unpause writes, and the event it records (None: no event)."""
    if not change.paused_at_given:
        return {}, None
    was_paused = source.paused_at is not None
    event = None
    if change.paused_at is not None and not was_paused:
        event = "paused"
    elif change.paused_at is None and was_paused:
        event = "unpaused"
    return {"paused_at": change.paused_at}, event


def update_source(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    hooks: SourceHooks,
    account_id: int,
    source_id: int,
    change: SourceChange,
    if_match: list[str] | None = None,
) -> SourceView:
    with begin_write(session):
        stored = live_view(session, account_id, source_id, lock=True)
        _check_version(stored, if_match)
        card = catalog.get(stored.type)
        if card is None:
            raise type_unavailable(stored.type)
        problems = check_properties(card, change.properties, current_values(stored), hooks.destinations)
        if problems:
            raise Invalid.from_problems(problems, type="invalid_properties")
        values = {**change.properties, **_redeemed(session, keyring, hooks, stored, card, change)}
        writes = merge_properties(keyring, card, stored, values)
        columns: dict[str, Any] = {}
        if writes.plain != stored.properties:
            columns["properties"] = writes.plain
        if writes.changed:
            columns["config_generation"] = stored.config_generation + 1
        if change.display_name is not None and change.display_name != stored.display_name:
            columns["display_name"] = change.display_name
        pause, pause_event = _pause_columns(stored, change)
        columns.update(pause)
        if writes.changed or "display_name" in columns or change.paused_at_given:
            columns.update(version=stored.version + 1, updated_at=utcnow())
        _write_source_rows(session, stored, columns, writes)
        if change.properties:
            record_event(session, stored, "properties_updated", {"names": sorted(change.properties)})
        if pause_event is not None:
            record_event(session, stored, pause_event)
        updated = replace(stored, **columns, credential_names=writes.credential_names)
        _after_changes(session, hooks, updated, card, writes.changed)
        settled(session, updated)
        session.flush()  # whatever a hook left to the unit of work fails here, not at commit
    return updated


def delete_source(session: Session, account_id: int, source_id: int,
                  hooks: SourceHooks | None = None) -> SourceView:
    """Delete softly: the row stays (names, plain properties, the audit trail), its credentials
    and cached tokens are erased; ``hooks.before_delete`` runs first, with no transaction open."""
    if hooks is not None and hooks.before_delete is not None:
        with session.begin():
            found = live_view(session, account_id, source_id, lock=False)  # 404 before anything is sent
        hooks.before_delete(session, found)
    with begin_write(session):
        stored = live_view(session, account_id, source_id, lock=True)
        columns: dict[str, Any] = {"deleted_at": utcnow(), "version": stored.version + 1}
        _write_source_rows(session, stored, columns, None)
        connection = session.connection()
        connection.execute(delete(_CREDENTIALS).where(_CREDENTIALS.c.source_id == stored.id))
        connection.execute(delete(_TOKENS).where(_TOKENS.c.source_id == stored.id))
        record_event(session, stored, "deleted", {"erased": sorted(stored.credential_names)})
    return replace(stored, **columns, credential_names=frozenset())
