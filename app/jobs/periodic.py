"""Periodic jobs: work that runs every so often on no source in particular (deleting expired rows
today; refreshing tokens before they expire and scheduled health checks later).

A periodic job is declared in ``create_app`` as a :class:`PeriodicJob` (name, interval, function)
and run by the workers, the embedded one of ``make run`` included. Its state is one row of
``periodic_jobs``: when it runs next, and which worker holds it. A worker claims a due job with one
conditional UPDATE (due, and its lease free or expired), so however many workers poll, on however
many machines, one runs it; the others' UPDATE matches no row. A worker that dies while running
one stops holding it when its lease expires, and the next worker runs it again: the functions are
written to be idempotent. After a run (or a failure) the job is due again ``interval`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..db import affected_rows, begin_write
from ..models import table_of, utcnow
from .models import PeriodicJobState

_STATES = table_of(PeriodicJobState)


@dataclass(frozen=True)
class PeriodicJob:
    """``run(app)`` every ``interval``; it returns a small summary for the job's row and the log."""

    name: str
    interval: timedelta
    run: Callable[[Flask], dict[str, Any]]


def _claimable(now: datetime) -> Any:
    return (_STATES.c.next_run_at <= now) & or_(_STATES.c.lease_expires_at.is_(None),
                                                _STATES.c.lease_expires_at < now)


def declare(session: Session, jobs: Sequence[PeriodicJob]) -> None:
    """Give every declared job a row (due at once) unless it has one; in the caller's transaction."""
    if not jobs:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(insert(_STATES).values([{"name": job.name, "next_run_at": now} for job in jobs])
                    .on_conflict_do_nothing(index_elements=["name"]))


def due_names(session: Session, names: Sequence[str]) -> list[str]:
    """Which of the jobs are due and not held by a live worker (a hint: claiming decides)."""
    now = utcnow()
    return list(session.scalars(select(_STATES.c.name).where(_STATES.c.name.in_(names), _claimable(now))))


def claim(session: Session, name: str, worker_id: str, lease: timedelta) -> bool:
    """Hold the job for ``lease`` if it is due and nobody holds it; False when another worker has it."""
    now = utcnow()
    result = session.execute(update(_STATES).where(_STATES.c.name == name, _claimable(now)).values(
        worker_id=worker_id, lease_expires_at=now + lease, last_started_at=now))
    return affected_rows(result) == 1


def renew(session: Session, name: str, worker_id: str, lease: timedelta) -> bool:
    """Extend the lease of a periodic job this worker runs; False when it no longer holds it."""
    with begin_write(session):
        result = session.execute(update(_STATES).where(
            _STATES.c.name == name, _STATES.c.worker_id == worker_id, _STATES.c.lease_expires_at.is_not(None),
        ).values(lease_expires_at=utcnow() + lease))
        return affected_rows(result) == 1


def release(session: Session, job: PeriodicJob, worker_id: str, *, result: dict[str, Any] | None = None,
            error: dict[str, Any] | None = None) -> None:
    """Record the run's outcome and make the job due again ``interval`` from now."""
    now = utcnow()
    session.execute(update(_STATES).where(_STATES.c.name == job.name, _STATES.c.worker_id == worker_id).values(
        lease_expires_at=None, worker_id=None, last_finished_at=now, next_run_at=now + job.interval,
        last_result=result, last_error=error))
