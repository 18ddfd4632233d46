"""Use cases of connection checks, streams and field selection.

How each writes: queueing a check (:func:`queue_check`, also run inside a source change's
transaction) adds its rows through the unit of work and flushes them before it returns; a
selection writes through the unit of work; events go through ``record_event`` (one INSERT).
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..catalog.frozen import thaw
from ..connectors.base import DiscoveredStream
from ..db import begin_write
from ..errors import Conflict, Invalid, NotFound, Problem
from ..jobs.queue import enqueue
from ..models import Source, utcnow
from ..sources.availability import type_unavailable
from ..sources.events import record_event
from ..sources.facts import facts_for, provided_names
from ..sources.queries import SourceView, decode_cursor, encode_cursor, live_view, locked_source
from ..sources.steps import credential_steps_complete, derive_step
from .catalog import (
    WRITABLE_KEYS,
    carry_selections,
    merged_metadata,
    selection_problems,
    shown_selected,
    stream_level_metadata,
    stream_selected,
)
from .handoff import StoredStream, selected_catalog
from .models import ConnectionCheck, Stream

CHECK_JOB = "check_and_discover"


class Configured(Protocol):
    """A source as queueing a check sees it: which configuration it has now."""

    @property
    def id(self) -> int: ...

    @property
    def config_generation(self) -> int: ...


def queue_check(session: Session, source: Configured) -> ConnectionCheck:
    """Queue check + discovery for the source's current configuration (one queued at a time)."""
    job = enqueue(session, CHECK_JOB, source.id, {"config_generation": source.config_generation})
    check = session.scalars(select(ConnectionCheck).where(
        ConnectionCheck.source_id == source.id, ConnectionCheck.status == "queued")).first()
    if check is None:
        check = ConnectionCheck(source_id=source.id, config_generation=source.config_generation)
        session.add(check)
    elif check.config_generation != source.config_generation:
        # A retry of an older configuration becomes this one's check: its errors said nothing of this.
        check.error, check.error_at, check.attempts = None, None, 0
    check.config_generation = source.config_generation
    job.payload = {"config_generation": source.config_generation}
    session.flush()
    return check


def queue_check_when_ready(session: Session, source: SourceView, card: ReportCard,
                           changed: frozenset[str]) -> None:
    """After a source's properties changed (wired in create_app): queue a check when the last
    credential arrived, or a form/oauth property changed once they were all there."""
    if changed and card.has_step("discover_schema") and credential_steps_complete(card, provided_names(source)):
        queue_check(session, source)


def request_discovery(session: Session, catalog: Catalog, account_id: int, source_id: int) -> ConnectionCheck:
    with begin_write(session):
        source = live_view(session, account_id, source_id, lock=True)
        if source.type not in catalog:
            raise type_unavailable(source.type)
        return queue_check(session, source)


def last_check(session: Session, account_id: int, source_id: int) -> ConnectionCheck:
    with session.begin():
        live_view(session, account_id, source_id, lock=False)
        check = session.scalars(select(ConnectionCheck).where(ConnectionCheck.source_id == source_id)
                                .order_by(ConnectionCheck.id.desc()).limit(1)).first()
    if check is None:
        raise NotFound(f"no connection check has run for source {source_id}")
    return check


def list_streams(session: Session, account_id: int, source_id: int, limit: int | None = None,
                 cursor: str | None = None) -> tuple[list[Stream], str | None]:
    """A page of the source's streams in discovery order (keyset on id) and the next page's cursor."""
    query = select(Stream).where(Stream.source_id == source_id).order_by(Stream.id)
    if cursor:
        query = query.where(Stream.id > decode_cursor(cursor))
    if limit is not None:
        query = query.limit(limit + 1)
    with session.begin():
        live_view(session, account_id, source_id, lock=False)
        rows = list(session.scalars(query))
    if limit is None or len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(rows[limit - 1].id)


def get_stream(session: Session, account_id: int, source_id: int, stream_id: int) -> Stream:
    with session.begin():
        live_view(session, account_id, source_id, lock=False)
        stream = session.get(Stream, stream_id)
    if stream is None or stream.source_id != source_id:
        raise NotFound(f"stream {stream_id} not found")
    return stream


def stream_summary(stream: Stream) -> dict[str, Any]:
    """An entry of ``GET …/streams``: Stitch's Stream object, with its stream-level metadata."""
    return {
        "stream_id": stream.id,
        "tap_stream_id": stream.tap_stream_id,
        "stream_name": stream.stream_name,
        "selected": shown_selected(stream.discovered_metadata, stream.selections),
        "metadata": stream_level_metadata(stream.discovered_metadata, stream.selections),
    }


def stream_body(stream: Stream) -> dict[str, Any]:
    """Stitch's Stream Schema object (the metadata keys a client may write under Stitch's name)."""
    return {
        "stream_id": stream.id,
        "tap_stream_id": stream.tap_stream_id,
        "schema": stream.schema,
        "metadata": merged_metadata(stream.discovered_metadata, stream.selections),
        "non-discoverable-metadata-keys": list(WRITABLE_KEYS),
    }


