"""Webhook endpoints, their signing secrets, the outbox of events and the deliveries.

- ``webhook_endpoints``: where an account wants events, and which types.
- ``webhook_secrets``: an endpoint's signing secrets, sealed like credentials (app/crypto.py). The
  newest has no ``expires_at``; a rotation gives the older ones an end (the overlap).
- ``webhook_events``: the outbox. :func:`app.webhooks.outbox.emit` inserts an event in the
  transaction of the change it reports, with one delivery row per subscribed endpoint, so an event
  exists exactly when its change committed.
- ``webhook_deliveries``: one event to one endpoint, with the state of its attempts. ``message_id``
  is the ``webhook-id`` header: the same on every attempt and redelivery, so receivers can drop
  duplicates. ``status`` is pending → sending → succeeded | failed; a ``sending`` row's
  ``next_attempt_at`` is when its claim lapses (a sender that died is replaced then).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, CursorResult, ForeignKey, Index, Integer, Result, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..models import Base, Id, Sealed, utcnow

PENDING, SENDING, SUCCEEDED, FAILED = "pending", "sending", "succeeded", "failed"
UNFINISHED = (PENDING, SENDING)
STATUSES = (PENDING, SENDING, SUCCEEDED, FAILED)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    secrets: Mapped[list[WebhookSecret]] = relationship(
        back_populates="endpoint", cascade="all, delete-orphan", passive_deletes=True,
        order_by="WebhookSecret.generation", lazy="selectin")


class WebhookSecret(Sealed, Base):
    __tablename__ = "webhook_secrets"
    __table_args__ = (UniqueConstraint("endpoint_id", "generation"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)  # 1 for the first secret, +1 per rotation
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]  # None: signs until the next rotation

    endpoint: Mapped[WebhookEndpoint] = relationship(back_populates="secrets")

    @property
    def associated_data(self) -> str:
        return f"webhook-secret:{self.endpoint_id}:{self.generation}"


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # No foreign key: the event is a fact about the source that stays true whatever becomes of it.
    source_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    data: Mapped[dict] = mapped_column(JSON)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Senders look for due rows (pending, or sending with a lapsed claim).
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at", "id"),
        # Per-source order: an endpoint's earlier unfinished delivery for the same source.
        Index("ix_webhook_deliveries_order", "endpoint_id", "source_id", "event_id"),
        # GET /v4/webhooks/{id}/deliveries, newest first.
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    source_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))  # the event's
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # since created or redelivered
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Retries stop once the window from here ends (the event's time, or the last redelivery's).
    window_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[dict | None] = mapped_column(JSON)
    last_response: Mapped[str | None] = mapped_column(String(300))  # a short, redacted excerpt
    delivered_at: Mapped[datetime | None]


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (its result is a CursorResult, which the types do not say)."""
    return cast(CursorResult[Any], result).rowcount
