"""The provider fault catalogue: every fault the test servers can inject, into every path that meets
it, in one table, with the same three questions asked of each case.

Paths
    ``callback``   the code exchange of an OAuth reconnect (``GET /v4/oauth/callback``) for a source
                   that already holds tokens;
    ``refresh``    the token refresh a connection check job needs (app/connectors/tokens.py);
    ``check``      the data API answering the check request of that job (app/discovery/jobs.py);
    ``discovery``  the data API answering a stream probe of that job.

Questions
    1. No 5xx from the service: every response it gave during the case is recorded (the secrets scan
       in tests/conftest.py keeps them) and none is 5xx.
    2. A classified outcome: ``recovered`` (retried within the call, the check succeeds),
       ``retriable`` (the check stays queued with a transient error, the job is rescheduled no sooner
       than ``Retry-After``, the source is not broken; once the fault clears the re-run succeeds),
       ``permanent`` (the source is broken and says why: the user must reconnect), or for the callback
       the integrator's redirect ``error`` code.
    3. No stored token lost or overwritten by an older one: the source's refresh token and cached access
       token are read before and after (and after recovery); each must be the same or one the provider
       issued later. The cases count the faults the servers served and the tokens lost (0).

Finer behaviour of each path (retry counts, jitter, lock sharing) is in tests/test_token_store.py,
tests/test_oauth.py and tests/test_discovery.py; this file is the cross-cutting table.

The lost rotation (``lost_response``/``committed_then_slow`` with rotation on): the provider rotates the
refresh token, then the answer is lost. The service keeps the refresh token it has (the newest it can
know), sends it once more, and when the provider answers ``invalid_grant`` marks the source broken with
``after_lost_answer`` in its ``setup_error``, asking for a reconnect — see the module docstring of
app/connectors/tokens.py for why that is the best available.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app import create_app, db
from app.connectors.models import ACCESS_TOKEN, SourceToken
from app.crypto import Sealed, get_keyring
from app.jobs.models import Job
from app.jobs.worker import Worker
from app.oauth.handshake import CALLBACK_PATH
from app.wiring import services

from .conftest import SCAN, base_config, report_figure
from .connectors_support import (  # noqa: F401  (fixtures)
    POST_CLIENT,
    Servers,
    _default_server_behaviour,
    call_api,
    create_source,
    servers,
    stored_properties,
    token_row,
)

PUBLIC_URL = "https://connect.example"
REDIRECT = "https://app.example/connected"
HTTP_TIMEOUT = 1.0  # the service's timeout here (ample for a healthy local server under load)
# A "slow" provider answers (and, with rotation on, rotates) only after this: long enough that the
# service's retry, sent within two seconds, is answered first and the late rotation finds its refresh
# token already replaced. "committed_then_slow" rotates at once and then holds its answer this long.
SLOW = {"slow": 5.0, "committed_then_slow": 2.5}
LONG_RETRY_AFTER = 120  # longer than any in-call wait: the job itself must be rescheduled
REFRESH_TYPE = "test.oauth2-refresh"
HANDSHAKE_TYPE = "test.oauth-provider"
HANDSHAKE_CLIENT = "faults-handshake"


@dataclass(frozen=True)
class Fault:
    path: str
    mode: str
    expected: str  # recovered | retriable | permanent | the callback's error code
    count: int | None = 1  # None: until cleared
    rotate: bool = False
    retry_after: int | None = None
    lost_rotation: bool = False

    @property
    def id(self) -> str:
        extra = "-rotating" if self.rotate else ""
        extra += f"-retry-after-{self.retry_after}" if self.retry_after else ""
        extra += "-persistent" if self.count is None else ""
        return f"{self.path}-{self.mode}{extra}"


CATALOGUE = [
    # The code exchange: a code is used once, so nothing is retried; the integrator is told which.
    Fault("callback", "invalid_grant", "invalid_grant"),
    Fault("callback", "server_error", "server_error"),
    Fault("callback", "rate_limited", "temporarily_unavailable", retry_after=LONG_RETRY_AFTER),
    Fault("callback", "slow", "temporarily_unavailable"),
    Fault("callback", "html", "server_error"),
    Fault("callback", "truncated_json", "server_error"),
    Fault("callback", "lost_response", "temporarily_unavailable", rotate=True),
    Fault("callback", "committed_then_slow", "temporarily_unavailable", rotate=True),
    # The refresh behind a check.
    Fault("refresh", "invalid_grant", "permanent"),
    Fault("refresh", "server_error", "recovered"),
    Fault("refresh", "server_error", "retriable", count=None),
    Fault("refresh", "rate_limited", "retriable", retry_after=LONG_RETRY_AFTER),
    Fault("refresh", "slow", "recovered", rotate=True),
    Fault("refresh", "html", "recovered"),
    Fault("refresh", "truncated_json", "recovered", rotate=True),
    Fault("refresh", "no_access_token", "recovered", rotate=True),
    Fault("refresh", "lost_response", "recovered"),
    Fault("refresh", "committed_then_slow", "recovered"),
    Fault("refresh", "lost_response", "permanent", rotate=True, lost_rotation=True),
    Fault("refresh", "committed_then_slow", "permanent", rotate=True, lost_rotation=True),
    # The data API answering the check, then the stream probes.
    *[Fault(path, mode, "retriable", retry_after=LONG_RETRY_AFTER if mode == "rate_limited" else None)
      for path in ("check", "discovery")
      for mode in ("server_error", "rate_limited", "slow", "html", "truncated_json")],
]


# --- the ledger -------------------------------------------------------------------------------------

@dataclass
class Ledger:
    cases: int = 0
    faults_injected: int = 0
    tokens_compared: int = 0
    tokens_lost: int = 0


LEDGER = Ledger()


@pytest.fixture(scope="module", autouse=True)
def _report_ledger() -> Iterator[None]:
    yield
    report_figure(f"provider faults: {LEDGER.cases} cases, {LEDGER.faults_injected} faults injected, "
                  f"{LEDGER.tokens_compared} stored tokens compared, tokens lost: {LEDGER.tokens_lost}")


def faults_served(servers: Servers) -> int:
    return sum(servers.provider.faults_served.values()) + sum(servers.data_api.faults_served.values())


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faulty_app(migrated_database: str) -> Iterator[Flask]:
    """The service with a short provider timeout and a public URL for the OAuth callback."""
    application = create_app(base_config(migrated_database, PUBLIC_URL=PUBLIC_URL, HTTP_TIMEOUT=HTTP_TIMEOUT))
    yield application
    db.get_db(application).dispose()


@pytest.fixture()
def connect(faulty_app: Flask) -> FlaskClient:
    return faulty_app.test_client()


# --- stored tokens ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    refresh_token: str | None
    access_token: str | None


def stored_tokens(app: Flask, source_id: int) -> Stored:
    """The source's refresh token (a property) and its cached access token (the token row, or the
    property a handshake stored)."""
    properties = stored_properties(app, source_id)
    access_token = properties.get("access_token")
    row = token_row(app, source_id, ACCESS_TOKEN)
    if row is not None and row.holds_token:
        access_token = get_keyring(app).open(Sealed(row.key_id, row.ciphertext), row.associated_data)
    return Stored(properties.get("refresh_token"), access_token)


def lost_tokens(before: Stored, after: Stored, servers: Servers, newest: Stored | None = None) -> list[str]:
    """How ``after`` lost or went back on a token ``before`` held, by the provider's issue order; with
    ``newest``, also how it missed a token the service was given (a rotated refresh token dropped)."""
    problems = []
    if newest is not None:
        LEDGER.tokens_compared += 2
        problems += [f"the newest {kind} was not kept" for kind in ("refresh_token", "access_token")
                     if getattr(after, kind) != getattr(newest, kind)]
    for kind, issued in (("refresh_token", servers.provider.refresh_tokens_issued),
                         ("access_token", servers.provider.access_tokens_issued)):
        old, new = getattr(before, kind), getattr(after, kind)
        if old is None:
            continue
        LEDGER.tokens_compared += 1
        if new is None:
            problems.append(f"{kind} lost")
        elif new != old and (new not in issued or issued.index(new) < issued.index(old)):
            problems.append(f"{kind} replaced by an older or unknown one")
    LEDGER.tokens_lost += len(problems)
    return problems


# --- jobs -------------------------------------------------------------------------------------------

def the_job(app: Flask, source_id: int) -> Job:
    with db.get_db(app).Session() as session:
        return session.scalars(select(Job).where(Job.source_id == source_id).order_by(Job.id.desc())).first()


def let_time_pass(app: Flask, source_id: int) -> None:
    """The job's and the token store's waits are over, as if Retry-After had elapsed."""
    now = datetime.now(UTC)
    with db.get_db(app).Session() as session, session.begin():
        session.execute(update(Job).where(Job.source_id == source_id, Job.status == "queued").values(run_after=now))
        session.execute(update(SourceToken).where(SourceToken.source_id == source_id).values(next_attempt_at=now))


def source_view(client: FlaskClient, account: Any, source_id: int) -> tuple[dict, dict]:
    body = client.get(f"/v4/sources/{source_id}", headers=account.headers)
    check = client.get(f"/v4/sources/{source_id}/last-connection-check", headers=account.headers)
    assert body.status_code == 200 and check.status_code == 200, (body.get_json(), check.get_json())
    return body.get_json(), check.get_json()


# --- the OAuth handshake ----------------------------------------------------------------------------

def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def handshake(connect: FlaskClient, account: Any, servers: Servers, source_id: int | None = None) -> Any:
    """initiate → the provider's consent (over HTTP) → the service's callback; returns its response."""
    port = servers.provider_url.rsplit(":", 1)[1]
    body: dict[str, Any] = {"source_type": HANDSHAKE_TYPE, "redirect_url": REDIRECT,
                            "oauth_input_configuration": {"provider_port": port}}
    if source_id is not None:
        body["source_id"] = source_id
    started = connect.post("/v4/oauth/initiate", headers=account.headers, json=body)
    assert started.status_code == 200, started.get_json()
    consent = requests.get(started.get_json()["consent_url"], allow_redirects=False, timeout=5)
    assert consent.status_code == 302, consent.text
    return consent.headers["Location"]


def handshake_source(connect: FlaskClient, account: Any, operator: dict, servers: Servers) -> int:
    """A source made by a full handshake, holding the provider's tokens."""
    client_secret = servers.client_secret
    servers.provider.add_client(HANDSHAKE_CLIENT, client_secret, redirect_uris=[PUBLIC_URL + CALLBACK_PATH])
    configuration = {"client_id": HANDSHAKE_CLIENT, "client_secret": client_secret}
    answer = connect.put("/v4/oauth/credentials", headers=operator,
                         json={"source_type": HANDSHAKE_TYPE, "configuration": configuration})
    assert answer.status_code == 200, answer.get_json()
    location = handshake(connect, account, servers)
    landing = connect.get(location.removeprefix(PUBLIC_URL))
    assert landing.status_code == 302
    secret_id = query(landing.headers["Location"])["secret_id"]
    port = servers.provider_url.rsplit(":", 1)[1]
    created = connect.post("/v4/sources", headers=account.headers, json={
        "type": HANDSHAKE_TYPE, "display_name": "Faults", "secret_id": secret_id,
        "properties": {"provider_port": port}})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