def update_selection(session: Session, catalog: Catalog, account_id: int, source_id: int,
                     streams: list[dict[str, Any]]) -> list[Stream]:
    with begin_write(session):
        source = locked_source(session, account_id, source_id)
        card = catalog.get(source.type)
        if card is None:
            raise type_unavailable(source.type)
        if not card.has_step("field_selection"):
            raise Conflict(f"source type {card.type} has no field selection", type="not_ready")
        position = derive_step(card, facts_for(session, [source], catalog)[source.id])
        if position.type not in ("field_selection", "fully_configured"):
            raise Conflict(f"streams can be selected once discovery has succeeded; the source is at "
                           f"{position.type}", type="not_ready",
                           details=[Problem("report_card.current_step_type", position.type).detail()])
        rows = {s.tap_stream_id: s for s in session.scalars(select(Stream).where(Stream.source_id == source_id))}
        problems: list[Problem] = []
        updates: dict[str, dict[str, Any]] = {}
        for index, entry in enumerate(streams):
            tap_stream_id = entry["tap_stream_id"]
            stream = rows.get(tap_stream_id)
            if stream is None:
                problems.append(Problem(f"streams[{index}].tap_stream_id", f"unknown stream {tap_stream_id!r}"))
                continue
            selections, stream_problems = selection_problems(
                tap_stream_id, stream.discovered_metadata, updates.get(tap_stream_id, stream.selections),
                entry["metadata"])
            problems += stream_problems
            updates[tap_stream_id] = selections
        if problems:
            raise Invalid.from_problems(problems, type="invalid_selection")
        for tap_stream_id, selections in updates.items():
            stream = rows[tap_stream_id]
            stream.selections = selections
            stream.selected = stream_selected(stream.discovered_metadata, selections)
        selected = sorted(s.tap_stream_id for s in rows.values() if s.selected)
        record_event(session, source, "selection_updated", {"streams": sorted(updates), "selected": selected})
        source.version += 1
        source.updated_at = utcnow()
        return sorted(rows.values(), key=lambda s: s.id)


def save_discovery(session: Session, source: Source, found: list[DiscoveredStream]) -> dict[str, list[str]]:
    """Replace the discovered streams, keeping selections of streams and fields that still exist."""
    existing = {s.tap_stream_id: s for s in session.scalars(select(Stream).where(Stream.source_id == source.id))}
    seen: set[str] = set()
    for discovered in found:
        tap_stream_id = discovered.tap_stream_id
        seen.add(tap_stream_id)
        metadata = thaw(tuple(discovered.metadata))
        stream = existing.get(tap_stream_id)
        if stream is None:
            stream = Stream(source_id=source.id, tap_stream_id=tap_stream_id, selections={})
            session.add(stream)
        stream.stream_name = discovered.stream_name
        stream.schema = thaw(discovered.schema)
        stream.discovered_metadata = metadata
        stream.extra = thaw(discovered.extra) or None
        stream.selections = carry_selections(stream.selections or {}, metadata)
        stream.selected = stream_selected(metadata, stream.selections)
    removed = sorted(set(existing) - seen)
    for tap_stream_id in removed:
        session.delete(existing[tap_stream_id])
    return {"added": sorted(seen - set(existing)), "removed": removed}


def recheck_waiting(session: Session, source_type: str, error_type: str) -> list[int]:
    """Queue a check for each live source of the type whose current configuration's latest check
    failed with ``error_type`` (``connector_not_installed``, once the operator installed the tap);
    the ids of the sources queued."""
    latest = (select(func.max(ConnectionCheck.id)).join(Source, Source.id == ConnectionCheck.source_id)
              .where(Source.type == source_type, Source.deleted_at.is_(None),
                     ConnectionCheck.config_generation == Source.config_generation)
              .group_by(ConnectionCheck.source_id))
    with begin_write(session):
        # The error is JSON (no portable query into it): read the failed checks, filter here.
        checks = session.scalars(select(ConnectionCheck).where(
            ConnectionCheck.id.in_(latest), ConnectionCheck.status == "failed")).all()
        waiting = sorted(c.source_id for c in checks
                         if c.status == "failed" and (c.error or {}).get("type") == error_type)
        for source in session.scalars(select(Source).where(Source.id.in_(waiting)).order_by(Source.id)
                                      .with_for_update()):
            queue_check(session, source)
    return waiting


def handoff_catalog(session: Session, catalog: Catalog, account_id: int, source_id: int) -> dict[str, Any]:
    """The source's Singer catalog with the user's selections written in (app/discovery/handoff.py):
    what ``tap --catalog`` takes. Only for a fully configured source: before that the selections
    are not final, or there is no catalog yet (409 naming the step the source is at)."""
    with session.begin():
        source = live_view(session, account_id, source_id, lock=False)
        card = catalog.get(source.type)
        if card is None:
            raise type_unavailable(source.type)
        position = derive_step(card, facts_for(session, [source], catalog)[source.id])
        if position.type != "fully_configured":
            raise Conflict(f"the catalog is handed over once the source is fully configured; the source is at "
                           f"{position.type}", type="not_ready",
                           details=[Problem("report_card.current_step_type", position.type).detail()])
        rows = list(session.scalars(select(Stream).where(Stream.source_id == source_id).order_by(Stream.id)))
    return selected_catalog(StoredStream(s.tap_stream_id, s.stream_name, s.schema, s.discovered_metadata,
                                         s.selections or {}, s.extra or {}) for s in rows)
