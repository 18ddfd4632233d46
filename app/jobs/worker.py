"""The worker loop: claim a job, run its handler while renewing the lease, record the outcome.

Handlers are registered by kind (``register_handler``) by the modules that own the work, e.g.
discovery registers ``check_and_discover``. A handler raises :class:`JobFailed` to say whether a
failure is transient (retried with back-off) or final.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Flask

from ..db import begin_write, get_db
from .queue import DEFAULT_LEASE, ClaimedJob, claim_next_job, fail_job, finish_job, renew_lease

log = logging.getLogger(__name__)

Handler = Callable[[Flask, ClaimedJob], dict[str, Any]]
_handlers: dict[str, Handler] = {}


class JobFailed(Exception):
    def __init__(self, error_type: str, message: str, *, transient: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.transient = transient
        self.retry_after = retry_after


def register_handler(kind: str, handler: Handler) -> None:
    _handlers[kind] = handler


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, app: Flask, worker_id: str | None = None, poll_interval: float = 1.0,
                 lease: timedelta | None = None) -> None:
        self.app = app
        self.worker_id = worker_id or new_worker_id()
        self.poll_interval = poll_interval
        self.lease = lease or timedelta(seconds=app.config.get("JOB_LEASE_SECONDS") or DEFAULT_LEASE.seconds)
        self.stopping = threading.Event()

    def run_once(self) -> bool:
        """Run one job if one is ready; False when there was none."""
        Session = get_db(self.app).Session
        with Session() as session:
            job = claim_next_job(session, self.worker_id, self.lease, tuple(_handlers) or None)
        if job is None:
            return False
        handler = _handlers.get(job.kind)
        heartbeat = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job.id, heartbeat), daemon=True)
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

    def _renew(self, job_id: int, done: threading.Event) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not done.wait(interval):
            with get_db(self.app).Session() as session:
                if not renew_lease(session, job_id, self.worker_id, self.lease):
                    return

    def run_forever(self) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the database may be away for a moment; keep polling
                log.exception("worker loop error")
                busy = False
            if not busy:
                self.stopping.wait(self.poll_interval)

    def stop(self) -> None:
        self.stopping.set()


def start_embedded_worker(app: Flask) -> Worker:
    """A worker thread inside the API process: what `make run` uses so sources advance alone."""
    worker = Worker(app)
    threading.Thread(target=worker.run_forever, name="connect-worker", daemon=True).start()
    return worker