# --- the catalogue ----------------------------------------------------------------------------------

def inject(servers: Servers, fault: Fault) -> None:
    if fault.retry_after:
        servers.provider.settings.retry_after_seconds = fault.retry_after
        servers.data_api.settings.retry_after_seconds = fault.retry_after
    servers.provider.settings.rotate_refresh_tokens = fault.rotate
    delay = SLOW.get(fault.mode)
    if fault.path in ("callback", "refresh"):
        servers.provider.fail_next_token_requests(fault.mode, fault.count, delay=delay)
    else:
        prefix = "/oauth/check" if fault.path == "check" else "/oauth/streams/"
        servers.data_api.fail_next_requests(fault.mode, fault.count, delay=delay, path_prefix=prefix)


def run_callback_case(connect, account, operator, servers: Servers, fault: Fault) -> tuple[Stored, int]:
    source_id = handshake_source(connect, account, operator, servers)
    before = stored_tokens(connect.application, source_id)
    location = handshake(connect, account, servers, source_id)
    inject(servers, fault)
    landing = connect.get(location.removeprefix(PUBLIC_URL))
    assert landing.status_code == 302, landing.get_data(as_text=True)
    params = query(landing.headers["Location"])
    assert params["error"] == fault.expected and "source_id" not in params, params
    assert servers.provider.token_requests_by_grant["authorization_code"] >= 2
    # The failed reconnect left the source as it was, and says so in its events.
    body, _ = source_view(connect, account, source_id)
    assert body["setup_state"] != "broken"
    events = connect.get(f"/v4/sources/{source_id}/events", headers=account.headers).get_json()
    assert {"type": "oauth_failed", "detail": {"error": fault.expected}} in [
        {"type": e["type"], "detail": e["detail"]} for e in events]
    return before, source_id


