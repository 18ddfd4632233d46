"""Periodic jobs: declared in create_app, run by the worker (the embedded one too), one worker at a
time; the expired rows of the OAuth handshake and of connect sessions are deleted by them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select

from app import db
from app.connect.models import ConnectSession
from app.crypto import get_keyring
from app.jobs.models import PeriodicJobState
from app.jobs.periodic import PeriodicJob
from app.jobs.worker import JobTable, Worker
from app.models import utcnow
from app.oauth.models import OAuthSecret, OAuthState
from app.wiring import services


def _state(app, name: str) -> PeriodicJobState | None:
    with db.get_db(app).Session() as session:
        return session.get(PeriodicJobState, name)


def test_a_due_periodic_job_runs_once_then_waits_for_its_interval(app):
    runs: list[str] = []
    job = PeriodicJob("count_runs", timedelta(hours=1), lambda _app: runs.append("ran") or {"runs": len(runs)})
    worker = Worker(app, JobTable(periodic=(job,)))
    started = utcnow()
    assert worker.run_due_periodic_jobs() == ["count_runs"]
    assert worker.run_due_periodic_jobs() == []
    assert runs == ["ran"]
    state = _state(app, "count_runs")
    assert state.last_result == {"runs": 1} and state.last_error is None and state.lease_expires_at is None
    assert state.next_run_at >= started + timedelta(hours=1)


def test_two_workers_never_run_the_same_periodic_job_at_once(app):
    inside, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(_app) -> dict:
        runs.append(threading.current_thread().name)
        inside.set()
        assert release.wait(30)
        return {}

    table = JobTable(periodic=(PeriodicJob("slow", timedelta(0), slow),))
    first, second = Worker(app, table, worker_id="first"), Worker(app, table, worker_id="second")
    ran_first: list[list[str]] = []
    thread = threading.Thread(target=lambda: ran_first.append(first.run_due_periodic_jobs()), name="first")
    thread.start()
    assert inside.wait(30)
    assert _state(app, "slow").worker_id == "first"
    assert second.run_due_periodic_jobs() == []  # due (interval 0), but held by the first worker
    release.set()
    thread.join(30)
    assert ran_first == [["slow"]] and runs == ["first"]
    assert second.run_due_periodic_jobs() == ["slow"]  # free again, and due again at once


def test_a_crashing_periodic_job_is_recorded_and_the_worker_goes_on(app):
    def crash(_app) -> dict:
        raise RuntimeError("boom")

    worker = Worker(app, JobTable(periodic=(PeriodicJob("crash", timedelta(minutes=5), crash),)))
    assert worker.run_due_periodic_jobs() == ["crash"]
    state = _state(app, "crash")
    assert state.last_error == {"type": "internal_error", "message": "RuntimeError"}
    assert state.lease_expires_at is None and state.next_run_at > utcnow() + timedelta(minutes=4)


def _sealed(app, associated_data: str) -> dict:
    sealed = get_keyring(app).seal("{}", associated_data)
    return {"key_id": sealed.key_id, "ciphertext": sealed.ciphertext}


def test_the_purge_jobs_delete_rows_expired_past_retention_and_keep_the_rest(app, account):
    now = utcnow()
    long_ago, recently = now - timedelta(days=2), now - timedelta(hours=1)
    with db.get_db(app).Session() as session, db.begin_write(session):
        for label, expires in (("old", long_ago), ("new", recently)):
            session.add(OAuthState(state_hash=f"{label}-state".ljust(64, "0"), account_id=account.id,
                                   source_type="t", redirect_url="https://x", app_scope="operator",
                                   client_id="c", expires_at=expires, **_sealed(app, f"oauth-state:{label}")))
            session.add(OAuthSecret(secret_hash=f"{label}-secret".ljust(64, "0"), account_id=account.id,
                                    source_type="t", app_scope="operator", expires_at=expires,
                                    **_sealed(app, f"oauth-secret:{label}")))
            session.add(ConnectSession(token_hash=f"{label}-session".ljust(64, "0"), account_id=account.id,
                                       allowed_types=["t"], redirect_url="https://x", display={},
                                       expires_at=expires))
    ran = Worker(app, services(app).jobs).run_due_periodic_jobs()
    assert {"purge_expired_connect_sessions", "purge_expired_handshakes"} <= set(ran)
    with db.get_db(app).Session() as session:
        assert [r.state_hash[:9] for r in session.scalars(select(OAuthState))] == ["new-state"]
        assert [r.secret_hash[:10] for r in session.scalars(select(OAuthSecret))] == ["new-secret"]
        assert [r.token_hash[:11] for r in session.scalars(select(ConnectSession))] == ["new-session"]
    assert _state(app, "purge_expired_handshakes").last_result == {"oauth_states": 1, "oauth_secrets": 1}
    assert _state(app, "purge_expired_connect_sessions").last_result == {"connect_sessions": 1}


def test_the_embedded_worker_runs_the_periodic_jobs(make_app):
    app = make_app(EMBEDDED_WORKER=True)
    worker = app.extensions["connect.worker"]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = _state(app, "purge_expired_handshakes")
            if state is not None and state.last_finished_at is not None:
                break
            time.sleep(0.05)
        assert state is not None and state.last_finished_at is not None
        assert state.last_error is None
    finally:
        worker.stop()
