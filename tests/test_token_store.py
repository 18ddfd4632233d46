"""The token store against the real test provider: one refresh at a time across processes and
threads, rotation that never loses or reuses a refresh token, failures classified and backed off,
and no secret in any log line."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app import db
from app.catalog.sections import AuthSection, parse_auth
from app.connectors.errors import AuthConfigurationError, CredentialsRejected, TokenUnavailable
from app.connectors.models import ACCESS_TOKEN, SourceToken
from app.connectors.tokens import (
    BROKEN_TYPE,
    MAX_ROUNDS,
    PERMANENT_BACKOFF,
    permanent_delay,
    refresh_token_property,
    transient_delay,
)
from app.crypto import generate_key_spec
from app.logs import JsonFormatter
from app.secrets_store import rotate_all, sealed_models

from .connectors_support import (  # noqa: F401  (fixtures)
    Servers,
    _default_server_behaviour,
    call_api,
    create_source,
    event_types,
    events,
    running_servers,
    servers,
    set_token_times,
    stored_properties,
    token_row,
    token_store,
)
from .token_callers import call_concurrently, run_callers

OAUTH = "test.oauth2-refresh"


def oauth_source(client, account, servers: Servers, source_type: str = OAUTH) -> int:
    return create_source(client, account, source_type, servers.oauth_properties())


def age_token(app, source_id: int) -> None:
    """Make the cached access token expired, as an hour passing would."""
    now = datetime.now(UTC)
    set_token_times(app, source_id, now - timedelta(seconds=1), now - timedelta(hours=1))


def source_body(client, account, source_id: int) -> dict:
    return client.get(f"/v4/sources/{source_id}", headers=account.headers).get_json()


# --- the concurrency proof ----------------------------------------------------------------------

PROCESSES = 3
THREADS_PER_PROCESS = 8
PARENT_THREADS = 4


def test_concurrent_callers_in_several_processes_cause_one_refresh(client, app, account, servers):
    """Every caller, in 3 spawned processes and this one, finds the token expired at the same
    moment; the token endpoint sees exactly one request, and everyone gets its token."""
    servers.provider.settings.rotate_refresh_tokens = True
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    age_token(app, source_id)
    before = servers.provider.token_requests

    context = multiprocessing.get_context("spawn")
    callers = PROCESSES * THREADS_PER_PROCESS + PARENT_THREADS
    barrier = context.Barrier(callers)
    results = context.Queue()
    config = {key: app.config[key] for key in (
        "TESTING", "DATABASE_URL", "OPERATOR_TOKEN", "REPORT_CARDS", "ENCRYPTION_KEYS",
        "TOKEN_REFRESH_MARGIN", "HTTP_TIMEOUT", "ALLOWED_SOURCE_NETWORKS")}
    config["LOG_LEVEL"] = "WARNING"
    processes = [context.Process(target=run_callers, args=(config, source_id, THREADS_PER_PROCESS, barrier, results))
                 for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    parent_threads = call_concurrently(token_store(app, source_id), PARENT_THREADS, barrier, results)
    answers = []
    try:
        for _ in range(callers):
            answers.append(results.get(timeout=180))
    finally:
        for thread in parent_threads:
            thread.join(60)
        for process in processes:
            process.join(60)
            if process.is_alive():
                process.kill()

    token_calls = servers.provider.token_requests - before
    pids = {pid for pid, *_ in answers}
    dialect = db.get_db(app).engine.dialect.name
    print(f"\n[{dialect}] {callers} concurrent callers in {len(pids)} processes "
          f"({PROCESSES} spawned x {THREADS_PER_PROCESS} threads + {PARENT_THREADS} threads here) "
          f"found the token expired; token endpoint calls: {token_calls}")
    assert [error for *_, error in answers if error] == []
    assert all(found_stale for _, found_stale, _, _ in answers)
    assert len(pids) == PROCESSES + 1
    assert token_calls == 1
    assert {token for _, _, token, _ in answers} == {servers.provider.last_access_token}
    assert stored_properties(app, source_id)["refresh_token"] == servers.provider.last_refresh_token
    assert event_types(app, source_id).count("token_refreshed") == 2


def test_concurrent_first_refresh_creates_one_row_and_one_request(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    store = token_store(app, source_id)
    before = servers.provider.token_requests
    results: queue.Queue = queue.Queue()
    threads = call_concurrently(store, 12, threading.Barrier(12), results)
    for thread in threads:
        thread.join(60)
    answers = [results.get_nowait() for _ in threads]
    assert [error for *_, error in answers if error] == []
    assert servers.provider.token_requests - before == 1
    assert len({token for _, _, token, _ in answers}) == 1


# --- rotation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rotate", [True, False])
def test_stored_refresh_token_is_always_the_last_one_issued(client, app, account, servers, rotate):
    servers.provider.settings.rotate_refresh_tokens = rotate
    source_id = oauth_source(client, account, servers)
    original = stored_properties(app, source_id)["refresh_token"]
    sent: list[str] = []
    for _ in range(5):
        assert call_api(app, source_id).status_code == 200
        sent.append(servers.provider.last_token_request.form["refresh_token"])
        assert stored_properties(app, source_id)["refresh_token"] == servers.provider.last_refresh_token
        age_token(app, source_id)
    types = event_types(app, source_id)
    assert types.count("token_refreshed") == 5 and "refresh_failed" not in types
    if rotate:
        # Each refresh sent the token the previous one issued: none was ever sent twice.
        assert len(set(sent)) == 5 and sent[0] == original
        assert types.count("refresh_token_rotated") == 5
        assert events(app, source_id, "refresh_token_rotated")[0] == {"property": "refresh_token"}
    else:
        assert set(sent) == {original} == {stored_properties(app, source_id)["refresh_token"]}
        assert "refresh_token_rotated" not in types


def test_a_refresh_token_in_an_answer_without_access_token_is_kept(client, app, account, servers):
    servers.provider.settings.rotate_refresh_tokens = True
    servers.provider.fail_next_token_requests("no_access_token")
    source_id = oauth_source(client, account, servers)
    before = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests - before == 2  # the second sent the rotated token
    assert stored_properties(app, source_id)["refresh_token"] == servers.provider.last_refresh_token
    assert events(app, source_id, "refresh_failed")[0]["error"] == "no_access_token"


def test_a_new_refresh_token_saved_during_a_refresh_wins(client, app, account, servers):
    """The user reconnects while a refresh is in flight: the refresh holds its lease but no lock,
    so the user's save goes through at once, and the user's token is what stays — the old grant's
    rotated token is not written over it, nor is the old grant's access token cached."""
    servers.provider.settings.rotate_refresh_tokens = True
    servers.provider.fail_next_token_requests("slow", delay=1.0)
    source_id = oauth_source(client, account, servers)
    before = servers.provider.token_requests
    refreshing = threading.Thread(target=lambda: call_api(app, source_id))
    refreshing.start()
    deadline = time.monotonic() + 10
    while servers.provider.token_requests == before and time.monotonic() < deadline:
        time.sleep(0.01)
    reconnected = servers.provider.issue_token("connect-post")["refresh_token"]
    response = client.put(f"/v4/sources/{source_id}", headers=account.headers,
                          json={"properties": {"refresh_token": reconnected}})
    refreshing.join(30)
    assert response.status_code == 200
    assert stored_properties(app, source_id)["refresh_token"] == reconnected
    # The token cached under the old credentials is not used: the next call refreshes with the new.
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.last_token_request.form["refresh_token"] == reconnected


