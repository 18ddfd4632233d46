"""Crash safety: a process SIGKILLed in the middle of a write leaves all of the write or none of it.

- An API process killed while an update's transaction is open (properties, credential, event and
  job written, not committed) leaves the source exactly as it was; killed after the commit, before
  the answer, it leaves exactly what the same update leaves when nothing is killed. On PostgreSQL
  the same holds for the unmodified service, held mid-transaction by a table lock the test takes.
- A worker killed while it records a check's result (streams written, not committed), or after
  recording it but before marking the job done, has its job run again once the lease expires,
  and the source ends in ``field_selection`` with one check and no duplicated streams.
  (tests/test_discovery.py's ``test_a_killed_workers_job_completes_once_after_its_lease`` kills a
  worker while it waits on the source's API, outside any transaction; these kill it inside one.)

The processes are real: the service under werkzeug and the worker loop, each in a subprocess
started by the test (``python -c "from tests.test_crash_safety import …"``). The only test-only
code in them is the pause installed by :func:`serve_pausing` / :func:`work_pausing`: at the chosen
point it writes a marker file and sleeps until the test kills the process. Runs on SQLite and
PostgreSQL; before killing, the test checks that the paused process really holds an open write
transaction (SQLite: the write lock is taken; PostgreSQL: the backend holds row locks on the tables).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from app import db
from app.crypto import get_keyring
from app.discovery.models import ConnectionCheck, Stream
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.models import Source, SourceEvent
from app.sources.credentials import decrypted_properties
from app.wiring import services

from .live_service import ROOT, free_port, service_environment, stop, wait_for_file, wait_until_healthy
from .test_discovery import _reset, create, data_api, run_jobs, step  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

PAUSE_AT = "CONNECT_TEST_PAUSE_AT"
PAUSE_MARKER = "CONNECT_TEST_PAUSE_MARKER"
MANY = "test.many-fields"
OLD = {"start_date": "2020-01-01T00:00:00Z", "api_token": "old-token-1234", "field_01": "old", "region": "eu"}
NEW = {"start_date": "2021-06-01T00:00:00Z", "api_token": "new-token-5678", "field_01": "new", "field_02": "added"}


# -- what runs in the killed processes ------------------------------------------------------------


def _pause() -> None:
    """Tell the test where we are, then wait to be killed (the deadline only bounds a lost test)."""
    Path(os.environ[PAUSE_MARKER]).write_text(str(os.getpid()))
    time.sleep(300)
    os._exit(3)


def serve_pausing() -> None:
    """The API process: the real app from CONNECT_* settings, served by werkzeug, pausing
    ``mid_transaction`` (after an update's writes are flushed, before its commit) or
    ``after_commit`` (the update committed, the response not yet sent), or ``nowhere``."""
    from dataclasses import replace

    from flask import request
    from werkzeug.serving import make_server

    from app import create_app, wiring

    app = create_app()
    if os.environ[PAUSE_AT] == "nowhere":
        pass  # the unmodified service
    elif os.environ[PAUSE_AT] == "mid_transaction":
        def pause_mid_update(session: Any, source: Any, card: Any, changed: frozenset[str]) -> None:
            session.flush()  # everything the update has done so far is in the open transaction
            _pause()

        # The app wired as create_app wires it, with one more hook after app/discovery's, which
        # queues the connection check: that row is written too.
        default = wiring.services(app)
        hooks = default.source_hooks
        wiring.install(app, replace(default, source_hooks=replace(
            hooks, after_properties_changed=(*hooks.after_properties_changed, pause_mid_update))))
    else:
        @app.after_request
        def pause_after_commit(response: Any) -> Any:
            if request.method == "PUT":
                _pause()
            return response

    make_server("127.0.0.1", int(os.environ["CONNECT_TEST_PORT"]), app, threaded=True).serve_forever()


def work_pausing() -> None:
    """The worker process: the real worker loop, pausing ``mid_record`` (the check's streams and
    result written, not committed) or ``before_finish`` (result committed, job not marked done)."""
    from app import create_app
    from app.discovery import jobs
    from app.jobs import worker as worker_module

    app = create_app()
    if os.environ[PAUSE_AT] == "mid_record":
        save_discovery = jobs.save_discovery

        def pausing_save(session: Any, source: Any, found: Any) -> Any:
            changes = save_discovery(session, source, found)
            session.flush()
            _pause()
            return changes

        jobs.save_discovery = pausing_save
    else:
        worker_module.finish_job = lambda *args, **kwargs: _pause()
    worker_module.Worker(app, services(app).jobs, poll_interval=0.05).run_forever()


def start(entry_point: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"from tests.test_crash_safety import {entry_point}; "
                             f"{entry_point}()"], cwd=ROOT, env=env)


# -- looking at the database from the test ---------------------------------------------------------


def assert_write_transaction_open(app) -> list[str]:
    """The paused process holds an open write transaction right now (else the kill would prove
    nothing). On PostgreSQL, returns the tables it has written to (at least one)."""
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite"):
        probe = sqlite3.connect(make_url(url).database, timeout=0.2, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                probe.execute("BEGIN IMMEDIATE")
        finally:
            probe.close()
        return []
    with app.app_context(), db.get_db().engine.connect() as connection:
        held = connection.execute(text(
            "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND l.mode = 'RowExclusiveLock' "
            "AND l.granted AND l.pid <> pg_backend_pid() ORDER BY 1"
        )).scalars().all()
    assert held, "the paused process has written nothing yet"
    return held


def source_state(app, source_id: int) -> dict[str, Any]:
    """Everything an update touches, as plain data (no ids or timestamps, so two sources compare)."""
    with app.app_context():
        session = db.session()
        with session.begin():
            source = session.get(Source, source_id)
            return {
                "properties": {k: v for k, v in source.properties.items() if k != "image_version"},
                "values": {k: v for k, v in decrypted_properties(get_keyring(), source).items()
                           if k != "image_version"},
                "credentials": sorted(c.name for c in source.credentials),
                "version": source.version,
                "config_generation": source.config_generation,
                "display_name": source.display_name,
                "events": [(e.type, e.detail) for e in session.scalars(
                    select(SourceEvent).where(SourceEvent.source_id == source_id).order_by(SourceEvent.id))],
                "jobs": [(j.kind, j.status, j.payload) for j in session.scalars(
                    select(Job).where(Job.source_id == source_id).order_by(Job.id))],
            }


def without_source_ids(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "jobs": [(kind, status, {k: v for k, v in payload.items() if k != "source_id"})
                              for kind, status, payload in state["jobs"]]}


# -- the API process ------------------------------------------------------------------------------


@pytest.fixture()
def api_process(app, tmp_path) -> Iterator:
    """Start the API subprocess pausing at a given point: ``start_api(pause_at)`` → (base_url, process)."""
    started: list[subprocess.Popen] = []

    def start_api(pause_at: str) -> tuple[str, subprocess.Popen, Path]:
        port, marker = free_port(), tmp_path / f"paused-{pause_at}"
        process = start("serve_pausing", service_environment(
            app.config["DATABASE_URL"], CONNECT_TEST_PORT=str(port), **{PAUSE_AT: pause_at, PAUSE_MARKER: str(marker)}))
        started.append(process)
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, process)
        return base_url, process, marker

    yield start_api
    for process in started:
        stop(process)


def put_in_background(url: str, headers: dict[str, str], body: dict) -> tuple[threading.Thread, list]:
    outcome: list = []

    def put() -> None:
        try:
            outcome.append(requests.put(url, headers=headers, json=body, timeout=120))
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=put)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("pause_at", ["mid_transaction", "after_commit"])
def test_an_api_process_killed_during_an_update_leaves_all_of_it_or_none(app, client, account, api_process,
                                                                         pause_at):
    body = {"type": MANY, "display_name": "Crash", "properties": OLD}
    source_id = client.post("/v4/sources", headers=account.headers, json=body).get_json()["id"]
    twin_id = client.post("/v4/sources", headers=account.headers,
                          json={**body, "display_name": "Twin"}).get_json()["id"]
    update = {"properties": NEW}
    before = source_state(app, source_id)
    assert before["values"]["api_token"] == OLD["api_token"]

    base_url, process, marker = api_process(pause_at)
    thread, outcome = put_in_background(f"{base_url}/v4/sources/{source_id}", account.headers, update)
    wait_for_file(marker, process)
    if pause_at == "mid_transaction":
        written = assert_write_transaction_open(app)
        print(f"\nwritten before the kill, not committed: {written or 'SQLite write lock held'}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    thread.join(timeout=30)
    assert isinstance(outcome[0], requests.ConnectionError), outcome  # the caller never heard back

    after = source_state(app, source_id)
    # What the same update leaves when nothing goes wrong: on the twin, through the in-process app.
    assert client.put(f"/v4/sources/{twin_id}", headers=account.headers, json=update).status_code == 200
    updated = source_state(app, twin_id)
    expected = before if pause_at == "mid_transaction" else {**updated, "display_name": "Crash"}
    print(f"\n[{db.get_db(app).engine.dialect.name}] API process SIGKILLed {pause_at.replace('_', ' ')}: "
          f"version {before['version']} → {after['version']}, api_token "
          f"{'old' if after['values']['api_token'] == OLD['api_token'] else 'new'}, "
          f"events {len(before['events'])} → {len(after['events'])}")
    assert without_source_ids(after) == without_source_ids(expected)
    assert updated["values"]["api_token"] == NEW["api_token"]  # the twin shows the update is not a no-op
    assert updated["version"] == before["version"] + 1
    # The source is usable afterwards: no lock or half-written row was left behind.
    again = client.put(f"/v4/sources/{source_id}", headers=account.headers, json={"properties": {"field_03": "x"}})
    assert again.status_code == 200, again.get_json()


def test_an_unmodified_api_process_killed_while_its_update_waits_on_a_table_lock(app, client, account,
                                                                                 api_process):
    """No test code in the service at all: on PostgreSQL the test holds ``LOCK TABLE sources IN SHARE
    MODE`` (reads and ``SELECT … FOR UPDATE`` pass, writes wait), so the update locks its row, writes
    what comes before its UPDATE of the source (credential, event, queued check) and waits; then the
    process is killed."""
    if db.get_db(app).engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no table locks: the hooked variants above cover it")
    source_id = client.post("/v4/sources", headers=account.headers,
                            json={"type": MANY, "display_name": "Locked", "properties": OLD}).get_json()["id"]
    before = source_state(app, source_id)
    base_url, process, _ = api_process("nowhere")
    with app.app_context(), db.get_db().engine.connect() as holder:
        holder.execute(text("LOCK TABLE sources IN SHARE MODE"))
        thread, outcome = put_in_background(f"{base_url}/v4/sources/{source_id}", account.headers,
                                            {"properties": NEW})
        deadline = time.monotonic() + 30
        while not holder.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relname = 'sources' AND NOT l.granted")).scalar():
            assert time.monotonic() < deadline, "the update never reached its UPDATE of the source"
            time.sleep(0.05)
        # What the waiting transaction holds: its row lock at least (the update locks the source
        # row first), and whatever it wrote before its UPDATE of the source, in whichever order
        # the write use case takes.
        written = holder.execute(text(
            "SELECT DISTINCT c.relname || ':' || l.mode FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND l.granted "
            "AND l.pid IN (SELECT pid FROM pg_locks WHERE relation = 'sources'::regclass AND NOT granted) "
            "ORDER BY 1")).scalars().all()
        assert written, "the waiting update holds no lock: it is not inside its transaction"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        holder.rollback()  # releases the table lock
    thread.join(timeout=30)
    assert isinstance(outcome[0], requests.ConnectionError), outcome
    after = source_state(app, source_id)
    print(f"\n[postgresql] unmodified API process SIGKILLed waiting to UPDATE sources, holding "
          f"{written}: version {before['version']} → {after['version']}, api_token "
          f"{'old' if after['values']['api_token'] == OLD['api_token'] else 'new'}")
    assert after == before
    again = client.put(f"/v4/sources/{source_id}", headers=account.headers, json={"properties": NEW})
    assert again.status_code == 200, again.get_json()
    assert source_state(app, source_id)["values"]["api_token"] == NEW["api_token"]


# -- the worker process ---------------------------------------------------------------------------


@pytest.mark.parametrize("pause_at, check_events", [("mid_record", 1), ("before_finish", 2)])
def test_a_worker_killed_inside_a_jobs_writes_has_the_job_run_again_after_its_lease(
        app, client, account, data_api, tmp_path, pause_at, check_events):
    source = create(client, account, data_api)
    marker = tmp_path / f"paused-{pause_at}"
    lease_seconds = 2
    worker = start("work_pausing", service_environment(
        app.config["DATABASE_URL"], CONNECT_JOB_LEASE_SECONDS=str(lease_seconds),
        **{PAUSE_AT: pause_at, PAUSE_MARKER: str(marker)}))
    try:
        wait_for_file(marker, worker)
        if pause_at == "mid_record":
            written = assert_write_transaction_open(app)
            assert "streams" in written or not written  # (SQLite does not say which tables)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop(worker)
    killed_at = datetime.now(UTC)
    assert step(client, account, source["id"]) == ("discover_schema" if pause_at == "mid_record"
                                                   else "field_selection")

    # Until the lease runs out, the job belongs to the dead worker: nobody else takes it.
    assert Worker(app, services(app).jobs, poll_interval=0.05).run_once() is False
    with app.app_context():
        job = db.session().scalars(select(Job).where(Job.source_id == source["id"])).one()
        assert (job.status, job.attempts) == ("running", 1)
        lease_end = job.lease_expires_at.replace(tzinfo=UTC)
    assert (lease_end - killed_at).total_seconds() <= lease_seconds

    run_jobs(app, until=lambda: job_finished(app, source["id"]), deadline=lease_seconds + 20)
    with app.app_context():
        session = db.session()
        job = session.scalars(select(Job).where(Job.source_id == source["id"])).one()
        checks = session.scalars(select(ConnectionCheck).where(ConnectionCheck.source_id == source["id"])).all()
        streams = session.scalars(select(Stream.tap_stream_id).where(Stream.source_id == source["id"])).all()
        row = session.get(Source, source["id"])
        events = session.scalars(select(SourceEvent.type).where(SourceEvent.source_id == source["id"])).all()
    print(f"\n[{db.get_db(app).engine.dialect.name}] worker SIGKILLed {pause_at.replace('_', ' ')}: job re-run "
          f"after its {lease_seconds} s lease, attempts {job.attempts}, {len(streams)} streams, "
          f"check_succeeded events {events.count('check_succeeded')}")
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert [c.status for c in checks] == ["succeeded"]
    assert len(streams) == len(set(streams)) > 0
    assert row.discovered_generation == row.config_generation
    assert events.count("check_succeeded") == check_events
    assert step(client, account, source["id"]) == "field_selection"


def job_finished(app, source_id: int) -> bool:
    with app.app_context():
        session = db.session()
        with session.begin():
            return session.scalar(select(func.count()).select_from(Job).where(
                Job.source_id == source_id, Job.status == "succeeded")) == 1
