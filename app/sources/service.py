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
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..crypto import Keyring, Sealed
from ..db import begin_write
from ..errors import ApiError, Conflict, Invalid, NotFound
from ..models import IdempotencyKey, Source, SourceCredential, SourceEvent, utcnow
from ..templating import render
from .rules import check_properties, derive_name, name_problem

CREDENTIAL_SENTINEL = object()  # stands for a stored credential's value, which is never compared
MAX_PAGE = 100


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


def record_event(session: Session, source: Source, type_: str, detail: dict | None = None) -> None:
    session.add(SourceEvent(source_id=source.id, type=type_, detail=detail or {}))


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
    source.properties = plain
    return changed


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


def _live_source(session: Session, account_id: int, source_id: int, *, lock: bool) -> Source:
    query = select(Source).where(
        Source.id == source_id, Source.account_id == account_id, Source.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    source = session.scalars(query).one_or_none()
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
) -> tuple[Source, bool]:
    """Create a source; returns (source, replayed) where replayed means an Idempotency-Key hit."""
    request_hash = _request_hash(raw_body)
    if idempotency_key:
        with session.begin():
            replayed = _replay(session, account_id, idempotency_key, request_hash)
        if replayed is not None:
            return replayed, True
    card = _card_for(catalog, source_type)
    problems = check_properties(card, change.properties, {})
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
) -> Source:
    with begin_write(session):
        source = _live_source(session, account_id, source_id, lock=True)
        if if_match is not None and "*" not in if_match and \
                f'"{source.id}.{source.version}"' not in if_match:
            raise Conflict("the source changed since you read it (If-Match is stale)",
                           type="stale_version",
                           details=[{"field": "If-Match", "reason": "does not match the current ETag"}])
        card = _card_for(catalog, source.type)
        problems = check_properties(card, change.properties, _current_values(source))
        if problems:
            raise _invalid_properties(problems)
        system_properties = _system_properties(session, keyring, source, card, change)
        changed = _apply_properties(session, keyring, source, card,
                                    {**change.properties, **system_properties})
        touched = bool(changed)
        if change.properties:
            record_event(session, source, "properties_updated", {"names": sorted(change.properties)})
        if changed:
            source.config_generation += 1
            for hook in after_properties_changed:
                hook(session, source, card, changed)
        if change.display_name is not None and change.display_name != source.display_name:
            source.display_name = change.display_name
            touched = True
        if change.paused_at_given:
            was_paused = source.paused_at is not None
            source.paused_at = change.paused_at
            touched = True
            if change.paused_at is not None and not was_paused:
                record_event(session, source, "paused")
            elif change.paused_at is None and was_paused:
                record_event(session, source, "unpaused")
        if touched:
            source.version += 1
            source.updated_at = utcnow()
    return source


def get_source(session: Session, account_id: int, source_id: int) -> Source:
    with session.begin():
        return _live_source(session, account_id, source_id, lock=False)


def delete_source(session: Session, account_id: int, source_id: int) -> Source:
    with begin_write(session):
        source = _live_source(session, account_id, source_id, lock=True)
        source.deleted_at = utcnow()
        source.version += 1
        record_event(session, source, "deleted")
    return source


def encode_cursor(source_id: int) -> str:
    return base64.urlsafe_b64encode(str(source_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = -1
    if value < 1:
        raise ApiError("cursor is not one this service gave out", status=400,
                       details=[{"field": "cursor", "reason": "invalid cursor"}])
    return value


def list_sources(
    session: Session, account_id: int, limit: int, cursor: str | None
) -> tuple[list[Source], str | None]:
    """Newest first, by keyset on id (so a deep page costs what the first does)."""
    query = select(Source).where(Source.account_id == account_id, Source.deleted_at.is_(None))
    if cursor:
        query = query.where(Source.id < decode_cursor(cursor))
    with session.begin():
        rows = list(session.scalars(query.order_by(Source.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def list_events(session: Session, account_id: int, source_id: int) -> list[SourceEvent]:
    with session.begin():
        _live_source(session, account_id, source_id, lock=False)
        return list(session.scalars(
            select(SourceEvent).where(SourceEvent.source_id == source_id).order_by(SourceEvent.id)))


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