# --- no network call inside a write transaction -------------------------------------------------

HANG_SECONDS = 12.0
WRITE_BOUND_SECONDS = 2.0


def test_a_hung_token_endpoint_holds_up_no_other_write(client, app, account, servers):
    """Issue 13: while one source's token endpoint hangs (with the default CONNECT_HTTP_TIMEOUT, so
    the refresh waits for it), writes go on: renaming an unrelated source and the refreshing source
    itself takes well under a second. On SQLite the refresh used to hold the database's write lock
    for the whole call (19.7 s measured from outside)."""
    assert app.config["HTTP_TIMEOUT"] == 20.0 > HANG_SECONDS
    servers.provider.settings.rotate_refresh_tokens = True
    refreshing_id = oauth_source(client, account, servers)
    other_id = create_source(client, account, "test.auth-none", {"api_url": servers.api_url})
    servers.provider.fail_next_token_requests("hang", delay=HANG_SECONDS)
    before = servers.provider.token_requests
    results: queue.Queue = queue.Queue()
    refreshing = threading.Thread(target=lambda: results.put(call_api(app, refreshing_id).status_code))
    refreshing.start()
    deadline = time.monotonic() + 10
    while servers.provider.token_requests == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert servers.provider.token_requests == before + 1  # the refresh is waiting on the provider

    timings = {}
    renames_started = time.monotonic()
    for label, source_id in (("unrelated source", other_id), ("refreshing source", refreshing_id)):
        started = time.monotonic()
        renamed = client.put(f"/v4/sources/{source_id}", headers=account.headers,
                             json={"display_name": f"Renamed {secrets.token_hex(3)}"})
        timings[label] = time.monotonic() - started
        assert renamed.status_code == 200
    hung_for = time.monotonic() - renames_started
    servers.provider.release_hung_requests()
    refreshing.join(60)
    dialect = db.get_db(app).engine.dialect.name
    print(f"\n[{dialect}] token endpoint hung; renames took "
          + ", ".join(f"{label} {seconds:.3f} s" for label, seconds in timings.items()))
    assert all(seconds < WRITE_BOUND_SECONDS for seconds in timings.values()), timings
    assert hung_for < HANG_SECONDS  # the renames did not wait for the hang to end
    # The refresh then finished as usual: a rename is no new configuration, so its token is kept.
    assert results.get_nowait() == 200
    assert servers.provider.token_requests == before + 1
    assert stored_properties(app, refreshing_id)["refresh_token"] == servers.provider.last_refresh_token
    assert token_store(app, refreshing_id).cached_token(ACCESS_TOKEN) == servers.provider.last_access_token


