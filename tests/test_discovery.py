"""Connection check, discovery and field selection as background jobs, against the data API."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from app import db
from app.discovery.models import ConnectionCheck
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.wiring import services

from .servers import create_data_api, get_data_api, serve
from .test_service_basics import assert_error

TYPE = "test.discovery"
TOKEN = "discovery-token"


@pytest.fixture(scope="module")
def data_api():
    app = create_data_api()
    api = get_data_api(app)
    with serve(app) as url:
        api.base_url = url
        yield api


@pytest.fixture(autouse=True)
def _reset(data_api):
    data_api.clear_faults()
    data_api.settings.bearer_token = TOKEN


def create(client, account, data_api, **properties):
    body = {"type": TYPE, "display_name": "Discovery " + os.urandom(3).hex(),
            "properties": {"api_url": data_api.base_url, "api_token": TOKEN, **properties}}
    response = client.post("/v4/sources", json=body, headers=account.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run_jobs(app, until: Callable[[], bool] | None = None, deadline: float = 20.0) -> None:
    """Run queued jobs in this process until none is left (or ``until`` holds)."""
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        ran = worker.run_once()
        if until is not None and until():
            return
        if not ran and until is None:
            return
        if not ran:
            time.sleep(0.05)
    raise AssertionError("jobs did not finish before the deadline")


def step(client, account, source_id) -> str:
    return client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()["report_card"][
        "current_step_type"]


def test_from_creation_to_fully_configured(app, client, account, data_api):
    source = create(client, account, data_api)
    assert source["report_card"]["current_step_type"] == "discover_schema"
    assert client.get(f"/v4/sources/{source['id']}/last-connection-check",
                      headers=account.headers).get_json()["status"] == "queued"
    assert_error(client.put(f"/v4/sources/{source['id']}/streams/metadata", headers=account.headers,
                            json={"streams": [{"tap_stream_id": "contacts", "metadata": []}]}), 409, "not_ready")
    run_jobs(app)
    body = client.get(f"/v4/sources/{source['id']}", headers=account.headers).get_json()
    assert body["report_card"]["current_step_type"] == "field_selection"
    assert body["setup_state"] == "connected"
    check = client.get(f"/v4/sources/{source['id']}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "succeeded" and check["error"] is None and check["completed_at"]

    streams = client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json()
    assert [s["tap_stream_id"] for s in streams] == ["contacts", "deals", "secret_stuff", "gone"]
    assert not any(s["selected"] for s in streams)
    by_id = {s["tap_stream_id"]: s["stream_id"] for s in streams}
    forbidden = client.get(f"/v4/sources/{source['id']}/streams/{by_id['secret_stuff']}",
                           headers=account.headers).get_json()
    assert {e["metadata"]["inclusion"] for e in forbidden["metadata"]} == {"unsupported"}
    contacts = client.get(f"/v4/sources/{source['id']}/streams/{by_id['contacts']}",
                          headers=account.headers).get_json()
    stream_meta = next(e["metadata"] for e in contacts["metadata"] if e["breadcrumb"] == [])
    assert stream_meta["table-key-properties"] == ["id"]
    assert stream_meta["valid-replication-keys"] == ["updated_at"]
    fields = {tuple(e["breadcrumb"]): e["metadata"] for e in contacts["metadata"]}
    assert fields[("properties", "id")]["inclusion"] == "automatic"
    assert fields[("properties", "email")]["inclusion"] == "available"

    selected = client.put(f"/v4/sources/{source['id']}/streams/metadata", headers=account.headers, json={
        "streams": [{"tap_stream_id": "contacts", "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True, "replication-method": "INCREMENTAL",
                                            "replication-key": "updated_at"}},
            {"breadcrumb": ["properties", "email"], "metadata": {"selected": False}}]}]})
    assert selected.status_code == 200, selected.get_json()
    assert step(client, account, source["id"]) == "fully_configured"
    contacts = client.get(f"/v4/sources/{source['id']}/streams/{by_id['contacts']}",
                          headers=account.headers).get_json()
    fields = {tuple(e["breadcrumb"]): e["metadata"] for e in contacts["metadata"]}
    assert fields[()]["selected"] and fields[("properties", "id")]["selected"]
    assert fields[("properties", "name")]["selected"]  # selected by default
    assert not fields[("properties", "email")]["selected"]
    events = [e["type"] for e in client.get(f"/v4/sources/{source['id']}/events", headers=account.headers).get_json()]
    assert "check_succeeded" in events and events[-1] == "selection_updated"


BAD_SELECTIONS = [
    ("unknown stream", [{"tap_stream_id": "nope", "metadata": []}], "unknown stream"),
    ("unknown breadcrumb", [{"tap_stream_id": "contacts", "metadata": [
        {"breadcrumb": ["properties", "nope"], "metadata": {"selected": True}}]}], "unknown breadcrumb"),
    ("unsupported stream", [{"tap_stream_id": "secret_stuff", "metadata": [
        {"breadcrumb": [], "metadata": {"selected": True}}]}], "unsupported"),
    ("invalid replication key", [{"tap_stream_id": "contacts", "metadata": [
        {"breadcrumb": [], "metadata": {"selected": True, "replication-key": "email"}}]}], "valid replication keys"),
    ("forced replication method", [{"tap_stream_id": "deals", "metadata": [
        {"breadcrumb": [], "metadata": {"replication-method": "INCREMENTAL"}}]}], "forced to FULL_TABLE"),
    ("read-only metadata key", [{"tap_stream_id": "contacts", "metadata": [
        {"breadcrumb": [], "metadata": {"inclusion": "automatic"}}]}], "cannot be written"),
]


@pytest.mark.parametrize(("label", "streams", "reason"), BAD_SELECTIONS, ids=[b[0] for b in BAD_SELECTIONS])
def test_bad_selections_are_refused_and_change_nothing(app, client, account, data_api, label, streams, reason):
    source = create(client, account, data_api)
    run_jobs(app)
    before = client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json()
    error = assert_error(client.put(f"/v4/sources/{source['id']}/streams/metadata", headers=account.headers,
                                    json={"streams": streams}), 422, "invalid_selection")
    assert reason in error["message"]
    assert client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json() == before
    assert step(client, account, source["id"]) == "field_selection"


def test_rejected_credentials_make_the_source_broken_until_fixed(app, client, account, data_api):
    source = create(client, account, data_api, api_token="wrong-token")
    run_jobs(app)
    body = client.get(f"/v4/sources/{source['id']}", headers=account.headers).get_json()
    assert body["setup_state"] == "broken"
    assert body["report_card"]["current_step_type"] == "discover_schema"
    assert body["report_card"]["setup_error"]["type"] == "credentials_rejected"
    check = client.get(f"/v4/sources/{source['id']}/last-connection-check", headers=account.headers).get_json()
    assert check["status"] == "failed" and "refused the credentials" in check["error"]["message"]
    assert "wrong-token" not in str(body) + str(check)

    client.put(f"/v4/sources/{source['id']}", headers=account.headers, json={"properties": {"api_token": TOKEN}})
    run_jobs(app)
    body = client.get(f"/v4/sources/{source['id']}", headers=account.headers).get_json()
    assert body["setup_state"] == "connected" and "setup_error" not in body["report_card"]
    assert body["report_card"]["current_step_type"] == "field_selection"


def test_a_transient_failure_is_retried(app, client, account, data_api):
    data_api.fail_next_requests("server_error", count=1)
    source = create(client, account, data_api)
    worker = Worker(app, services(app).jobs)
    assert worker.run_once()
    with app.app_context():
        session = db.session()
        job = session.scalars(select(Job).where(Job.source_id == source["id"])).one()
        assert (job.status, job.attempts, job.error["type"]) == ("queued", 1, "source_unavailable")
        session.execute(update(Job).where(Job.id == job.id).values(run_after=job.created_at))
        session.commit()
    run_jobs(app)
    assert step(client, account, source["id"]) == "field_selection"
    with app.app_context():
        job = db.session().scalars(select(Job).where(Job.source_id == source["id"])).one()
        assert (job.status, job.attempts) == ("succeeded", 2)


def last_check(client, account, source_id) -> dict:
    response = client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers)
    assert response.status_code == 200
    return response.get_json()


def make_job_due(app, source_id: int) -> None:
    with app.app_context():
        session = db.session()
        session.execute(update(Job).where(Job.source_id == source_id, Job.status == "queued")
                        .values(run_after=Job.created_at))
        session.commit()


def test_a_retry_keeps_the_last_attempts_error_until_an_attempt_succeeds(app, client, account, data_api):
    """During an outage the check shows the last attempt's error and when it happened, also while
    the next attempt is queued or running (issue 13: a retry used to show running with error null)."""
    data_api.fail_next_requests("server_error", count=1)
    source = create(client, account, data_api)
    assert Worker(app, services(app).jobs).run_once()
    failed_once = last_check(client, account, source["id"])
    assert failed_once["status"] == "queued" and failed_once["attempts"] == 1
    assert failed_once["error"]["type"] == "source_unavailable" and "500" in failed_once["error"]["message"]
    assert failed_once["error_at"] >= failed_once["started_at"]

    # The second attempt is slow: while it runs, the first one's error is still there to read.
    data_api.fail_next_requests("slow", count=1, delay=1.5)
    make_job_due(app, source["id"])
    retrying = threading.Thread(target=Worker(app, services(app).jobs).run_once)
    retrying.start()
    deadline = time.monotonic() + 10
    while last_check(client, account, source["id"])["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    running = last_check(client, account, source["id"])
    retrying.join(30)
    assert running["status"] == "running" and running["attempts"] == 2
    assert (running["error"], running["error_at"]) == (failed_once["error"], failed_once["error_at"])
    assert running["started_at"] > failed_once["started_at"]

    succeeded = last_check(client, account, source["id"])
    assert succeeded["status"] == "succeeded" and succeeded["attempts"] == 2
    assert (succeeded["error"], succeeded["error_at"]) == (None, None)


def test_a_check_of_a_new_configuration_does_not_show_the_old_ones_error(app, client, account, data_api):
    data_api.fail_next_requests("server_error", count=1)
    source = create(client, account, data_api)
    assert Worker(app, services(app).jobs).run_once()
    assert last_check(client, account, source["id"])["error"]["type"] == "source_unavailable"
    client.put(f"/v4/sources/{source['id']}", headers=account.headers, json={"properties": {"region": "eu"}})
    fresh = last_check(client, account, source["id"])
    assert (fresh["status"], fresh["attempts"], fresh["error"], fresh["error_at"]) == ("queued", 0, None, None)


def test_changing_a_property_after_discovery_checks_again_and_keeps_selections(app, client, account, data_api):
    source = create(client, account, data_api)
    run_jobs(app)
    client.put(f"/v4/sources/{source['id']}/streams/metadata", headers=account.headers, json={
        "streams": [{"tap_stream_id": "contacts", "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}]}]})
    assert step(client, account, source["id"]) == "fully_configured"
    client.put(f"/v4/sources/{source['id']}", headers=account.headers, json={"properties": {"region": "eu"}})
    assert step(client, account, source["id"]) == "discover_schema"
    run_jobs(app)
    assert step(client, account, source["id"]) == "fully_configured"  # the selection survived
    streams = client.get(f"/v4/sources/{source['id']}/streams", headers=account.headers).get_json()
    assert [s["tap_stream_id"] for s in streams if s["selected"]] == ["contacts"]


def test_discover_on_demand_queues_at_most_one_job(app, client, account, data_api):
    source = create(client, account, data_api)
    for _ in range(3):
        response = client.post(f"/v4/sources/{source['id']}/discover", headers=account.headers)
        assert response.status_code == 202 and response.get_json()["status"] == "queued"
    with app.app_context():
        queued = db.session().scalar(select(func.count()).select_from(Job).where(
            Job.source_id == source["id"], Job.status == "queued"))
    assert queued == 1
    assert_error(client.post("/v4/sources/999999/discover", headers=account.headers), 404, "not_found")


def test_a_source_advances_by_itself_with_the_embedded_worker(make_app, account, data_api):
    """What `make run` does: the API process runs a worker; the client only polls."""
    app = make_app(EMBEDDED_WORKER=True)
    with serve(app) as base_url:
        headers = account.headers
        created = requests.post(f"{base_url}/v4/sources", headers=headers, timeout=10, json={
            "type": TYPE, "display_name": "Embedded", "properties": {"api_url": data_api.base_url,
                                                                      "api_token": TOKEN}}).json()
        seen = [created["report_card"]["current_step_type"]]
        started = time.monotonic()
        while seen[-1] != "field_selection" and time.monotonic() - started < 20:
            time.sleep(0.1)
            current = requests.get(f"{base_url}/v4/sources/{created['id']}", headers=headers,
                                   timeout=10).json()["report_card"]["current_step_type"]
            if current != seen[-1]:
                seen.append(current)
        elapsed = time.monotonic() - started
        app.extensions["connect.worker"].stop()
    print(f"\nlast credential → field_selection with the embedded worker: {elapsed:.2f} s")
    assert seen == ["discover_schema", "field_selection"]


def _worker_process(database_url: str, report_cards: str, keys: str, seconds: float) -> None:
    from app import create_app

    app = create_app({"DATABASE_URL": database_url, "REPORT_CARDS": report_cards, "ENCRYPTION_KEYS": keys,
                      "OPERATOR_TOKEN": "unused", "ALLOWED_SOURCE_NETWORKS": "127.0.0.0/8,::1/128"})
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    stop_at = time.monotonic() + seconds
    idle_since = None
    while time.monotonic() < stop_at:
        if worker.run_once():
            idle_since = None
        else:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.5:
                return
            time.sleep(0.05)


@pytest.mark.postgres
def test_two_worker_processes_run_each_job_once(app, client, account, data_api):
    if app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("several worker processes share one database on PostgreSQL (SQLite: one worker)")
    sources = [create(client, account, data_api)["id"] for _ in range(20)]
    checks_before = data_api.requests["/bearer/check"]
    context = multiprocessing.get_context("spawn")
    args = (app.config["DATABASE_URL"], app.config["REPORT_CARDS"], app.config["ENCRYPTION_KEYS"], 60.0)
    started = time.monotonic()
    processes = [context.Process(target=_worker_process, args=args) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
    with app.app_context():
        jobs = db.session().scalars(select(Job).where(Job.source_id.in_(sources))).all()
        finished = max(j.finished_at for j in jobs)
        first_start = min(j.started_at for j in jobs)
        workers = {j.worker_id.rsplit(":", 1)[0] for j in jobs}
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 1)] * 20
    assert data_api.requests["/bearer/check"] - checks_before == 20
    rate = len(jobs) / max((finished - first_start).total_seconds(), 1e-6)
    print(f"\n2 worker processes ({len(workers)} took jobs): 20 jobs, each ran once; "
          f"{rate:.1f} jobs/s (wall {time.monotonic() - started:.1f} s with start-up)")
    assert all(step(client, account, s) == "field_selection" for s in sources)


@pytest.mark.slow
def test_a_killed_workers_job_completes_once_after_its_lease(app, client, account, data_api, tmp_path):
    source = create(client, account, data_api)
    data_api.settings.slow_seconds = 30
    data_api.fail_next_requests("slow", count=1, path_prefix="/bearer/check")
    env = {**os.environ, "CONNECT_DATABASE_URL": app.config["DATABASE_URL"],
           "CONNECT_REPORT_CARDS": app.config["REPORT_CARDS"], "CONNECT_ENCRYPTION_KEYS": app.config["ENCRYPTION_KEYS"],
           "CONNECT_OPERATOR_TOKEN": "unused", "CONNECT_JOB_LEASE_SECONDS": "2", "FLASK_APP": "wsgi",
           "CONNECT_ALLOWED_SOURCE_NETWORKS": app.config["ALLOWED_SOURCE_NETWORKS"]}
    root = Path(__file__).resolve().parent.parent
    worker = subprocess.Popen([sys.executable, "-m", "flask", "connect", "worker", "--threads", "1",
                               "--poll-interval", "0.1"], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with app.app_context():
                job = db.session().scalars(select(Job).where(Job.source_id == source["id"])).one()
                if job.status == "running":
                    break
            time.sleep(0.1)
        assert job.status == "running"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    data_api.clear_faults()
    time.sleep(2.2)  # the dead worker's lease (2 s) runs out
    run_jobs(app, until=lambda: step(client, account, source["id"]) == "field_selection")
    with app.app_context():
        session = db.session()
        job = session.scalars(select(Job).where(Job.source_id == source["id"])).one()
        checks = session.scalars(select(ConnectionCheck).where(ConnectionCheck.source_id == source["id"])).all()
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert [c.status for c in checks] == ["succeeded"]
