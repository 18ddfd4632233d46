"""Concurrency on PostgreSQL, over real HTTP, from several client processes into several server
processes: 100 writers of one source lose no update, If-Match lets exactly one stale writer win
(and a retrying read-modify-write loses nothing), one Idempotency-Key creates one source, and one
OAuth ``secret_id`` is used exactly once.

The service runs under gunicorn (3 worker processes) on 127.0.0.1, started by this module; the
callers are threads in 4 ``spawn``-ed processes, released together by one barrier. (The in-process
version with 40 threads and one werkzeug server is tests/test_sources.py's
``test_concurrent_updates_of_different_properties_all_survive``; it runs on SQLite too.)

SQLite serialises writers with ``BEGIN IMMEDIATE`` in one process at a time; several server
processes against one SQLite file are not a deployment this service supports, so this module runs
only when ``CONNECT_DATABASE_URL`` points at PostgreSQL.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from app import db
from app.crypto import get_keyring
from app.models import Source, SourceCredential
from app.sources.credentials import decrypted_properties

from .conftest import OPERATOR_TOKEN, TESTS, AccountHandle
from .http_callers import BARRIER_TIMEOUT, REQUEST_TIMEOUT, run_callers
from .live_service import ROOT, free_port, service_environment, stop, wait_until_healthy
from .test_oauth import TYPE as OAUTH_TYPE
from .test_oauth import (  # noqa: F401  (fixtures)
    connect,
    connect_app,
    operator_app,
    provider,
    provider_app,
    provider_port,
    secret_id_of,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("CONNECT_DATABASE_URL", "").startswith("postgresql"),
                       reason="several server processes share one database on PostgreSQL only"),
]

PROCESSES = 4
THREADS_PER_PROCESS = 25
WRITERS = PROCESSES * THREADS_PER_PROCESS
SERVER_WORKERS = 3
SERVER_THREADS = 6
HUNDRED = "test.hundred-fields"
TEST_SECRET = "s3cr3t-" + os.urandom(6).hex()


# -- the server -----------------------------------------------------------------------------------


def hundred_fields_card(folder: Path) -> Path:
    """test.many-fields with 100 optional ``field_NNN`` properties instead of 40."""
    card = json.loads((TESTS / "report_cards" / "test.many-fields.json").read_text())
    card["type"], card["display_name"] = HUNDRED, "Test: a hundred fields"
    card["details"]["protocol"] = HUNDRED
    form = card["steps"][0]
    template = next(p for p in form["properties"] if p["name"] == "field_01")
    form["properties"] = [p for p in form["properties"] if not p["name"].startswith("field_")] + [
        {**template, "name": f"field_{i:03d}"} for i in range(1, WRITERS + 1)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{HUNDRED}.json").write_text(json.dumps(card, indent=1))
    return folder


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="module")
def server(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    cards = hundred_fields_card(tmp_path_factory.mktemp("cards"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(SERVER_WORKERS),
         "--threads", str(SERVER_THREADS), "--timeout", "120", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=service_environment(migrated_database, cards))
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
        yield LiveServer(base_url, process)
    finally:
        stop(process)


@pytest.fixture()
def headers(server: LiveServer) -> dict[str, str]:
    """A fresh account on the live server."""
    response = requests.post(server.url("/v4/accounts"), json={"name": "Concurrency"}, timeout=30,
                             headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# -- callers in several processes -----------------------------------------------------------------


def call_from_processes(base_url: str, jobs: list[dict[str, Any]], processes: int = PROCESSES) -> list[dict]:
    """Run ``jobs`` at once from ``processes`` spawned processes; the outcomes, by job index."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    for index, job in enumerate(jobs):
        job["index"] = index
    shares = [jobs[i::processes] for i in range(processes)]
    started = [context.Process(target=run_callers, args=(base_url, share, barrier, results)) for share in shares]
    for process in started:
        process.start()
    outcomes: list[dict] = []
    try:
        for _ in jobs:
            outcomes.append(results.get(timeout=BARRIER_TIMEOUT + REQUEST_TIMEOUT * 2))
    except queue.Empty:
        raise AssertionError(f"only {len(outcomes)} of {len(jobs)} callers answered") from None
    finally:
        for process in started:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [o["error"] for o in outcomes if "error" in o] == []
    assert len({o["pid"] for o in outcomes}) == processes
    return sorted(outcomes, key=lambda o: o["index"])


