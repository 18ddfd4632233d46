"""Wiring: importing a module does nothing; create_app wires the collaborators, and an app built
with other wiring behaves accordingly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from app import db, wiring
from app.jobs.models import Job
from app.jobs.queue import ClaimedJob, enqueue
from app.jobs.worker import JobTable, Worker
from app.sources.writes import SourceHooks
from app.wiring import services

ROOT = Path(__file__).resolve().parent.parent
TYPE = "test.discovery"


def test_importing_every_module_of_the_app_does_nothing(tmp_path):
    """In a fresh interpreter: no environment variable read, no file made, no log handler, no
    database engine, whatever module is imported."""
    probe = textwrap.dedent(f"""
        import gc, logging, os, pkgutil, importlib
        reads = []

        class Recording(type(os.environ)):
            def __getitem__(self, key):
                reads.append(key)
                return super().__getitem__(key)

        os.environ.__class__ = Recording
        os.environ["CONNECT_DATABASE_URL"] = "sqlite:///{tmp_path}/never.db"
        reads.clear()
        handlers = list(logging.getLogger().handlers)
        import app
        names = [m.name for m in pkgutil.walk_packages(app.__path__, "app.")
                 if not m.name.startswith("app.migrations.versions") and m.name != "app.migrations.env"]
        for name in names:
            importlib.import_module(name)
        from sqlalchemy.engine import Engine
        engines = [o for o in gc.get_objects() if isinstance(o, Engine)]
        connect_reads = [key for key in reads if key.startswith("CONNECT_")]
        print(len(names), connect_reads, logging.getLogger().handlers == handlers, len(engines))
    """)
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    count, reads, same_handlers, engines = run.stdout.split(maxsplit=1)[0], *run.stdout.split()[1:]
    assert int(count) > 60
    assert (reads, same_handlers, engines) == ("[]", "True", "0"), run.stdout
    assert list(tmp_path.iterdir()) == []


def test_create_app_wires_the_collaborators(app):
    from app import wire
    from app.connectors.registry import get_connectors

    registry = get_connectors(app)
    wired = wire(registry)
    assert wired.source_hooks.redeem_secret is not None
    assert wired.source_hooks.destinations == registry.destination_problems
    assert [hook.__name__ for hook in wired.source_hooks.after_properties_changed] == ["queue_check_when_ready"]
    assert set(wired.jobs.handlers) == {"check_and_discover"}
    assert wired.source_hooks.before_delete is not None
    assert {job.name for job in wired.jobs.periodic} == {
        "purge_expired_handshakes", "purge_expired_connect_sessions", "prune_webhook_history",
        "recheck_connected_sources", "keep_tokens_alive"}
    assert [pump.__name__ for pump in wired.jobs.pumps] == ["run_deliveries"]


def _queued_checks(app, source_id: int) -> int:
    with db.get_db(app).Session() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.source_id == source_id))


def _create(client, account, name: str) -> int:
    response = client.post("/v4/sources", headers=account.headers, json={
        "type": TYPE, "display_name": name, "properties": {"api_url": "http://127.0.0.1:9", "api_token": "k-123456"}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_an_app_wired_without_the_check_hook_queues_no_check(make_app, account):
    default = make_app()
    quiet = make_app()
    wiring.install(quiet, replace(services(quiet), source_hooks=replace(
        services(quiet).source_hooks, after_properties_changed=())))
    assert _queued_checks(default, _create(default.test_client(), account, "Wired")) == 1
    assert _queued_checks(quiet, _create(quiet.test_client(), account, "Not wired")) == 0


def test_an_app_wired_without_the_oauth_handshake_refuses_secret_id(make_app, account):
    app = make_app()
    wiring.install(app, replace(services(app), source_hooks=SourceHooks()))
    response = app.test_client().post("/v4/sources", headers=account.headers, json={
        "type": TYPE, "display_name": "No OAuth", "secret_id": "sec_whatever"})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "secret_id"


def test_a_worker_runs_the_handlers_of_its_job_table(app, client, account):
    source_id = _create(client, account, "Custom job")
    ran: list[ClaimedJob] = []

    def count_it(_app, job: ClaimedJob) -> dict:
        ran.append(job)
        return {"counted": True}

    with db.get_db(app).Session() as session, db.begin_write(session):
        enqueue(session, "count_it", source_id, {"n": 1})
    worker = Worker(app, JobTable(handlers={"count_it": count_it}), poll_interval=0.05)
    assert worker.run_once() is True
    assert [(job.kind, job.source_id, job.payload) for job in ran] == [("count_it", source_id, {"n": 1})]
    assert worker.run_once() is False  # the check job of the default wiring is not this worker's
