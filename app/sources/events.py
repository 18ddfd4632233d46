"""The audit trail of a source: :func:`record_event` is the one way to say "something happened to
a source", whoever says it (the sources' use cases, the OAuth handshake, the token store, checks
and discovery). Anything that must happen alongside every event belongs here, next to the INSERT.

It imports no use case, so every package that changes a source can record what it did.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session

from ..models import SourceEvent, table_of, utcnow
from .lifecycle import note

_INSERT_EVENT = table_of(SourceEvent).insert()


class HasId(Protocol):
    @property
    def id(self) -> int: ...


def record_event(session: Session, source: HasId, type_: str, detail: dict[str, Any] | None = None) -> None:
    """Add an audit event to the current transaction (``detail`` never holds a secret value).

    Events are only ever inserted and never read back in the transaction that writes them, so this
    is one Core INSERT sent at once, in every use case: whether the caller writes through the unit
    of work or with statements of its own, the event neither waits for nor forces a flush (the
    source row exists: it has an id).
    """
    session.connection().execute(_INSERT_EVENT, {"source_id": source.id, "type": type_,
                                                 "at": utcnow(), "detail": detail or {}})
    note(session, source.id, type_, detail or {})  # for the webhooks, at commit (app/sources/lifecycle.py)