def get(server: LiveServer, path: str, headers: dict[str, str]) -> requests.Response:
    response = requests.get(server.url(path), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def new_source(server: LiveServer, headers: dict[str, str], name: str = "hundred") -> requests.Response:
    response = requests.post(server.url("/v4/sources"), headers=headers, timeout=30,
                             json={"type": HUNDRED, "display_name": name})
    assert response.status_code == 201, response.text
    return response


def version_of(etag: str) -> int:
    return int(etag.strip('"').split(".")[1])


# -- PUT: no lost update --------------------------------------------------------------------------


def test_a_hundred_concurrent_writers_in_four_processes_lose_no_update(server, headers):
    created = new_source(server, headers)
    source_id = created.json()["id"]
    path = f"/v4/sources/{source_id}"
    jobs = [{"kind": "one_request", "method": "PUT", "path": path, "headers": headers,
             "json": {"properties": {f"field_{i + 1:03d}": f"value-{i}"}}} for i in range(WRITERS)]
    started = time.monotonic()
    outcomes = call_from_processes(server.base_url, jobs)
    elapsed = time.monotonic() - started

    final = get(server, path, headers)
    lost = [i for i in range(WRITERS) if final.json()["properties"].get(f"field_{i + 1:03d}") != f"value-{i}"]
    events = get(server, f"{path}/events", headers).json()
    print(f"\n{WRITERS} concurrent writers of one source ({PROCESSES} client processes x "
          f"{THREADS_PER_PROCESS} threads, gunicorn {SERVER_WORKERS} workers x {SERVER_THREADS} threads, "
          f"PostgreSQL): lost updates {len(lost)}, statuses {dict(Counter(o['status'] for o in outcomes))}, "
          f"{elapsed:.1f} s")
    assert [o["status"] for o in outcomes] == [200] * WRITERS
    assert lost == []
    # Every write bumped the version once and left one event: none overwrote another's row state.
    assert version_of(final.headers["ETag"]) == version_of(created.headers["ETag"]) + WRITERS
    assert sorted(version_of(o["headers"]["ETag"]) for o in outcomes) == list(range(2, WRITERS + 2))
    assert sum(e["type"] == "properties_updated" for e in events) == WRITERS


def test_a_hundred_concurrent_writers_of_one_credential_all_succeed_and_the_last_one_stays(
        server, headers, app):
    """Credentials live in their own table: concurrent writers of the same one must neither trip
    over each other's row (a duplicate insert would be a 500) nor leave an older value behind."""
    source_id = new_source(server, headers).json()["id"]
    path = f"/v4/sources/{source_id}"
    jobs = [{"kind": "one_request", "method": "PUT", "path": path, "headers": headers,
             "json": {"properties": {"api_token": f"token-{i:03d}-{TEST_SECRET}"}}} for i in range(WRITERS)]
    outcomes = call_from_processes(server.base_url, jobs)

    statuses = Counter(o["status"] for o in outcomes)
    print(f"\n{WRITERS} concurrent writers of one credential in {PROCESSES} processes: statuses {dict(statuses)}",
          [o["body"] for o in outcomes if o["status"] != 200][:3])
    assert statuses == {200: WRITERS}
    last = max(outcomes, key=lambda o: version_of(o["headers"]["ETag"]))["index"]
    with app.app_context():
        session = db.session()
        with session.begin():
            stored = decrypted_properties(get_keyring(), session.get(Source, source_id))
            credentials = session.scalars(select(SourceCredential).where(SourceCredential.source_id == source_id)).all()
    assert stored["api_token"] == f"token-{last:03d}-{TEST_SECRET}"
    assert [c.name for c in credentials] == ["api_token"]
    assert all(TEST_SECRET not in json.dumps(o["body"]) for o in outcomes)


def test_if_match_lets_exactly_one_of_a_hundred_stale_writers_win(server, headers):
    created = new_source(server, headers)
    source_id, etag = created.json()["id"], created.headers["ETag"]
    path = f"/v4/sources/{source_id}"
    jobs = [{"kind": "one_request", "method": "PUT", "path": path, "headers": {**headers, "If-Match": etag},
             "json": {"properties": {f"field_{i + 1:03d}": f"value-{i}"}}} for i in range(WRITERS)]
    outcomes = call_from_processes(server.base_url, jobs)

    winners = [o for o in outcomes if o["status"] == 200]
    losers = [o for o in outcomes if o["status"] != 200]
    print(f"\n{WRITERS} writers with the same If-Match in {PROCESSES} processes: {len(winners)} won, "
          f"{len(losers)} got {dict(Counter(o['status'] for o in losers))}")
    assert len(winners) == 1
    assert {(o["status"], o["body"]["error"]["type"]) for o in losers} == {(409, "stale_version")}
    winner = winners[0]["index"]
    final = get(server, path, headers)
    assert final.json()["properties"] == {**created.json()["properties"],
                                          f"field_{winner + 1:03d}": f"value-{winner}"}
    assert version_of(final.headers["ETag"]) == version_of(etag) + 1
    events = get(server, f"{path}/events", headers).json()
    assert [e["type"] for e in events] == ["created", "properties_updated"]


def test_read_modify_write_with_if_match_and_retries_loses_no_increment(server, headers):
    """Each caller adds 1 to one shared property by reading it and writing it back with If-Match,
    retrying after a 409: the final value counts every caller. (Without If-Match the same loop
    would lose increments: two callers read the same value and both write value + 1.)"""
    callers = PROCESSES * 5
    source_id = new_source(server, headers).json()["id"]
    path = f"/v4/sources/{source_id}"
    outcomes = call_from_processes(server.base_url,
                                   [{"kind": "increment", "path": path, "headers": headers} for _ in range(callers)])
    final = get(server, path, headers).json()
    conflicts = sum(o["attempts"] - 1 for o in outcomes)
    print(f"\n{callers} read-modify-write callers in {PROCESSES} processes: final count "
          f"{final['properties']['field_001']}, 409s retried {conflicts}")
    assert [o["status"] for o in outcomes] == [200] * callers
    assert final["properties"]["field_001"] == str(callers)
    assert sorted(int(o["body"]["properties"]["field_001"]) for o in outcomes) == list(range(1, callers + 1))


# -- POST with one Idempotency-Key ----------------------------------------------------------------


def test_one_idempotency_key_from_a_hundred_callers_creates_one_source(server, headers):
    body = {"type": HUNDRED, "display_name": "Idempotent", "properties": {"field_001": "x"}}
    jobs = [{"kind": "one_request", "method": "POST", "path": "/v4/sources", "json": body,
             "headers": {**headers, "Idempotency-Key": "same-key"}} for _ in range(WRITERS)]
    outcomes = call_from_processes(server.base_url, jobs)

    statuses = Counter(o["status"] for o in outcomes)
    ids = {o["body"]["id"] for o in outcomes if o["status"] == 201}
    replayed = sum(o["headers"].get("Idempotent-Replayed") == "true" for o in outcomes)
    listed = get(server, "/v4/sources", headers).json()["data"]
    print(f"\n{WRITERS} POSTs with one Idempotency-Key in {PROCESSES} processes: statuses {dict(statuses)}, "
          f"source ids {sorted(ids)}, replayed {replayed}, sources listed {len(listed)}")
    assert statuses == {201: WRITERS}
    assert len(ids) == 1
    assert replayed == WRITERS - 1
    assert [s["id"] for s in listed] == list(ids)
    events = get(server, f"/v4/sources/{listed[0]['id']}/events", headers).json()
    assert [e["type"] for e in events] == ["created", "properties_updated"]


# -- one OAuth secret_id --------------------------------------------------------------------------


@pytest.fixture()
def oauth_account(server, connect, operator):
    """An account made through the in-process app (whose handshake the test drives) and usable on
    the live server, which shares its database."""
    response = connect.post("/v4/accounts", json={"name": "OAuth"}, headers=operator)
    assert response.status_code == 201
    return AccountHandle(response.get_json()["id"], response.get_json()["token"])


def test_one_secret_id_from_a_hundred_callers_is_used_once(server, connect, oauth_account, operator_app,
                                                          provider_port):
    secret_id = secret_id_of(connect, oauth_account, provider_port)
    headers = oauth_account.headers
    # Half create a source with it, half update an existing source of the type with it.
    targets = []
    for i in range(WRITERS // 2):
        response = requests.post(server.url("/v4/sources"), headers=headers, timeout=30, json={
            "type": OAUTH_TYPE, "display_name": f"Existing {i}", "properties": {"provider_port": provider_port}})
        assert response.status_code == 201, response.text
        targets.append(response.json()["id"])
    jobs = [{"kind": "one_request", "method": "POST", "path": "/v4/sources", "headers": headers,
             "json": {"type": OAUTH_TYPE, "display_name": f"New {i}", "secret_id": secret_id,
                      "properties": {"provider_port": provider_port}}} for i in range(WRITERS // 2)]
    jobs += [{"kind": "one_request", "method": "PUT", "path": f"/v4/sources/{target}", "headers": headers,
              "json": {"secret_id": secret_id}} for target in targets]
    outcomes = call_from_processes(server.base_url, jobs)

    succeeded = [o for o in outcomes if o["status"] in (200, 201)]
    failed = [o for o in outcomes if o["status"] not in (200, 201)]
    listed = get(server, "/v4/sources?limit=100", headers).json()["data"]
    with_tokens = []
    for source in listed:
        oauth_step = next(s for s in source["report_card"]["steps"] if s["type"] == "oauth")
        if any(p["name"] == "access_token" and p["provided"] for p in oauth_step["properties"]):
            with_tokens.append(source["id"])
    completed = [sid for sid in (s["id"] for s in listed)
                 if "oauth_completed" in {e["type"] for e in get(server, f"/v4/sources/{sid}/events", headers).json()}]
    print(f"\n{len(jobs)} concurrent uses of one secret_id ({len(jobs) // 2} POST, {len(jobs) // 2} PUT) in "
          f"{PROCESSES} processes: {len(succeeded)} succeeded, failures "
          f"{dict(Counter((o['status'], o['body']['error']['type']) for o in failed))}")
    assert len(succeeded) == 1
    assert {(o["status"], o["body"]["error"]["type"]) for o in failed} == {(409, "secret_id_used")}
    assert len(listed) == len(targets) + (1 if succeeded[0]["status"] == 201 else 0)
    assert with_tokens == completed == [succeeded[0]["body"]["id"]]