def run_job_case(connect, account, servers: Servers, fault: Fault) -> tuple[Stored, int]:
    app = connect.application
    worker = Worker(app, services(app).jobs, poll_interval=0.05)
    source_id = create_source(connect, account, REFRESH_TYPE, servers.oauth_properties(POST_CLIENT))
    if fault.path != "refresh":  # a cached access token, so only the data API misbehaves
        assert call_api(app, source_id).status_code == 200
    before = stored_tokens(app, source_id)
    token_requests = servers.provider.token_requests
    inject(servers, fault)
    started = datetime.now(UTC)
    assert worker.run_once()
    body, check = source_view(connect, account, source_id)
    job = the_job(app, source_id)

    if fault.expected == "recovered":
        assert (check["status"], body["setup_state"]) == ("succeeded", "connected"), (check, body)
    elif fault.expected == "retriable":
        assert check["status"] == "queued" and body["setup_state"] != "broken", (check, body)
        assert check["error"]["type"] in ("source_unavailable", "unexpected_response"), check
        assert job.status == "queued" and job.attempts == 1
        if fault.retry_after:  # the job is not run again before the provider said
            assert job.run_after - started >= timedelta(seconds=fault.retry_after - 1), job.run_after - started
            assert not worker.run_once()
            if fault.path == "refresh":
                assert servers.provider.token_requests - token_requests == 1  # waited, did not hammer
        servers.reset()
        let_time_pass(app, source_id)
        assert worker.run_once()
        body, check = source_view(connect, account, source_id)
        assert (check["status"], body["setup_state"]) == ("succeeded", "connected"), (check, body)
    else:
        assert fault.expected == "permanent"
        assert check["status"] == "failed" and body["setup_state"] == "broken", (check, body)
        error = body["report_card"]["setup_error"]
        assert (error["type"], error["error"]) == ("token_refresh_failed", "invalid_grant"), error
        assert "Reconnect" in error["message"]
        assert bool(error.get("after_lost_answer")) == fault.lost_rotation, error
        assert job.status == "succeeded" and not worker.run_once()  # nothing left to retry by itself
        if fault.lost_rotation:
            # The refresh token the service holds is the one it sent; the provider's newest, issued
            # in the lost answer, never reached the service — and nothing older replaced it.
            assert before.refresh_token in servers.provider.refresh_tokens_issued
            assert stored_tokens(app, source_id).refresh_token == before.refresh_token
            assert servers.provider.last_refresh_token != before.refresh_token
    return before, source_id


