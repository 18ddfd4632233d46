"""The check-and-discover job: prove the credentials work, then discover the streams.

It runs for one configuration generation of a source (the payload says which). Whatever it finds
is written in one transaction under the source's row lock, and only if the source still has that
configuration: a check of properties that have since changed proves nothing. Running the job twice
leaves the same result (streams are upserted by ``tap_stream_id``).

The source type's connector (app/connectors/registry.py) checks and discovers; this job knows no
kind. A :class:`~app.connectors.base.ConnectorFailure` says who can fix it: the user (the source
becomes ``broken`` and its report card says why), time (the job is retried with back-off, never
sooner than ``retry_after``, and the check fails only when attempts run out), or the operator (the
check fails at once). A stored credential or token no configured key opens is the operator's too
(``credentials_unreadable``, naming the key). No connection to the source is made inside a
database transaction.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask
from sqlalchemy import select

from ..catalog import get_catalog
from ..catalog.cards import ReportCard
from ..connectors.base import ConnectorFailure, DiscoveredStream, SourceTarget
from ..connectors.registry import NOT_CHECKABLE, get_connectors
from ..crypto import KeyringError, get_keyring
from ..db import begin_write, get_db
from ..jobs.queue import ClaimedJob
from ..jobs.worker import JobFailed
from ..models import Source, utcnow
from ..sources.availability import TYPE_UNAVAILABLE, unavailable_reason
from ..sources.credentials import decrypted_properties
from ..sources.events import record_event
from .models import ConnectionCheck
from .service import save_discovery

log = logging.getLogger(__name__)


def check_and_discover(app: Flask, job: ClaimedJob) -> dict[str, Any]:
    Session = get_db(app).Session
    generation = job.payload.get("config_generation")
    with Session() as session, begin_write(session):
        source = session.get(Source, job.source_id)
        if source is None or source.deleted_at is not None:
            return {"skipped": "the source is deleted"}
        if source.config_generation != generation:
            return {"skipped": "the configuration changed; a newer check is queued"}
        check = session.scalars(select(ConnectionCheck).where(
            ConnectionCheck.source_id == source.id, ConnectionCheck.config_generation == generation)
            .order_by(ConnectionCheck.id.desc())).first()
        if check is None:
            check = ConnectionCheck(source_id=source.id, config_generation=generation)
            session.add(check)
        # The previous attempt's error stays visible until an attempt succeeds (see ConnectionCheck).
        check.status, check.started_at, check.attempts = "running", utcnow(), job.attempts
        session.flush()
        check_id = check.id
        # ``credentials`` load with the source (selectin), so the object is usable after the
        # transaction: no lock is held over the connections below.
    card = get_catalog().get(source.type)
    started = time.perf_counter()
    try:
        streams = _check_then_discover(app, source, card, generation)
    except ConnectorFailure as failure:
        return _failed(app, job, check_id, generation, failure, started)
    except KeyringError as error:
        return _failed(app, job, check_id, generation, _unreadable_credentials(job, error), started)
    changes = _record(app, job, check_id, generation, status="succeeded", found=streams)
    return {"check": "succeeded", "streams": len(streams), "duration_ms": _ms_since(started), **changes}


def _check_then_discover(app: Flask, source: Source, card: ReportCard | None,
                         generation: int) -> list[DiscoveredStream]:
    if card is None:  # the type's card was removed from the catalog since the source was made
        raise ConnectorFailure(TYPE_UNAVAILABLE, unavailable_reason(source.type)["message"], fixed_by="operator")
    connectors = get_connectors(app)
    connector = connectors.for_card(card)
    if connector is None:
        raise ConnectorFailure("not_checkable", connectors.availability(card).reason or NOT_CHECKABLE,
                               fixed_by="operator")
    target = SourceTarget(source_id=source.id, account_id=source.account_id, name=source.name,
                          config_generation=generation, card=card,
                          properties=decrypted_properties(get_keyring(app), source))
    connector.check(target)
    return connector.discover(target)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _failed(app: Flask, job: ClaimedJob, check_id: int, generation: int, failure: ConnectorFailure,
            started: float) -> dict[str, Any]:
    """Record a failed check: retried (time), broken (user) or failed at once (operator)."""
    log.info("connection check failed", extra={
        "source_id": job.source_id, "error_type": failure.error_type, "fixed_by": failure.fixed_by,
        "detail": failure.operator_detail})
    if failure.fixed_by == "time":
        last_attempt = job.attempts >= job.max_attempts
        _record(app, job, check_id, generation, error=failure.error, status="failed" if last_attempt else "queued")
        raise JobFailed(failure.error_type, failure.message, transient=True, retry_after=failure.retry_after)
    broken = None
    if failure.fixed_by == "user":
        broken = dict(failure.broken_reason) if failure.broken_reason is not None else failure.error
    _record(app, job, check_id, generation, error=failure.error, status="failed", broken=broken)
    return {"check": "failed", "error": failure.error, "duration_ms": _ms_since(started)}


def _unreadable_credentials(job: ClaimedJob, error: KeyringError) -> ConnectorFailure:
    """A stored credential or token no configured key opens: the operator's to fix (configure the key
    it was sealed under), so the check fails at once, saying which key, and is not retried: the key
    will not appear by itself. The source is not marked broken: its credentials may be fine."""
    log.error("a credential cannot be decrypted", extra={"job_id": job.id, "source_id": job.source_id,
                                                        "reason": str(error)})
    return ConnectorFailure("credentials_unreadable",
                            f"a stored credential of this source cannot be decrypted ({error}): the service's "
                            "operator must configure that encryption key in CONNECT_ENCRYPTION_KEYS; entering "
                            "the credentials again also mends it", fixed_by="operator")


def _record(app: Flask, job: ClaimedJob, check_id: int, generation: int, *, status: str,
            error: dict | None = None, broken: dict | None = None,
            found: list[DiscoveredStream] | None = None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    with get_db(app).Session() as session, begin_write(session):
        source = session.scalars(select(Source).where(Source.id == job.source_id).with_for_update()).one()
        check = session.get_one(ConnectionCheck, check_id)
        check.status, check.error, check.error_at = status, error, None if error is None else utcnow()
        if status != "queued":
            check.completed_at = utcnow()
        current = source.config_generation == generation and source.deleted_at is None
        if status == "succeeded":
            check.stream_count = len(found or [])
            if current:
                changes = save_discovery(session, source, found or [])
                source.discovered_generation = generation
                source.connected_at = source.connected_at or utcnow()
                source.broken_at, source.broken_reason = None, None
                record_event(session, source, "check_succeeded", {"check_id": check_id, "streams": len(found or []),
                                                                   **changes})
        elif status == "failed":
            if current and broken is not None:
                source.broken_at, source.broken_reason = utcnow(), broken
            record_event(session, source, "check_failed", {"check_id": check_id, "error": error})
        if status != "queued":
            source.version += 1
            source.updated_at = utcnow()
    return changes

