"""A source's life as an integrator's webhook hears it, against real servers: the webhook receiver
(verifying every delivery with the ``standardwebhooks`` library), this machine's PostgreSQL as a
source database behind the SHIPPED card ``platform.hp-postgres``, and the workers that run the
jobs, the webhook deliveries and the periodic jobs as ``make run`` and ``flask connect worker`` do.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, select, update
from sqlalchemy.orm import sessionmaker

from app import db
from app.db import begin_write
from app.discovery.models import ConnectionCheck
from app.discovery.recheck import RUN_EVERY as RECHECK_EVERY
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.models import Source, utcnow
from app.sources.events import record_event
from app.wakeup import PostgresListener, Wakeup, note_new_work
from app.webhooks.models import WebhookEvent
from app.wiring import services

from .conftest import report_figure
from .connectors_support import create_source, running_data_api
from .servers import WebhookReceiver
from .source_databases import SourceDatabase, pg_admin, postgres_source  # noqa: F401
from .test_database_sources import pg_properties, select_stream

SHIPPED_TYPE = "platform.hp-postgres"


@pytest.fixture()
def hooks_app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app(WEBHOOK_ALLOW_LOOPBACK=True, WEBHOOK_TIMEOUT=2.0, RECHECK_HOURS=1.0)


def register(client, account, receiver: WebhookReceiver, events: tuple[str, ...] = ("*",)) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/v4/webhooks", headers=account.headers, json={"url": receiver.url, "events": list(events)})
    assert response.status_code == 201, response.get_json()
    receiver.trust("current", response.get_json()["secret"])
    return int(response.get_json()["id"])


def work(app: Flask, deadline: float = 30.0) -> None:
    """Run jobs and deliveries in this process, as a worker's loop does, until nothing is left."""
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        if not worker.run_once() and not worker.run_pumps():
            return
    raise AssertionError("work left after the deadline")


def kinds(received: list[Any]) -> list[tuple[str | None, dict[str, Any]]]:
    return [(r.type, {k: v for k, v in (r.payload or {})["data"].items() if k != "source_id"}) for r in received]


def make_rechecks_due(app: Flask) -> list[float]:
    """Bring the jittered re-checks forward; returns how far ahead each was due (seconds)."""
    with db.get_db(app).Session() as session, begin_write(session):
        jobs = session.scalars(select(Job).where(Job.status == "queued")).all()
        ahead = [(job.run_after - utcnow()).total_seconds() for job in jobs]
        for job in jobs:
            job.run_after = utcnow()
    return ahead


def make_checks_old(app: Flask, source_id: int, by: timedelta) -> None:
    with db.get_db(app).Session() as session, begin_write(session):
        for check in session.scalars(select(ConnectionCheck).where(ConnectionCheck.source_id == source_id)):
            check.completed_at = check.completed_at - by if check.completed_at else None
        source = session.get_one(Source, source_id)
        source.connected_at = source.connected_at - by if source.connected_at else None


@pytest.fixture()
def revoked_grant(postgres_source: SourceDatabase) -> Iterator[Callable[[], None]]:
    """Revoke the source's access at the provider: its user may no longer connect to the database
    (this machine's PostgreSQL trusts local logins, so a changed password would change nothing)."""

    def revoke() -> None:
        with pg_admin() as admin:
            admin.execute(f'REVOKE CONNECT ON DATABASE "{postgres_source.database}" FROM PUBLIC')

    yield revoke
    with pg_admin() as admin:
        admin.execute(f'GRANT CONNECT ON DATABASE "{postgres_source.database}" TO PUBLIC')


