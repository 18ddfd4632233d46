"""Sending webhook deliveries: claim what is due, send it signed, record the outcome.

:func:`run_deliveries` is what a worker calls. Each call

1. claims up to ``limit`` due deliveries in one short write transaction (``SELECT … FOR UPDATE SKIP
   LOCKED`` on PostgreSQL, so any number of workers on any number of machines share the work;
   ``BEGIN IMMEDIATE`` on SQLite through ``begin_write``). Claiming marks a row ``sending`` with
   a token and moves its ``next_attempt_at`` to when the claim lapses: a sender that dies is
   replaced then, and its delivery is sent again (at least once; receivers drop repeats by
   ``webhook-id``);
2. sends them at once, one thread each, with no transaction open: signed with every secret the
   endpoint has in use, ``CONNECT_WEBHOOK_TIMEOUT`` to answer, redirects not followed;
3. records each outcome in a short transaction of its own, if the claim is still the sender's:
   2xx → ``succeeded``; anything else is retried on the schedule of app/webhooks/schedule.py, and
   marked ``failed`` once the retry window (``CONNECT_WEBHOOK_RETRY_HOURS``) is over.

Per-source order: a delivery is due only when its endpoint has no unfinished (pending or sending)
delivery of an earlier event of the same source, so a source's events reach each endpoint in the
order they happened, each after the previous one succeeded or failed for good. Events without a
source are not ordered.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from flask import Flask
from sqlalchemy import bindparam, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from ..crypto import Keyring, KeyringError, Sealed, get_keyring
from ..db import begin_write, get_db
from ..redaction import redact
from . import WebhookRuntime, get_runtime
from .models import (
    FAILED,
    PENDING,
    SENDING,
    SUCCEEDED,
    UNFINISHED,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    rowcount,
)
from .schedule import next_attempt_at
from .signing import signed_headers

log = logging.getLogger(__name__)

MAX_BATCH = 32  # deliveries sent at once by one call (one thread each)
CLAIM_MARGIN = timedelta(seconds=30)  # beyond the time an attempt may take
EXCERPT_BYTES = 1024
EXCERPT_CHARS = 200
USER_AGENT = "connect-webhooks/1"

_earlier = aliased(WebhookDelivery)
_BLOCKED = exists().where(
    _earlier.endpoint_id == WebhookDelivery.endpoint_id,
    _earlier.source_id == WebhookDelivery.source_id,  # never true for events without a source
    _earlier.event_id < WebhookDelivery.event_id,
    _earlier.status.in_(UNFINISHED),
)
_DUE = (select(WebhookDelivery.id, WebhookDelivery.endpoint_id, WebhookDelivery.event_id,
               WebhookDelivery.message_id, WebhookDelivery.attempts, WebhookDelivery.window_started_at)
        .where(WebhookDelivery.status.in_(UNFINISHED), WebhookDelivery.next_attempt_at <= bindparam("now"),
               ~_BLOCKED)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=WebhookDelivery))


_ANY_DUE = select(WebhookDelivery.id).where(
    WebhookDelivery.status.in_(UNFINISHED), WebhookDelivery.next_attempt_at <= bindparam("now")).limit(1)


@dataclass(frozen=True)
class Claimed:
    """One claimed delivery, with all the sender needs (the secrets still sealed)."""

    delivery_id: int
    endpoint_id: int
    message_id: str
    attempt: int  # this attempt's number in the current window (1 for the first)
    window_started_at: datetime
    claim_token: str
    url: str
    body: str
    secrets: tuple[tuple[Sealed, str], ...]  # (sealed value, associated data), newest first


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status: int | None = None
    error: dict[str, str] | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    final: bool = False  # retrying cannot help (the URL is refused now)


def run_deliveries(app: Flask, limit: int = 10) -> int:
    """Send up to ``limit`` due deliveries and record their outcomes; returns how many were tried."""
    runtime = get_runtime(app)
    make_session = get_db(app).Session
    claimed = claim_due(make_session, runtime, min(limit, MAX_BATCH))
    if not claimed:
        return 0
    keyring = get_keyring(app)
    with ThreadPoolExecutor(max_workers=len(claimed), thread_name_prefix="connect-webhook") as pool:
        futures = {pool.submit(attempt, runtime, keyring, each): each for each in claimed}
        for future in as_completed(futures):
            record_outcome(make_session, runtime, futures[future], future.result())
    return len(claimed)


def claim_due(make_session: sessionmaker[Session], runtime: WebhookRuntime, limit: int) -> list[Claimed]:
    now = runtime.clock()
    token = uuid.uuid4().hex
    with make_session() as session:
        # A plain read first: an idle worker polls often, and on SQLite a claim takes the write lock.
        with session.begin():
            if session.execute(_ANY_DUE, {"now": now}).first() is None:
                return []
    with make_session() as session, begin_write(session):
        rows = session.execute(_DUE, {"now": now, "limit": limit}).all()
        if not rows:
            return []
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_([row.id for row in rows])).values(
            status=SENDING, attempts=WebhookDelivery.attempts + 1, claim_token=token, last_attempt_at=now,
            next_attempt_at=now + claim_length(runtime)))
        endpoints = {e.id: e for e in session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.id.in_({row.endpoint_id for row in rows})))}
        events = {e.id: e for e in session.scalars(select(WebhookEvent).where(
            WebhookEvent.id.in_({row.event_id for row in rows})))}
        return [Claimed(row.id, row.endpoint_id, row.message_id, row.attempts + 1, row.window_started_at, token,
                        endpoints[row.endpoint_id].url, event_body(events[row.event_id]),
                        signing_secrets(endpoints[row.endpoint_id], now))
                for row in rows]


def claim_length(runtime: WebhookRuntime) -> timedelta:
    """How long a claim holds: the attempt's connect and read timeouts, and a margin."""
    return timedelta(seconds=2 * runtime.timeout) + CLAIM_MARGIN


