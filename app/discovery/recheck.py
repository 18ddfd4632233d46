"""Scheduled health checks: a periodic job that checks connected sources again.

A source's credentials can stop working long after its check succeeded (a grant revoked at the
provider, a password changed). Every :data:`RUN_EVERY`, :func:`recheck_connected_sources` queues
the ordinary check-and-discover job (app/discovery/jobs.py) for connected sources whose last check
finished more than ``CONNECT_RECHECK_HOURS`` ago (0, the default: off). A check that fails
because of the credentials marks the source ``broken``, and the webhooks announce it
(``source.setup_state_changed``, app/sources/lifecycle.py); one that succeeds changes nothing.

Bounded: at most ``CONNECT_RECHECK_BATCH`` sources per run, the longest unchecked first, each job
due at a random moment within the run's period (jitter), so a fleet of sources connected at once
does not hit the workers, or one provider, at the same instant.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import begin_write, get_db
from ..jobs.models import Job
from ..models import Source, utcnow
from .models import ConnectionCheck
from .service import CHECK_JOB, queue_check

RUN_EVERY = timedelta(minutes=5)

_LAST_FINISHED = (select(func.max(ConnectionCheck.completed_at)).where(ConnectionCheck.source_id == Source.id)
                  .correlate(Source).scalar_subquery())
_CHECK_QUEUED = select(Job.id).where(Job.source_id == Source.id, Job.kind == CHECK_JOB,
                                     Job.status.in_(("queued", "running"))).correlate(Source).exists()


def recheck_connected_sources(app: Flask) -> dict[str, Any]:
    """Queue re-checks of the connected sources that are due (a periodic job)."""
    hours = float(app.config.get("RECHECK_HOURS") or 0)
    if hours <= 0:
        return {"off": True}
    batch = int(app.config.get("RECHECK_BATCH") or 10)
    with get_db(app).Session() as session, begin_write(session):
        queued = queue_due_rechecks(session, timedelta(hours=hours), batch, RUN_EVERY)
    return {"queued": queued}


def queue_due_rechecks(session: Session, after: timedelta, batch: int, spread: timedelta) -> int:
    now = utcnow()
    last = func.coalesce(_LAST_FINISHED, Source.connected_at)
    due = list(session.scalars(select(Source.id).where(
        Source.connected_at.is_not(None), Source.broken_at.is_(None), Source.deleted_at.is_(None),
        Source.discovered_generation == Source.config_generation, last < now - after, ~_CHECK_QUEUED,
    ).order_by(last, Source.id).limit(batch)))
    for source_id in sorted(due):  # lock in id order, as other multi-source writers do
        source = session.scalars(select(Source).where(Source.id == source_id).with_for_update()).one()
        queue_check(session, source)
        session.execute(update(Job).where(Job.source_id == source_id, Job.kind == CHECK_JOB,
                                          Job.status == "queued").values(
            run_after=now + timedelta(seconds=random.uniform(0, spread.total_seconds()))))
    return len(due)
