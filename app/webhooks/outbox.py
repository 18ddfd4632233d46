"""``emit``: record an event for an account's webhooks, in the transaction of the change it reports.

The event and one delivery row per subscribed endpoint are inserted on the caller's connection,
so they commit with the change or not at all: nothing is sent for a change that rolled back, and
nothing is lost when the process dies between the commit and the send (a sender picks the rows up
from the database; see app/webhooks/delivery.py).

Fan-out happens here, at emit time, rather than in the sender: the endpoints that get an event
are then exactly those that existed when the change committed (one created a moment later does
not receive history, one deleted before does not receive anything), without comparing clocks of
machines, and there is no second stage to crash between. It costs one indexed query of the
account's endpoints per event. An event no endpoint subscribes to is not stored at all: there is
nobody to deliver it to, and registering a webhook later does not replay the past.

Per-source order rests on event ids following commit order for one source. Every source write
holds the source's row lock (``SELECT … FOR UPDATE`` on PostgreSQL, the database write lock on
SQLite) until it commits, so call ``emit`` for a source inside such a transaction, after taking
the lock: two events of one source then get ids in the order their changes commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from ..models import utcnow
from ..wakeup import note_new_work
from .events import event_data, subscribed
from .models import PENDING, WebhookDelivery, WebhookEndpoint, WebhookEvent

# FOR KEY SHARE (PostgreSQL): an endpoint being deleted meanwhile is either gone before this reads it,
# or waits for this transaction to commit and then takes the new deliveries with it. Without the lock,
# the delivery's foreign key would fail and take the caller's change down with it.
_ENDPOINTS_OF = select(WebhookEndpoint.id, WebhookEndpoint.events).where(
    WebhookEndpoint.account_id == bindparam("account_id")).with_for_update(read=True, key_share=True)
_INSERT_EVENT = insert(WebhookEvent).returning(WebhookEvent.id)
_INSERT_DELIVERY = insert(WebhookDelivery)


def new_message_id() -> str:
    """A ``webhook-id``: random, so it says nothing about how many events there are."""
    return "msg_" + secrets.token_hex(16)


def emit(session: Session, account_id: int, event_type: str, data: Mapping[str, Any],
         source_id: int | None = None, *, now: datetime | None = None) -> int | None:
    """Record an event in the caller's open transaction; returns its id, or None when no endpoint
    of the account subscribes to ``event_type``. ``data`` has exactly the fields app/webhooks/events.py
    names for the type (``source_id`` is added from the argument); anything else is a ValueError."""
    payload = event_data(event_type, data, source_id)
    connection = session.connection()
    endpoints = [endpoint_id for endpoint_id, events in connection.execute(_ENDPOINTS_OF, {"account_id": account_id})
                 if subscribed(events, event_type)]
    if not endpoints:
        return None
    occurred_at = now or utcnow()
    event_id = connection.execute(_INSERT_EVENT, {"account_id": account_id, "source_id": source_id, "type": event_type,
                                                  "occurred_at": occurred_at, "data": payload}).scalar_one()
    connection.execute(_INSERT_DELIVERY, [
        {"endpoint_id": endpoint_id, "event_id": event_id, "source_id": source_id,
         "message_id": new_message_id(), "status": PENDING, "attempts": 0, "created_at": occurred_at,
         "window_started_at": occurred_at, "next_attempt_at": occurred_at}
        for endpoint_id in endpoints])
    note_new_work(session)
    return event_id