def event_body(event: WebhookEvent) -> str:
    """The payload, as Standard Webhooks has it: ``{type, timestamp, data}``."""
    timestamp = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event.type, "timestamp": timestamp, "data": event.data}, separators=(",", ":"))


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[tuple[Sealed, str], ...]:
    """The endpoint's secrets in use at ``now``, newest first."""
    live = [s for s in endpoint.secrets if s.expires_at is None or s.expires_at > now]
    return tuple((Sealed(s.key_id, s.ciphertext), s.associated_data)
                 for s in sorted(live, key=lambda s: s.generation, reverse=True))


def attempt(runtime: WebhookRuntime, keyring: Keyring, claimed: Claimed) -> Outcome:
    """One attempt; never raises (an unexpected error is an outcome too, retried like a failure)."""
    try:
        return _attempt(runtime, keyring, claimed)
    except Exception as error:  # a bug must not leave the row claimed until its claim lapses
        log.exception("webhook delivery attempt crashed", extra={"delivery_id": claimed.delivery_id})
        return Outcome(False, error={"type": "internal_error", "message": type(error).__name__})


def _attempt(runtime: WebhookRuntime, keyring: Keyring, claimed: Claimed) -> Outcome:
    problem = runtime.url_problem(claimed.url)
    if problem:
        return Outcome(False, error={"type": "url_refused", "message": f"the webhook URL {problem}"}, final=True)
    try:
        secrets = [keyring.open(sealed, where) for sealed, where in claimed.secrets]
    except KeyringError:
        return Outcome(False, error={"type": "internal_error",
                                     "message": "a signing secret is under a key this service does not have"})
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signed_headers(secrets, claimed.message_id, datetime.now(UTC), claimed.body)}
    try:
        return send(runtime.http_session, runtime.timeout, claimed.url, claimed.body, headers)
    except runtime.refused_errors as refused:
        return Outcome(False, error={"type": "url_refused", "message": f"the webhook URL's host: {refused}"},
                       final=True)


