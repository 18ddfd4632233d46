"""The check-and-discover job: prove the credentials work, then discover the streams.

It runs for one configuration generation of a source (the payload says which). Whatever it finds
is written in one transaction under the source's row lock, and only if the source still has that
configuration: a check of properties that have since changed proves nothing. Running the job twice
leaves the same result (streams are upserted by ``tap_stream_id``).

Failures are sorted by who can fix them: the user (credentials refused, 4xx on the check: the
source becomes ``broken`` and says why), time (429, 5xx, timeouts, no token for now: the job is
retried with back-off, and the check fails only when attempts run out), or the operator (a card
that cannot produce a request, a stored credential no configured key opens: the check fails at
once, ``credentials_unreadable`` naming the key). A 2xx that is not data (an HTML page, JSON
cut short) counts as time's: a maintenance or sign-in page, or a proxy that lost the body. When the
token store has scheduled its next attempt (``Retry-After`` from the token endpoint), the job is
not run again before then: an attempt would only find the store still waiting.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import requests
from flask import Flask
from sqlalchemy import select

from ..catalog import get_catalog
from ..catalog.cards import ReportCard
from ..catalog.sections import ApiSection, StreamSpec
from ..connectors.errors import AuthConfigurationError, CredentialsRejected, TokenUnavailable
from ..connectors.http import send_api_request
from ..crypto import KeyringError, get_keyring
from ..db import begin_write, get_db
from ..jobs.queue import ClaimedJob
from ..jobs.worker import JobFailed
from ..models import Source, utcnow
from ..sources.availability import TYPE_UNAVAILABLE, unavailable_reason
from ..sources.events import record_event
from .models import ConnectionCheck
from .service import save_discovery

UNSUPPORTED_STATUSES = (403, 404)
log = logging.getLogger(__name__)


class CheckOutcome(Exception):
    """A finished check that failed: ``user_must_fix`` marks the source broken."""

    def __init__(self, error_type: str, message: str, *, user_must_fix: bool) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.user_must_fix = user_must_fix


def _seconds_until(moment: datetime | None) -> float | None:
    return None if moment is None else max(0.0, (moment - utcnow()).total_seconds())


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _unreadable_body(response: requests.Response) -> str | None:
    """What is wrong with a 2xx body that cannot be the API's data, if anything."""
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        return "an HTML page instead of data"
    if "json" in content_type and response.content.strip():
        try:
            response.json()
        except ValueError:
            return "JSON that does not parse (cut short?)"
    return None


def _judge(response: requests.Response, what: str) -> None:
    """Raise unless the response is a success."""
    status = response.status_code
    if 200 <= status < 300:
        problem = _unreadable_body(response)
        if problem:
            raise JobFailed("unexpected_response", f"{what}: the API answered {status} with {problem}",
                            transient=True)
        return
    if status == 429 or status >= 500 or status == 408:
        raise JobFailed("source_unavailable", f"{what}: the API answered {status}", transient=True,
                        retry_after=_retry_after(response))
    if status in (401, 403):
        raise CheckOutcome("credentials_rejected", f"{what}: the API refused the credentials ({status})",
                           user_must_fix=True)
    raise CheckOutcome("check_failed", f"{what}: the API answered {status}", user_must_fix=True)


def _discover(app: Flask, source: Source, card: ReportCard, api: ApiSection) -> list[tuple[StreamSpec, bool]]:
    found = []
    for spec in api.streams:
        response = send_api_request(get_db(app).Session, get_keyring(app), source, card, spec.request)
        supported = response.status_code not in UNSUPPORTED_STATUSES
        if supported:
            _judge(response, f"stream {spec.tap_stream_id}")
        found.append((spec, supported))
    return found


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
        # transaction: no lock is held over the HTTP calls below.
    card = get_catalog().get(source.type)
    started = time.perf_counter()
    found: list[tuple[StreamSpec, bool]] = []
    outcome: CheckOutcome | None = None
    try:
        if card is None:
            raise CheckOutcome(TYPE_UNAVAILABLE, unavailable_reason(source.type)["message"], user_must_fix=False)
        if card.api is None:
            raise CheckOutcome("not_checkable", f"source type {card.type} has no api section: this service "
                               "cannot check it", user_must_fix=False)
        _judge(send_api_request(Session, get_keyring(app), source, card, card.api.check), "check")
        found = _discover(app, source, card, card.api)
    except CheckOutcome as failed:
        outcome = failed
    except CredentialsRejected as rejected:  # the token store has marked the source broken already
        outcome = CheckOutcome(rejected.reason.get("type", "credentials_rejected"), str(rejected),
                               user_must_fix=False)
    except AuthConfigurationError as error:
        outcome = CheckOutcome("configuration_error", str(error), user_must_fix=False)
    except KeyringError as error:
        outcome = _unreadable_credentials(job, error)
    except (TokenUnavailable, requests.RequestException, JobFailed) as error:
        if isinstance(error, JobFailed):
            failure = error
        elif isinstance(error, TokenUnavailable):
            failure = JobFailed("source_unavailable", f"no token from the token endpoint for now ({error.error})",
                                transient=True, retry_after=_seconds_until(error.retry_at))
        else:
            failure = JobFailed("source_unavailable",
                                f"{type(error).__name__}: the API or its token endpoint is unreachable", transient=True)
        last_attempt = job.attempts >= job.max_attempts
        _record(app, job, check_id, generation, error=failure.error,
                status="failed" if last_attempt else "queued")
        raise failure from None
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    if outcome is not None:
        _record(app, job, check_id, generation, error=outcome.error, status="failed",
                broken=outcome.error if outcome.user_must_fix else None)
        return {"check": "failed", "error": outcome.error, "duration_ms": elapsed_ms}
    changes = _record(app, job, check_id, generation, status="succeeded", found=found)
    return {"check": "succeeded", "streams": len(found), "duration_ms": elapsed_ms, **changes}


def _unreadable_credentials(job: ClaimedJob, error: KeyringError) -> CheckOutcome:
    """A stored credential or token no configured key opens: the operator's to fix (configure the key
    it was sealed under), so the check fails at once, saying which key, and is not retried: the key
    will not appear by itself. The source is not marked broken: its credentials may be fine."""
    log.error("a credential cannot be decrypted", extra={"job_id": job.id, "source_id": job.source_id,
                                                        "reason": str(error)})
    return CheckOutcome("credentials_unreadable",
                        f"a stored credential of this source cannot be decrypted ({error}): the service's "
                        "operator must configure that encryption key in CONNECT_ENCRYPTION_KEYS; entering "
                        "the credentials again also mends it", user_must_fix=False)


def _record(app: Flask, job: ClaimedJob, check_id: int, generation: int, *, status: str,
            error: dict | None = None, broken: dict | None = None,
            found: list[tuple[StreamSpec, bool]] | None = None) -> dict[str, Any]:
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
                record_event(session, source, "check_succeeded", {"streams": len(found or []), **changes})
        elif status == "failed":
            if current and broken is not None:
                source.broken_at, source.broken_reason = utcnow(), broken
            record_event(session, source, "check_failed", {"error": error})
        if status != "queued":
            source.version += 1
            source.updated_at = utcnow()
    return changes

