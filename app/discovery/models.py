"""Connection checks and discovered streams."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base, Id, utcnow


class ConnectionCheck(Base):
    """The check (and discovery) of one configuration generation of a source, over its attempts.

    ``error`` is the latest failed attempt's, at ``error_at``: it stays while the next attempt is
    queued or running, so an outage shows what went wrong last, and is cleared when an attempt
    succeeds. ``started_at`` is when the latest attempt started; ``attempts`` counts them.
    """

    __tablename__ = "connection_checks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    config_generation: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    error: Mapped[dict | None] = mapped_column(JSON)
    error_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stream_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class Stream(Base):
    """A discovered stream: its schema and Singer metadata as discovered, plus the client's
    selections (kept apart so re-discovery can replace the first and keep the second)."""

    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("source_id", "tap_stream_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    tap_stream_id: Mapped[str] = mapped_column(String(255))
    stream_name: Mapped[str] = mapped_column(String(255))
    schema: Mapped[dict] = mapped_column(JSON)
    # [{"breadcrumb": [...], "metadata": {...}}] as discovery found them.
    discovered_metadata: Mapped[list] = mapped_column(JSON)
    # {json(breadcrumb): {"selected"?, "replication-method"?, "replication-key"?}} as the client wrote.
    selections: Mapped[dict] = mapped_column(JSON, default=dict)
    # The stream's effective selection, kept in step with ``selections`` by the one function that
    # writes them (app/discovery/service.py), so "is any stream selected" is one indexed query.
    selected: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # The tap's other keys of the stream's catalog entry (DiscoveredStream.extra: ``table_name``,
    # ``replication_method`` …), handed back in the catalog a tap takes; NULL for rows from before.
    extra: Mapped[dict | None] = mapped_column(JSON)
