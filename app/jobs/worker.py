"""The worker loop: claim a job, run its handler while renewing the lease, record the outcome;
and, every few seconds, run the periodic jobs that are due (app/jobs/periodic.py).

What a worker can run is its :class:`JobTable`: the handler of each job kind, the *pumps* (work
kept in tables of its own, such as webhook deliveries: each call does what is due and says how
much) and the periodic jobs, declared in ``create_app`` (app/wiring.py). An idle worker waits for
its poll interval or until the process's :class:`~app.wakeup.Wakeup` rings (app/wakeup.py: new
work was committed), whichever comes first. A handler raises :class:`JobFailed` to say
whether a failure is transient (retried with back-off) or final.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from flask import Flask

from ..db import begin_write, get_db
from ..wakeup import PostgresListener, Wakeup, get_wakeup
from . import periodic
from .periodic import PeriodicJob
from .queue import DEFAULT_LEASE, ClaimedJob, claim_next_job, fail_job, finish_job, renew_lease

log = logging.getLogger(__name__)

Handler = Callable[[Flask, ClaimedJob], dict[str, Any]]
Pump = Callable[[Flask], int]  # does what is due; returns how many items it handled
# How often an idle or busy worker looks for due periodic jobs (one small query).
PERIODIC_CHECK_SECONDS = 5.0
LISTENER_KEY = "connect.listener"


@dataclass(frozen=True)
class JobTable:
    """The work a worker can do: the handler of each job kind, and the periodic jobs."""

    handlers: Mapping[str, Handler] = field(default_factory=lambda: MappingProxyType({}))
    periodic: tuple[PeriodicJob, ...] = ()
    pumps: tuple[Pump, ...] = ()


class JobFailed(Exception):
    def __init__(self, error_type: str, message: str, *, transient: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.transient = transient
        self.retry_after = retry_after


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, app: Flask, jobs: JobTable, worker_id: str | None = None, poll_interval: float = 1.0,
                 lease: timedelta | None = None, periodic_check_seconds: float = PERIODIC_CHECK_SECONDS,
                 wakeup: Wakeup | None = None) -> None:
        self.app = app
        self.wakeup = wakeup or get_wakeup(app)
        self.jobs = jobs
        self.worker_id = worker_id or new_worker_id()
        self.poll_interval = poll_interval
        self.lease = lease or timedelta(seconds=app.config.get("JOB_LEASE_SECONDS") or DEFAULT_LEASE.seconds)
        self.periodic_check_seconds = periodic_check_seconds
        self.stopping = threading.Event()
        self.listener: PostgresListener | None = None  # the LISTEN thread this worker started, if any
        self._periodic_declared = False
        self._next_periodic_check = 0.0

    def run_once(self) -> bool:
        """Run one job if one is ready; False when there was none."""
        Session = get_db(self.app).Session
        with Session() as session:
            job = claim_next_job(session, self.worker_id, self.lease, tuple(self.jobs.handlers) or None)
        if job is None:
            return False
        handler = self.jobs.handlers.get(job.kind)
        heartbeat = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(heartbeat, renew_lease, job.id), daemon=True)
        renewer.start()
        try:
            with self.app.app_context():
                if handler is None:
                    raise JobFailed("unknown_job", f"no handler for job kind {job.kind!r}", transient=False)
                result = handler(self.app, job)
        except JobFailed as failure:
            outcome = self._record_failure(job, failure)
            log.info("job failed", extra={"job_id": job.id, "kind": job.kind, "retry": outcome,
                                          "error_type": failure.error["type"]})
        except Exception as error:  # a bug in a handler must not kill the worker
            log.exception("job crashed", extra={"job_id": job.id, "kind": job.kind})
            self._record_failure(job, JobFailed("internal_error", type(error).__name__, transient=True))
        else:
            with Session() as session, begin_write(session):
                finish_job(session, job.id, self.worker_id, result)
            log.info("job succeeded", extra={"job_id": job.id, "kind": job.kind})
        finally:
            heartbeat.set()
            renewer.join(timeout=5)
        return True

    def _record_failure(self, job: ClaimedJob, failure: JobFailed) -> bool:
        with get_db(self.app).Session() as session, begin_write(session):
            return fail_job(session, job.id, self.worker_id, failure.error, transient=failure.transient,
                            attempts=job.attempts, max_attempts=job.max_attempts,
                            retry_after=failure.retry_after)

    def _renew(self, done: threading.Event, renew: Callable[..., bool], key: int | str) -> None:
        """Renew the lease of what this worker runs (a job's id, a periodic job's name) until done."""
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not done.wait(interval):
            with get_db(self.app).Session() as session:
                if not renew(session, key, self.worker_id, self.lease):
                    return

    # --- periodic jobs ------------------------------------------------------------------------------

    def run_due_periodic_jobs(self) -> list[str]:
        """Run every declared periodic job that is due and that no other worker holds; returns the
        names of those this worker ran."""
        if not self.jobs.periodic:
            return []
        Session = get_db(self.app).Session
        if not self._periodic_declared:
            with Session() as session, begin_write(session):
                periodic.declare(session, self.jobs.periodic)
            self._periodic_declared = True
        by_name = {job.name: job for job in self.jobs.periodic}
        with Session() as session, session.begin():
            due = periodic.due_names(session, list(by_name))
        ran = []
        for name in due:
            with Session() as session, begin_write(session):
                claimed = periodic.claim(session, name, self.worker_id, self.lease)
            if claimed:
                self._run_periodic(by_name[name])
                ran.append(name)
        return ran

    def _run_periodic(self, job: PeriodicJob) -> None:
        heartbeat = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(heartbeat, periodic.renew, job.name), daemon=True)
        renewer.start()
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            with self.app.app_context():
                result = job.run(self.app)
            log.info("periodic job ran", extra={"periodic_job": job.name, "result": result})
        except Exception as failure:  # a bug in a periodic job must not kill the worker
            log.exception("periodic job crashed", extra={"periodic_job": job.name})
            error = {"type": "internal_error", "message": type(failure).__name__}
        finally:
            heartbeat.set()
            renewer.join(timeout=5)
        with get_db(self.app).Session() as session, begin_write(session):
            periodic.release(session, job, self.worker_id, result=result, error=error)

    def _periodic_turn(self) -> None:
        now = time.monotonic()
        if now >= self._next_periodic_check:
            self._next_periodic_check = now + self.periodic_check_seconds
            self.run_due_periodic_jobs()

    def run_pumps(self) -> int:
        """Run every pump once; returns how many items they handled together."""
        handled = 0
        for pump in self.jobs.pumps:
            with self.app.app_context():
                handled += pump(self.app)
        return handled

    # --- the loop ---------------------------------------------------------------------------------

    def run_forever(self) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        while not self.stopping.is_set():
            try:
                self._periodic_turn()
                busy = self.run_once()
                busy = self.run_pumps() > 0 or busy
            except Exception:  # the database may be away for a moment; keep polling
                log.exception("worker loop error")
                busy = False
            if not busy:
                self.wakeup.wait(self.poll_interval)

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.ring()
        if self.listener is not None:
            self.listener.stop()


def start_embedded_worker(app: Flask, jobs: JobTable) -> Worker:
    """A worker thread inside the API process: what `make run` uses so sources advance alone."""
    worker = Worker(app, jobs)
    worker.listener = listen_for_work(app)
    threading.Thread(target=worker.run_forever, name="connect-worker", daemon=True).start()
    return worker


def listen_for_work(app: Flask) -> PostgresListener | None:
    """On PostgreSQL, start the process's LISTEN thread (once), so other processes' commits wake
    this one's workers too; on SQLite the in-process ring is all there is."""
    if get_db(app).is_sqlite:
        return None
    listener: PostgresListener | None = app.extensions.get(LISTENER_KEY)
    if listener is None or listener.stopped:
        listener = app.extensions[LISTENER_KEY] = PostgresListener(app.config["DATABASE_URL"],
                                                                   get_wakeup(app)).start()
    return listener