def test_a_sources_whole_life_reaches_the_webhook_signed_and_in_order(
        hooks_app, account, receiver, postgres_source, revoked_grant):
    client = hooks_app.test_client()
    register(client, account, receiver)
    source_id = create_source(client, account, SHIPPED_TYPE, pg_properties(postgres_source))
    work(hooks_app)
    select_stream(client, account, source_id, f"{postgres_source.database}-shop-customers")
    work(hooks_app)
    assert client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()[
        "report_card"]["current_step_type"] == "fully_configured"

    revoked_grant()  # the grant is revoked at the provider; nobody tells connect
    make_checks_old(hooks_app, source_id, timedelta(hours=2))
    worker = Worker(hooks_app, services(hooks_app).jobs)
    assert "recheck_connected_sources" in worker.run_due_periodic_jobs()
    [ahead] = make_rechecks_due(hooks_app)
    assert -1 <= ahead <= RECHECK_EVERY.total_seconds()  # jittered over the job's period
    work(hooks_app)
    body = client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()
    assert body["setup_state"] == "broken"

    received = receiver.of_source(source_id)
    assert all(r.verified_by == {"current"} and r.answered == 200 for r in received)
    assert len({r.message_id for r in received}) == len(received)
    check_ids = [r.payload["data"]["check_id"] for r in received if r.type == "connection_check.completed"]
    broken_reason = body["report_card"]["setup_error"]
    assert kinds(received) == [
        ("source.created", {"source_type": SHIPPED_TYPE, "name": body["name"]}),
        ("source.step_changed", {"from": "form", "to": "discover_schema"}),
        ("connection_check.completed", {"check_id": check_ids[0], "status": "succeeded", "error": None}),
        ("source.step_changed", {"from": "discover_schema", "to": "field_selection"}),
        ("source.setup_state_changed", {"from": "incomplete", "to": "connected", "reason": None}),
        ("source.step_changed", {"from": "field_selection", "to": "fully_configured"}),
        ("source.fully_configured", {}),
        ("connection_check.completed", {"check_id": check_ids[1], "status": "failed",
                                        "error": received[7].payload["data"]["error"]}),
        ("source.setup_state_changed", {"from": "connected", "to": "broken", "reason": broken_reason}),
    ]
    assert check_ids[0] != check_ids[1] and received[7].payload["data"]["error"]["type"] == "permission_denied"
    assert postgres_source.password not in str([r.payload for r in received])


def test_announcing_a_write_reads_the_source_once_and_stores_only_a_move(hooks_app, account, receiver):
    """What the webhooks last said lives on the source's row, and the update use case hands over the
    view it leaves: a PUT reads ``sources`` once (its locked read), a PUT that moves nothing stores
    no announcement, and one that moves the step stores it and is announced once."""
    client = hooks_app.test_client()
    register(client, account, receiver)
    # Never connected to (no job runs here); port 6543, as 5432 would be the service's own database on PostgreSQL.
    source_id = create_source(client, account, SHIPPED_TYPE, {"host": "127.0.0.1", "port": "6543"})
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    engine = db.get_db(hooks_app).engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = client.put(f"/v4/sources/{source_id}", headers=account.headers,
                              json={"properties": {"dbname": "nowhere"}})
        assert response.status_code == 200, response.get_json()
        reads = [s for s in statements if s.startswith("SELECT") and " FROM sources" in s]
        assert len(reads) == 1, reads
        assert not [s for s in statements if "announced_" in s.split(" WHERE ")[0] and s.startswith("UPDATE")]
        statements.clear()
        response = client.put(f"/v4/sources/{source_id}", headers=account.headers, json={"properties": {
            "user": "nobody", "password": "not-used-" + str(time.time_ns())}})
        assert response.get_json()["report_card"]["current_step_type"] == "discover_schema"
        assert len([s for s in statements if s.startswith("SELECT") and " FROM sources" in s]) == 1
        assert [s for s in statements if s.startswith("UPDATE sources SET announced_step")]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with db.get_db(hooks_app).Session() as session:
        moves = session.scalars(select(WebhookEvent.data).where(
            WebhookEvent.source_id == source_id, WebhookEvent.type == "source.step_changed")).all()
    assert [{k: v for k, v in move.items() if k != "source_id"} for move in moves] == [
        {"from": "form", "to": "discover_schema"}]


def test_a_recheck_of_working_credentials_changes_nothing_and_recheck_is_off_by_default(
        make_app, hooks_app, account, receiver, postgres_source):
    client = hooks_app.test_client()
    register(client, account, receiver)
    source_id = create_source(client, account, SHIPPED_TYPE, pg_properties(postgres_source))
    work(hooks_app)
    before = len(receiver.of_source(source_id))
    make_checks_old(hooks_app, source_id, timedelta(hours=2))
    default_app = make_app()
    assert Worker(default_app, services(default_app).jobs).run_due_periodic_jobs()
    with db.get_db(hooks_app).Session() as session:
        from app.jobs.periodic import PeriodicJobState
        state = session.get(PeriodicJobState, "recheck_connected_sources")
        assert state is not None and state.last_result == {"off": True}
        session.execute(update(PeriodicJobState).values(next_run_at=state.last_started_at))
        session.commit()
    assert "recheck_connected_sources" in Worker(hooks_app, services(hooks_app).jobs).run_due_periodic_jobs()
    assert len(make_rechecks_due(hooks_app)) == 1
    work(hooks_app)
    after = kinds(receiver.of_source(source_id)[before:])
    assert [kind for kind, _ in after] == ["connection_check.completed"] and after[0][1]["status"] == "succeeded"


