"""Use cases of ``/v4/webhooks``: endpoints, their secrets, deliveries and redelivery.

Each use case is one transaction. A signing secret is generated here, sealed with the keyring
(bound to its endpoint and generation) and handed back once, in the response that created it; it
is never readable again through the API.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..crypto import Keyring
from ..db import begin_write
from ..errors import ApiError, Conflict, Invalid, NotFound
from ..models import Account
from ..wakeup import note_new_work
from . import WebhookRuntime
from .events import ALL_EVENTS
from .models import PENDING, SENDING, WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSecret, rowcount
from .signing import new_secret

MAX_ENDPOINTS_PER_ACCOUNT = 20  # every event of an account fans out to each: keep that bounded
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_PAGE = 100

DeliveryRecord = tuple[WebhookDelivery, WebhookEvent]


@dataclass(frozen=True)
class WithSecret:
    """An endpoint and the signing secret just made for it: shown once, in this response only."""

    endpoint: WebhookEndpoint
    secret: str


def _invalid_url(reason: str) -> Invalid:
    return Invalid(f"url: {reason}", type="invalid_url", details=[{"field": "url", "reason": reason}])


def _checked_url(runtime: WebhookRuntime, url: str) -> str:
    problem = runtime.url_problem(url)
    if problem:
        raise _invalid_url(problem)
    return url


def normalized_events(events: list[str]) -> list[str]:
    """Each type once, in the order given; ``*`` (every type) stands alone."""
    unique = list(dict.fromkeys(events))
    return [ALL_EVENTS] if ALL_EVENTS in unique else unique


def _seal_secret(keyring: Keyring, endpoint: WebhookEndpoint, generation: int, now: datetime) -> str:
    secret = new_secret()
    row = WebhookSecret(endpoint_id=endpoint.id, generation=generation, created_at=now)
    sealed = keyring.seal(secret, row.associated_data)
    row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
    endpoint.secrets.append(row)
    return secret


def create_endpoint(session: Session, keyring: Keyring, runtime: WebhookRuntime, account_id: int,
                    body: dict[str, Any]) -> WithSecret:
    url = _checked_url(runtime, body["url"])
    now = runtime.clock()
    with begin_write(session):
        # The account's row lock makes the count below exact under concurrent creates.
        session.scalars(select(Account.id).where(Account.id == account_id).with_for_update()).one()
        count = session.scalar(select(func.count()).select_from(WebhookEndpoint)
                               .where(WebhookEndpoint.account_id == account_id)) or 0
        if count >= MAX_ENDPOINTS_PER_ACCOUNT:
            raise Conflict(f"this account has {count} webhooks, the most it may have: delete one first",
                           type="webhook_limit_reached")
        endpoint = WebhookEndpoint(account_id=account_id, url=url, description=body.get("description"),
                                   events=normalized_events(body["events"]), created_at=now, updated_at=now,
                                   secrets=[])
        session.add(endpoint)
        session.flush()  # the id binds the secret's ciphertext to this endpoint
        secret = _seal_secret(keyring, endpoint, 1, now)
    return WithSecret(endpoint, secret)


def _own_endpoint(session: Session, account_id: int, webhook_id: int, *, lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == webhook_id,
                                          WebhookEndpoint.account_id == account_id)
    # FOR NO KEY UPDATE: the endpoint's own row changes, but not its key, so transactions emitting
    # events to it (which hold FOR KEY SHARE, app/webhooks/outbox.py) need not wait for this one.
    endpoint = session.scalars(query.with_for_update(key_share=True) if lock else query).one_or_none()
    if endpoint is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return endpoint


def list_endpoints(session: Session, account_id: int) -> list[WebhookEndpoint]:
    with session.begin():
        return list(session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id)
                                    .order_by(WebhookEndpoint.id)))


def get_endpoint(session: Session, account_id: int, webhook_id: int) -> WebhookEndpoint:
    with session.begin():
        return _own_endpoint(session, account_id, webhook_id)


def update_endpoint(session: Session, runtime: WebhookRuntime, account_id: int, webhook_id: int,
                    body: dict[str, Any]) -> WebhookEndpoint:
    """Set the given fields (``description: null`` clears it). A new URL also receives what is
    still to be sent; new events apply to events emitted from now on."""
    if "url" in body:
        _checked_url(runtime, body["url"])
    with begin_write(session):
        endpoint = _own_endpoint(session, account_id, webhook_id, lock=True)
        if "url" in body:
            endpoint.url = body["url"]
        if "events" in body:
            endpoint.events = normalized_events(body["events"])
        if "description" in body:
            endpoint.description = body["description"]
        if body:
            endpoint.updated_at = runtime.clock()
    return endpoint


def delete_endpoint(session: Session, account_id: int, webhook_id: int) -> None:
    """Delete the endpoint with its secrets and deliveries: nothing more is sent to it."""
    with begin_write(session):
        deleted = rowcount(session.execute(delete(WebhookEndpoint).where(
            WebhookEndpoint.id == webhook_id, WebhookEndpoint.account_id == account_id)))
    if not deleted:
        raise NotFound(f"webhook {webhook_id} not found")


def rotate_secret(session: Session, keyring: Keyring, runtime: WebhookRuntime, account_id: int,
                  webhook_id: int, overlap: timedelta = DEFAULT_OVERLAP) -> WithSecret:
    """A new signing secret; the current ones keep signing beside it until ``overlap`` has passed
    (an earlier end they already had stays), so receivers can switch without losing an event."""
    now = runtime.clock()
    ends = now + overlap
    with begin_write(session):
        endpoint = _own_endpoint(session, account_id, webhook_id, lock=True)
        generation = max((s.generation for s in endpoint.secrets), default=0) + 1
        for old in list(endpoint.secrets):
            if old.expires_at is not None and old.expires_at <= now:
                endpoint.secrets.remove(old)  # ended: nothing signs with it any more
            elif old.expires_at is None or old.expires_at > ends:
                old.expires_at = ends
        session.flush()  # the removals first: (endpoint, generation) stays unique either way
        secret = _seal_secret(keyring, endpoint, generation, now)
        endpoint.updated_at = now
    return WithSecret(endpoint, secret)


# --- deliveries ----------------------------------------------------------------------------------


def encode_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(str(delivery_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = -1
    if value < 1:
        raise ApiError("cursor is not one this service gave out", status=400,
                       details=[{"field": "cursor", "reason": "invalid cursor"}])
    return value


def list_deliveries(session: Session, account_id: int, webhook_id: int, limit: int, cursor: str | None,
                    status: str | None) -> tuple[list[DeliveryRecord], str | None]:
    """The endpoint's deliveries, newest first, keyset-paginated by id."""
    before = decode_cursor(cursor) if cursor else None
    query = (select(WebhookDelivery, WebhookEvent).join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.endpoint_id == webhook_id))
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    with session.begin():
        _own_endpoint(session, account_id, webhook_id)
        rows = [(d, e) for d, e in session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1))]
    next_cursor = encode_cursor(rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _own_delivery(session: Session, account_id: int, webhook_id: int, delivery_id: int, *,
                  lock: bool = False) -> DeliveryRecord:
    _own_endpoint(session, account_id, webhook_id)
    query = (select(WebhookDelivery, WebhookEvent).join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == webhook_id))
    row = session.execute(query.with_for_update(of=WebhookDelivery) if lock else query).one_or_none()
    if row is None:
        raise NotFound(f"delivery {delivery_id} not found")
    return row[0], row[1]


def get_delivery(session: Session, account_id: int, webhook_id: int, delivery_id: int) -> DeliveryRecord:
    with session.begin():
        return _own_delivery(session, account_id, webhook_id, delivery_id)


def redeliver(session: Session, runtime: WebhookRuntime, account_id: int, webhook_id: int,
              delivery_id: int) -> DeliveryRecord:
    """Send the delivery again soon, with the same ``webhook-id`` and a fresh retry window. Its
    attempts count from zero again; the last outcome stays visible until the next attempt."""
    now = runtime.clock()
    with begin_write(session):
        delivery, event = _own_delivery(session, account_id, webhook_id, delivery_id, lock=True)
        if delivery.status == SENDING and delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            raise Conflict(f"delivery {delivery_id} is being sent right now: ask again once it is done",
                           type="delivery_in_progress")
        delivery.status = PENDING
        delivery.attempts = 0
        delivery.claim_token = None  # a late answer to an abandoned attempt is not recorded over this
        delivery.window_started_at = now
        delivery.next_attempt_at = now
        note_new_work(session)
    return delivery, event