def send(http_session: Callable[[], requests.Session], timeout: float, url: str, body: str,
         headers: dict[str, str]) -> Outcome:
    """POST one signed body. Error messages are the service's own words: an exception's text can
    carry the URL, and with it whatever the integrator put in its query."""
    try:
        with http_session() as http:
            response = http.post(url, data=body.encode(), headers=headers, timeout=timeout,
                                 allow_redirects=False, stream=True)
            with response:
                excerpt = response_excerpt(response)
    except requests.Timeout:
        return Outcome(False, error={"type": "timeout", "message": f"no answer within {timeout:g} s"})
    except requests.ConnectionError:
        return Outcome(False, error={"type": "connection_failed", "message": "could not connect to the endpoint"})
    except requests.RequestException:
        return Outcome(False, error={"type": "request_failed", "message": "the request could not be sent"})
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, status, excerpt=excerpt)
    return Outcome(False, status, {"type": "http_status", "message": f"the endpoint answered {status}"},
                   excerpt, retry_after=_retry_after(response) if status in (429, 503) else None)


def response_excerpt(response: requests.Response) -> str | None:
    """The first characters of the answer, for the integrator's debugging: one line, redacted."""
    try:
        raw = response.raw.read(EXCERPT_BYTES, decode_content=True)
    except Exception:  # a body cut short or too slow: the status is what counts
        return None
    text = " ".join(raw.decode("utf-8", "replace").split())[:EXCERPT_CHARS]
    return redact(text) or None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def record_outcome(make_session: sessionmaker[Session], runtime: WebhookRuntime, claimed: Claimed,
                   outcome: Outcome) -> str:
    """Write the attempt's outcome, unless the claim was lost meanwhile (it lapsed and another
    sender took the delivery, or it was redelivered or deleted). Returns the new status."""
    now = runtime.clock()
    values: dict[str, Any] = {"claim_token": None, "last_status": outcome.status, "last_error": outcome.error,
                              "last_response": outcome.excerpt}
    if outcome.succeeded:
        values.update(status=SUCCEEDED, delivered_at=now, next_attempt_at=None)
    else:
        give_up_at = claimed.window_started_at + runtime.retry_window
        retry_at = None if outcome.final else next_attempt_at(now, claimed.attempt, give_up_at, outcome.retry_after)
        values.update(status=PENDING if retry_at else FAILED, next_attempt_at=retry_at)
    with make_session() as session, begin_write(session):
        recorded = rowcount(session.execute(update(WebhookDelivery).where(
            WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.claim_token == claimed.claim_token,
        ).values(**values)))
    log.info("webhook delivery attempt", extra={
        "delivery_id": claimed.delivery_id, "webhook_id": claimed.endpoint_id, "attempt": claimed.attempt,
        "outcome": values["status"], "http_status": outcome.status,
        "error_type": (outcome.error or {}).get("type"), "recorded": bool(recorded)})
    return str(values["status"])


def prune_history(app: Flask) -> int:
    """Delete deliveries finished longer than ``CONNECT_WEBHOOK_RETENTION_DAYS`` ago, and events no
    delivery refers to any more; returns how many deliveries went. For a periodic job."""
    runtime = get_runtime(app)
    cutoff = runtime.clock() - runtime.retention
    last_touched = func.coalesce(WebhookDelivery.last_attempt_at, WebhookDelivery.created_at)
    with get_db(app).Session() as session, begin_write(session):
        pruned = rowcount(session.execute(delete(WebhookDelivery).where(
            WebhookDelivery.status.in_((SUCCEEDED, FAILED)), last_touched < cutoff)))
        session.execute(delete(WebhookEvent).where(
            WebhookEvent.occurred_at < cutoff, ~exists().where(WebhookDelivery.event_id == WebhookEvent.id)))
    return pruned


def prune_history_job(app: Flask) -> dict[str, Any]:
    """:func:`prune_history` as a periodic job."""
    return {"pruned": prune_history(app)}