@pytest.mark.parametrize("fault", CATALOGUE, ids=lambda fault: fault.id)
def test_a_provider_fault_is_classified_and_loses_no_token(connect, account, operator, servers, fault: Fault):
    injected, server_errors = faults_served(servers), len(SCAN.server_errors)
    if fault.path == "callback":
        before, source_id = run_callback_case(connect, account, operator, servers, fault)
    else:
        before, source_id = run_job_case(connect, account, servers, fault)
    after = stored_tokens(connect.application, source_id)
    LEDGER.cases += 1
    LEDGER.faults_injected += faults_served(servers) - injected
    assert faults_served(servers) > injected, "the fault was never served"
    newest = None
    if fault.path == "refresh" and fault.expected == "recovered":
        # The successful refresh was the provider's last answer to this client (a slow answer of an
        # earlier case, to the handshake's client, may still be arriving): it is what is stored.
        last = servers.provider.issued_to(POST_CLIENT)[-1]
        newest = Stored(last.refresh_token if fault.rotate else before.refresh_token, last.access_token)
    assert lost_tokens(before, after, servers, newest) == []
    if fault.path == "callback":  # a failed reconnect changes nothing at all
        assert after == before
    assert SCAN.server_errors[server_errors:] == []


def test_a_source_broken_by_a_lost_rotation_works_again_after_a_reconnect(connect, account, servers):
    """What the user is asked to do is enough: new credentials end the break at once."""
    fault = Fault("refresh", "lost_response", "permanent", rotate=True, lost_rotation=True)
    before, source_id = run_job_case(connect, account, servers, fault)
    servers.reset()
    fresh = servers.provider.issue_token(POST_CLIENT)["refresh_token"]
    saved = connect.put(f"/v4/sources/{source_id}", headers=account.headers,
                        json={"properties": {"refresh_token": fresh}})
    assert saved.status_code == 200, saved.get_json()
    assert Worker(connect.application, services(connect.application).jobs, poll_interval=0.05).run_once()
    body, check = source_view(connect, account, source_id)
    assert (check["status"], body["setup_state"]) == ("succeeded", "connected")
    assert lost_tokens(before, stored_tokens(connect.application, source_id), servers) == []
