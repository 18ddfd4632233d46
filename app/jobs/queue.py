"""Queueing and claiming jobs.

Claiming is ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers on any
number of machines share one database without taking the same job; on SQLite the claim runs in a
``BEGIN IMMEDIATE`` transaction, which serialises claimers on the one machine SQLite serves. A
claimed job carries a lease; a worker that dies stops renewing it, and once it has expired the job
is claimable again. Jobs are written to be idempotent, so running one twice is harmless.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..db import affected_rows, begin_write
from ..models import utcnow
from ..wakeup import note_new_work
from .models import Job

DEFAULT_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    source_id: int
    attempts: int
    max_attempts: int
    payload: dict


def enqueue(session: Session, kind: str, source_id: int, payload: dict | None = None,
            max_attempts: int = 5) -> Job:
    """Queue a job in the caller's transaction, unless one of this kind is already queued.

    Callers hold the source's row lock, so two requests cannot both find none queued.
    """
    existing = session.scalars(select(Job).where(
        Job.source_id == source_id, Job.kind == kind, Job.status == "queued")).first()
    if existing is not None:
        existing.payload = payload or existing.payload
        return existing
    job = Job(kind=kind, source_id=source_id, payload=payload or {}, max_attempts=max_attempts)
    session.add(job)
    session.flush()
    note_new_work(session)
    return job


def claim_next_job(session: Session, worker_id: str, lease: timedelta = DEFAULT_LEASE,
                   kinds: tuple[str, ...] | None = None) -> ClaimedJob | None:
    now = utcnow()
    with begin_write(session):
        runnable = or_(
            (Job.status == "queued") & (Job.run_after <= now),
            (Job.status == "running") & (Job.lease_expires_at < now),  # its worker died
        )
        query = select(Job).where(runnable).order_by(Job.run_after, Job.id).limit(1)
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        job = session.scalars(query.with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.status = "running"
        job.attempts += 1
        job.worker_id = worker_id
        job.started_at = now
        job.lease_expires_at = now + lease
        return ClaimedJob(job.id, job.kind, job.source_id, job.attempts, job.max_attempts,
                          dict(job.payload))


def renew_lease(session: Session, job_id: int, worker_id: str, lease: timedelta = DEFAULT_LEASE) -> bool:
    """Extend a running job's lease; False when another worker has taken it over."""
    with begin_write(session):
        result = session.execute(update(Job).where(
            Job.id == job_id, Job.worker_id == worker_id, Job.status == "running",
        ).values(lease_expires_at=utcnow() + lease))
        return affected_rows(result) == 1


def finish_job(session: Session, job_id: int, worker_id: str, result: dict) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(
        status="succeeded", result=result, error=None, finished_at=utcnow(), lease_expires_at=None))


def backoff_delay(attempt: int, base: float = 2.0, cap: float = 300.0, retry_after: float | None = None) -> float:
    """Exponential back-off with full jitter; a provider's Retry-After is a floor."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(delay, retry_after or 0.0)


def fail_job(session: Session, job_id: int, worker_id: str, error: dict, *, transient: bool,
             attempts: int, max_attempts: int, retry_after: float | None = None) -> bool:
    """Record a failure; a transient one is retried later while attempts remain. Returns whether
    the job will run again."""
    retry = transient and attempts < max_attempts
    job = session.get(Job, job_id)
    if retry and job is not None and session.scalars(select(Job.id).where(
            Job.source_id == job.source_id, Job.kind == job.kind, Job.status == "queued")).first():
        retry = False  # a newer queued job of the same kind will do this work anyway
    values: dict = {"error": error, "lease_expires_at": None}
    if retry:
        values.update(status="queued", worker_id=None,
                      run_after=utcnow() + timedelta(seconds=backoff_delay(attempts, retry_after=retry_after)))
    else:
        values.update(status="failed", finished_at=utcnow())
    session.execute(update(Job).where(Job.id == job_id, Job.worker_id == worker_id).values(**values))
    return retry


def job_counts(session: Session) -> dict[str, int]:
    from sqlalchemy import func

    with session.begin():
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: count for status, count in rows}