# --- the refresh lease ----------------------------------------------------------------------------

def set_lease(app, source_id: int, holder: str | None, until: datetime | None) -> None:
    """Write the refresh lease, as another caller (or time passing) would."""
    with db.get_db(app).Session() as session, session.begin():
        session.execute(update(SourceToken).where(SourceToken.source_id == source_id)
                        .values(refresh_holder=holder, refresh_lease_until=until))


def wait_for_token_requests(servers: Servers, count: int) -> None:
    deadline = time.monotonic() + 10
    while servers.provider.token_requests < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert servers.provider.token_requests >= count


def in_thread(function, *args) -> tuple[threading.Thread, queue.Queue]:
    """Run ``function(*args)``; its result (or the exception it raised) lands on the queue."""
    results: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            results.put(function(*args))
        except Exception as error:  # handed to the test
            results.put(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def test_an_unexpired_token_is_used_while_another_caller_refreshes(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    now = datetime.now(UTC)
    set_token_times(app, source_id, now + timedelta(seconds=60), now - timedelta(seconds=3540))  # in the margin
    set_lease(app, source_id, "another-caller", now + timedelta(seconds=60))
    before = servers.provider.token_requests
    started = time.monotonic()
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests == before and time.monotonic() - started < 1.0


def test_a_lease_whose_holder_died_is_taken_over_when_it_runs_out(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    age_token(app, source_id)
    set_lease(app, source_id, "a-caller-that-died", datetime.now(UTC) + timedelta(seconds=1.5))
    before = servers.provider.token_requests
    started = time.monotonic()
    assert call_api(app, source_id).status_code == 200
    assert time.monotonic() - started >= 1.0  # it waited for the lease rather than asking at once
    assert servers.provider.token_requests == before + 1
    assert token_row(app, source_id).refresh_holder is None  # released with the result


def test_the_lease_is_given_back_when_no_request_can_be_made(client, app, account, servers):
    properties = servers.oauth_properties()
    source_id = create_source(client, account, OAUTH, {k: v for k, v in properties.items() if k != "client_id"})
    before = servers.provider.token_requests
    with pytest.raises(AuthConfigurationError, match="client_id"):
        token_store(app, source_id).access_token()  # the lease is taken, then the request cannot be built
    assert servers.provider.token_requests == before
    assert (token_row(app, source_id).refresh_holder, token_row(app, source_id).refresh_lease_until) == (None, None)


@pytest.mark.parametrize("rotate", [False, True])
def test_a_late_holder_never_overwrites_the_newer_result(client, app, account, servers, rotate):
    """A's request hangs past its lease; B takes over and stores its token. When A's answer comes,
    the token B stored stays. With rotation, A's request carried the token B exchanged: the
    provider refuses it, and that refusal does not break the source."""
    servers.provider.settings.rotate_refresh_tokens = rotate
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("hang", delay=HANG_SECONDS)
    before = servers.provider.token_requests
    late, late_result = in_thread(call_api, app, source_id)
    wait_for_token_requests(servers, before + 1)
    set_lease(app, source_id, token_row(app, source_id).refresh_holder, datetime.now(UTC) - timedelta(seconds=1))

    assert call_api(app, source_id).status_code == 200  # B: takes the expired lease, refreshes
    stored_by_b = token_store(app, source_id).cached_token(ACCESS_TOKEN)
    refresh_token_after_b = stored_properties(app, source_id)["refresh_token"]
    servers.provider.release_hung_requests()
    late.join(60)

    assert late_result.get_nowait().status_code == 200
    assert token_store(app, source_id).cached_token(ACCESS_TOKEN) == stored_by_b
    assert stored_properties(app, source_id)["refresh_token"] == refresh_token_after_b
    assert source_body(client, account, source_id)["setup_state"] == "incomplete"
    assert not [f for f in events(app, source_id, "refresh_failed") if f["permanent"]]
    assert token_row(app, source_id).consecutive_failures == 0
    if rotate:
        # A's own request was refused (its token spent by B's exchange); A then used B's token.
        assert servers.provider.token_requests == before + 2
        assert refresh_token_after_b == servers.provider.last_refresh_token


def test_a_rotated_refresh_token_that_arrives_late_is_kept(client, app, account, servers):
    """A's exchange rotates at the provider but its answer is held past A's lease; B takes over,
    sends the token A's exchange spent, is refused and marks the source broken. When A's answer
    arrives, its new refresh token is the successor of the stored one: it is kept, and the
    refusal of the token it replaced no longer stands."""
    servers.provider.settings.rotate_refresh_tokens = True
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("committed_then_hang", delay=HANG_SECONDS)
    issued_before = len(servers.provider.refresh_tokens_issued)
    before = servers.provider.token_requests
    late, late_result = in_thread(call_api, app, source_id)
    deadline = time.monotonic() + 10
    while len(servers.provider.refresh_tokens_issued) == issued_before and time.monotonic() < deadline:
        time.sleep(0.01)
    rotated_for_a = servers.provider.last_refresh_token
    set_lease(app, source_id, token_row(app, source_id).refresh_holder, datetime.now(UTC) - timedelta(seconds=1))

    with pytest.raises(CredentialsRejected):
        call_api(app, source_id)  # B sent the token A's exchange had spent
    assert source_body(client, account, source_id)["setup_state"] == "broken"
    servers.provider.release_hung_requests()
    late.join(60)

    assert late_result.get_nowait().status_code == 200
    assert stored_properties(app, source_id)["refresh_token"] == rotated_for_a
    assert source_body(client, account, source_id)["setup_state"] == "incomplete"
    # The next caller refreshes with the kept token at once (no back-off left), and it works.
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.last_token_request.form["refresh_token"] == rotated_for_a
    assert servers.provider.token_requests == before + 3


# --- failures -----------------------------------------------------------------------------------

def test_invalid_grant_breaks_the_source_says_why_and_backs_off(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("invalid_grant")
    with pytest.raises(CredentialsRejected) as raised:
        call_api(app, source_id)
    assert raised.value.reason["type"] == BROKEN_TYPE and raised.value.reason["error"] == "invalid_grant"

    body = source_body(client, account, source_id)
    assert body["setup_state"] == "broken"
    error = body["report_card"]["setup_error"]
    assert (error["error"], error["status"]) == ("invalid_grant", 400) and "Reconnect" in error["message"]
    failed = events(app, source_id, "refresh_failed")
    assert failed[-1]["permanent"] is True and failed[-1]["error"] == "invalid_grant"
    row = token_row(app, source_id)
    assert timedelta(minutes=14) < row.next_attempt_at - datetime.now(UTC) <= PERMANENT_BACKOFF[0]

    # Backed off: further calls are refused without a request to the provider.
    before = servers.provider.token_requests
    for _ in range(3):
        with pytest.raises(CredentialsRejected):
            call_api(app, source_id)
    assert servers.provider.token_requests == before

    # The user reconnects: the back-off ends at once and a good refresh clears the break.
    fresh = servers.provider.issue_token("connect-post")["refresh_token"]
    assert client.put(f"/v4/sources/{source_id}", headers=account.headers,
                      json={"properties": {"refresh_token": fresh}}).status_code == 200
    assert call_api(app, source_id).status_code == 200
    body = source_body(client, account, source_id)
    assert body["setup_state"] == "incomplete" and "setup_error" not in body["report_card"]
    assert events(app, source_id, "token_refreshed")[-1]["cleared_broken_state"] is True


def test_permanent_back_off_grows_then_stays_daily():
    assert [permanent_delay(n) for n in range(1, 7)] == [
        timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6), timedelta(hours=24),
        timedelta(hours=24), timedelta(hours=24)]


def test_transient_delay_doubles_with_jitter_and_honours_retry_after():
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 60.0), (30, 60.0)]:
        delays = [transient_delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert transient_delay(1, retry_after=5) == 5


@pytest.mark.parametrize("fault", ["server_error", "html", "truncated_json"])
def test_a_transient_failure_is_retried_and_does_not_break_the_source(client, app, account, servers, fault):
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests(fault, 2)
    before = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests - before == 3
    assert source_body(client, account, source_id)["setup_state"] == "incomplete"
    failed = events(app, source_id, "refresh_failed")
    assert len(failed) == 2 and not any(f["permanent"] for f in failed)
    assert token_row(app, source_id).consecutive_failures == 0


def test_rate_limiting_waits_for_retry_after(client, app, account, servers):
    servers.provider.settings.retry_after_seconds = 1
    servers.provider.fail_next_token_requests("rate_limited")
    source_id = oauth_source(client, account, servers)
    started = time.monotonic()
    assert call_api(app, source_id).status_code == 200
    assert time.monotonic() - started >= 1.0
    assert events(app, source_id, "refresh_failed")[0]["status"] == 429


def test_a_slow_provider_times_out_and_is_retried(make_app, client, account, servers):
    app = make_app(HTTP_TIMEOUT=0.5)
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("slow", delay=1.5)
    before = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert servers.provider.token_requests - before == 2
    assert events(app, source_id, "refresh_failed")[0]["error"] == "timeout"


def test_a_lost_answer_is_retried_with_the_token_we_hold(client, app, account, servers):
    """Without rotation the stored token is still good, so the retry succeeds."""
    servers.provider.fail_next_token_requests("lost_response")
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    assert events(app, source_id, "refresh_failed")[0]["error"] == "connection_error"


def test_a_lost_answer_under_rotation_ends_in_a_clear_break(client, app, account, servers):
    """The documented window: the provider rotated but its answer never arrived, so the token we
    hold is spent; the retry is refused and the source asks the user to reconnect."""
    servers.provider.settings.rotate_refresh_tokens = True
    servers.provider.fail_next_token_requests("lost_response")
    source_id = oauth_source(client, account, servers)
    with pytest.raises(CredentialsRejected):
        call_api(app, source_id)
    assert source_body(client, account, source_id)["setup_state"] == "broken"


def test_persistent_transient_failures_give_up_bounded_without_breaking(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("server_error", None)
    before = servers.provider.token_requests
    started = time.monotonic()
    with pytest.raises(TokenUnavailable) as raised:
        call_api(app, source_id)
    elapsed = time.monotonic() - started
    assert servers.provider.token_requests - before == MAX_ROUNDS
    assert raised.value.error == "server_error" and raised.value.retry_at > datetime.now(UTC)
    assert elapsed < 10
    assert source_body(client, account, source_id)["setup_state"] == "incomplete"
    assert len(events(app, source_id, "refresh_failed")) == MAX_ROUNDS


def test_concurrent_callers_share_one_back_off_schedule(client, app, account, servers):
    source_id = oauth_source(client, account, servers)
    servers.provider.fail_next_token_requests("server_error")
    before = servers.provider.token_requests
    results: queue.Queue = queue.Queue()
    threads = call_concurrently(token_store(app, source_id), 8, threading.Barrier(8), results)
    for thread in threads:
        thread.join(60)
    answers = [results.get_nowait() for _ in threads]
    assert [error for *_, error in answers if error] == []
    assert servers.provider.token_requests - before == 2  # one failure, one success, for all 8


def test_an_unexpired_token_is_used_while_the_provider_is_down(client, app, account, servers):
    """Refreshing early leaves room: a failed early refresh falls back to the current token."""
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    now = datetime.now(UTC)
    set_token_times(app, source_id, now + timedelta(seconds=60), now - timedelta(seconds=3540))
    servers.provider.fail_next_token_requests("server_error", None)
    before = servers.provider.token_requests
    assert call_api(app, source_id).status_code == 200
    assert call_api(app, source_id).status_code == 200  # within the back-off: no new request
    assert servers.provider.token_requests - before == 1


def test_refresh_margin_is_configurable_and_capped_at_half_the_lifetime(make_app, client, account, servers):
    app = make_app(TOKEN_REFRESH_MARGIN=600)
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    now = datetime.now(UTC)
    store = token_store(app, source_id)
    set_token_times(app, source_id, now + timedelta(seconds=700), now - timedelta(seconds=2900))
    assert store.cached_token(ACCESS_TOKEN) is not None  # 700 s left > 600 s margin
    set_token_times(app, source_id, now + timedelta(seconds=500), now - timedelta(seconds=3100))
    assert store.cached_token(ACCESS_TOKEN) is None  # inside the margin
    # A 10-minute token is reused for its first half, not refreshed on every call.
    set_token_times(app, source_id, now + timedelta(seconds=400), now - timedelta(seconds=200))
    assert store.cached_token(ACCESS_TOKEN) is not None


# --- storage ------------------------------------------------------------------------------------

def test_tokens_are_sealed_and_rotate_keys_covers_them(make_app, client, account, servers):
    from .conftest import TEST_KEYS

    app = make_app()
    source_id = oauth_source(client, account, servers)
    assert call_api(app, source_id).status_code == 200
    row = token_row(app, source_id)
    assert servers.provider.last_access_token.encode() not in row.ciphertext
    assert SourceToken in sealed_models()

    new_key = generate_key_spec()
    rotated = make_app(ENCRYPTION_KEYS=f"{new_key},{TEST_KEYS}")
    from app.crypto import get_keyring

    counts = rotate_all(db.get_db(rotated).Session, get_keyring(rotated))
    assert counts["source_tokens"] == 1
    only_new = make_app(ENCRYPTION_KEYS=new_key)
    assert token_store(only_new, source_id).cached_token(ACCESS_TOKEN) == servers.provider.last_access_token


def test_a_token_moved_to_another_row_does_not_open(client, app, account, servers):
    first, second = oauth_source(client, account, servers), oauth_source(client, account, servers)
    for source_id in (first, second):
        assert call_api(app, source_id).status_code == 200
    stolen = token_row(app, first)
    with db.get_db(app).Session() as session, session.begin():
        session.execute(update(SourceToken).where(SourceToken.source_id == second)
                        .values(key_id=stolen.key_id, ciphertext=stolen.ciphertext))
    from app.crypto import KeyringError

    with pytest.raises(KeyringError):
        token_store(app, second).cached_token(ACCESS_TOKEN)


def test_refresh_token_property_comes_from_the_template_or_the_card():
    def auth(**keys: str) -> AuthSection:
        return parse_auth({"type": "oauth2", **keys})

    assert refresh_token_property(auth(refresh_token="{{ properties.rt }}")) == "rt"
    assert refresh_token_property(auth(refresh_token="{{properties.rt}}", refresh_token_property="x")) == "x"
    assert refresh_token_property(auth(refresh_token="{{ properties.a }}{{ properties.b }}")) is None


# --- secrets never reach a log line -------------------------------------------------------------

def test_no_secret_in_any_log_line(client, app, account, servers, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # URLs with query strings, connection chatter
    servers.provider.settings.rotate_refresh_tokens = True
    planted = {
        "api_key": "planted-key-" + secrets.token_hex(12),
        "session_password": "planted-pw-" + secrets.token_hex(12),
    }
    servers.data_api.settings.api_key = planted["api_key"]
    servers.data_api.settings.session_password = planted["session_password"]

    oauth_id = oauth_source(client, account, servers)
    issued = [stored_properties(app, oauth_id)["refresh_token"]]
    assert call_api(app, oauth_id).status_code == 200
    age_token(app, oauth_id)
    servers.provider.fail_next_token_requests("server_error")
    assert call_api(app, oauth_id).status_code == 200
    query_id = create_source(client, account, "test.auth-apikey-query",
                             {"api_url": servers.api_url, "api_key": planted["api_key"]})
    assert call_api(app, query_id).status_code == 200
    session_id = create_source(client, account, "test.session-cached", {
        "api_url": servers.api_url, "username": "session-user", "password": planted["session_password"]})
    assert call_api(app, session_id).status_code == 200
    servers.provider.fail_next_token_requests("invalid_grant")
    age_token(app, oauth_id)
    with pytest.raises(CredentialsRejected):
        call_api(app, oauth_id)

    secret_values = [
        *planted.values(), servers.client_secret, *issued, *servers.provider.refresh_tokens_issued[-3:],
        *servers.provider.access_tokens_issued[-3:], servers.data_api.last_session_token]
    assert all(secret_values)
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any("token refreshed" in line for line in lines) and any("urllib3" in line for line in lines)
    leaks = [(value[:12], line) for value in secret_values for line in lines if value in line]
    print(f"\n{len(lines)} log lines searched for {len(secret_values)} secret values: {len(leaks)} hits")
    assert leaks == []
    # Nothing logs the body of a token or login request, even before redaction.
    bodies = ("grant_type=", "client_secret=", '"password":')
    assert not [r for r in caplog.records if any(marker in r.getMessage() for marker in bodies)]
    for source_id in (oauth_id, query_id, session_id):
        shown = client.get(f"/v4/sources/{source_id}/events", headers=account.headers).get_data(as_text=True)
        shown += client.get(f"/v4/sources/{source_id}", headers=account.headers).get_data(as_text=True)
        assert not [value for value in secret_values if value in shown]