def test_no_event_is_stored_for_a_change_that_rolled_back(hooks_app, account, receiver, postgres_source):
    client = hooks_app.test_client()
    source_id = create_source(client, account, SHIPPED_TYPE, pg_properties(postgres_source))
    register(client, account, receiver)
    Session = db.get_db(hooks_app).Session
    with pytest.raises(RuntimeError), Session() as session, begin_write(session):
        source = session.get_one(Source, source_id)
        source.deleted_at = source.created_at
        record_event(session, source, "deleted")
        raise RuntimeError("the change fails after its event was recorded")
    with Session() as session:
        assert session.scalars(select(WebhookEvent)).all() == []
    assert client.delete(f"/v4/sources/{source_id}", headers=account.headers).status_code == 200
    work(hooks_app)
    assert [r.type for r in receiver.of_source(source_id)] == ["source.deleted"]


# --- workers wake on new work ---------------------------------------------------------------------


def test_a_worker_wakes_on_the_commit_that_queued_work_not_after_its_poll(make_app, account, receiver):
    """The embedded worker's set-up (one process; SQLite's only kind), with a 30 s poll: only the
    ring after the commit can make the source advance, and its webhook deliveries go out, within a
    few seconds. The worker's loop sends the deliveries itself (nobody calls run_deliveries)."""
    from .test_discovery import TOKEN, TYPE

    app = make_app(WEBHOOK_ALLOW_LOOPBACK=True, WEBHOOK_TIMEOUT=2.0)
    register(app.test_client(), account, receiver)
    with running_data_api(TOKEN) as api:
        worker = Worker(app, services(app).jobs, poll_interval=30.0)
        worker._next_periodic_check = float("inf")  # periodic jobs are not what this measures
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            time.sleep(0.2)  # the worker is idle, waiting
            client = app.test_client()
            started = time.monotonic()
            created = client.post("/v4/sources", headers=account.headers, json={
                "type": TYPE, "display_name": "Woken", "properties": {"api_url": api.base_url, "api_token": TOKEN}})
            assert created.status_code == 201
            step_type = None
            while time.monotonic() - started < 10 and step_type != "field_selection":
                time.sleep(0.01)
                step_type = client.get(f"/v4/sources/{created.get_json()['id']}", headers=account.headers
                                       ).get_json()["report_card"]["current_step_type"]
            elapsed = time.monotonic() - started
            delivered = receiver.wait_for(5, deadline=5.0)  # created, step, check, step, connected
            delivered_after = time.monotonic() - started
        finally:
            worker.stop()
            thread.join(10)
    assert [r.type for r in delivered][-1] == "source.setup_state_changed"
    report_figure(f"... and its 5 webhook deliveries, sent by the worker's loop, all in within {delivered_after:.3f} s")
    report_figure(f"last credential → field_selection, worker polling every 30 s: {elapsed:.3f} s")
    assert step_type == "field_selection" and elapsed < 5.0


def test_postgres_notify_wakes_another_connection_on_commit_and_never_on_rollback(app):
    if db.get_db(app).is_sqlite:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite has the in-process ring only")
    wakeup = Wakeup()
    listener = PostgresListener(app.config["DATABASE_URL"], wakeup).start()
    try:
        assert listener.listening.wait(10)
        wakeup.wait(0)  # forget anything from before
        # Another engine stands in for another process: only PostgreSQL carries the news.
        engine = create_engine(app.config["DATABASE_URL"])
        other = sessionmaker(engine)
        with other() as session, pytest.raises(RuntimeError), session.begin():
            note_new_work(session)
            raise RuntimeError("rolled back")
        assert not wakeup.wait(0.5)
        with other() as session, session.begin():
            note_new_work(session)
            started = time.monotonic()
        assert wakeup.wait(5)
        woke_after = time.monotonic() - started
        engine.dispose()
    finally:
        listener.stop()
    report_figure(f"NOTIFY → listener rung after {woke_after * 1000:.1f} ms")
    assert woke_after < 1.0


