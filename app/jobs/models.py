"""The job tables: queued jobs (one unit of background work on one source, e.g. check + discovery)
and the state of periodic jobs (work on no source in particular, e.g. deleting expired rows)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..models import Base, Id, utcnow


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Workers look for the oldest runnable job.
        Index("ix_jobs_claim", "status", "run_after", "id"),
        # At most one queued job per source and kind; a running one may coexist (it is
        # checking an older configuration).
        Index("uq_jobs_one_queued", "source_id", "kind", unique=True,
              postgresql_where=text("status = 'queued'"), sqlite_where=text("status = 'queued'")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class PeriodicJobState(Base):
    """When a periodic job (declared in create_app) runs next, and who runs it now.

    One row per job name, not a row of ``jobs``: a periodic job belongs to no source. A worker
    claims it with one conditional UPDATE (due, and not leased by a live worker), so two workers
    never run it at once, on any number of machines.
    """

    __tablename__ = "periodic_jobs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(100))
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_result: Mapped[dict | None] = mapped_column(JSON)
    last_error: Mapped[dict | None] = mapped_column(JSON)