# --- periodic jobs across processes ---------------------------------------------------------------


def _periodic_process(database_url: str, report_cards: str, keys: str, marks: str, seconds: float) -> None:
    """A worker process that runs one periodic job, due again at once, as often as it can claim it."""
    from pathlib import Path

    from app import create_app
    from app.jobs.periodic import PeriodicJob
    from app.jobs.worker import JobTable

    app = create_app({"DATABASE_URL": database_url, "REPORT_CARDS": report_cards, "ENCRYPTION_KEYS": keys,
                      "OPERATOR_TOKEN": "unused"})

    def exclusive(_app: Flask) -> dict[str, Any]:
        started = time.time()
        time.sleep(0.05)
        (Path(marks) / f"{os.getpid()}-{time.monotonic_ns()}").write_text(f"{started} {time.time()}")
        return {}

    worker = Worker(app, JobTable(periodic=(PeriodicJob("exclusive", timedelta(0), exclusive),)))
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        worker.run_due_periodic_jobs()
        time.sleep(0.005)


def test_worker_processes_never_run_the_same_periodic_job_at_once(app, tmp_path):
    if db.get_db(app).is_sqlite:
        pytest.skip("several worker processes share one database on PostgreSQL (SQLite: one worker)")
    context = multiprocessing.get_context("spawn")
    args = (app.config["DATABASE_URL"], app.config["REPORT_CARDS"], app.config["ENCRYPTION_KEYS"], str(tmp_path), 4.0)
    processes = [context.Process(target=_periodic_process, args=args) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    runs = sorted(tuple(map(float, mark.read_text().split())) for mark in tmp_path.iterdir())
    by_process = {mark.name.split("-")[0] for mark in tmp_path.iterdir()}
    assert len(runs) >= 10 and len(by_process) >= 2, (len(runs), by_process)
    overlaps = [(a, b) for a, b in zip(runs, runs[1:], strict=False) if b[0] < a[1]]
    report_figure(f"periodic job across 3 worker processes: {len(runs)} runs by {len(by_process)} processes, "
                  f"{len(overlaps)} overlapping")
    assert overlaps == []


# --- a process killed between the change and the send --------------------------------------------

SOURCE_VAR, TOKEN_VAR = "CONNECT_TEST_SOURCE_ID", "CONNECT_TEST_ACCOUNT_TOKEN"


def delete_then_pause() -> None:
    """A service process whose DELETE commits (its webhook event with it) and that dies before any
    worker sends it."""
    from app import create_app

    from .test_webhooks import _pause

    app = create_app()
    response = app.test_client().delete(f"/v4/sources/{os.environ[SOURCE_VAR]}",
                                        headers={"Authorization": f"Bearer {os.environ[TOKEN_VAR]}"})
    assert response.status_code == 200, response.get_json()
    _pause()


def test_a_change_committed_by_a_process_killed_before_sending_is_announced_once(
        hooks_app, account, receiver, postgres_source, tmp_path):
    from .live_service import ROOT, service_environment, stop, wait_for_file
    from .test_webhooks import PAUSE_MARKER

    client = hooks_app.test_client()
    source_id = create_source(client, account, SHIPPED_TYPE, pg_properties(postgres_source))
    register(client, account, receiver, events=("source.deleted",))
    marker = tmp_path / "deleted"
    environment = service_environment(hooks_app.config["DATABASE_URL"], **{
        PAUSE_MARKER: str(marker), SOURCE_VAR: str(source_id), TOKEN_VAR: account.token})
    process = subprocess.Popen([sys.executable, "-c", "from tests.test_lifecycle import delete_then_pause; "
                                "delete_then_pause()"], cwd=ROOT, env=environment)
    try:
        wait_for_file(marker, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        stop(process)
    assert receiver.received == []
    work(hooks_app)  # another process's worker, later
    work(hooks_app)
    assert [(r.type, r.source_id) for r in receiver.received] == [("source.deleted", source_id)]
