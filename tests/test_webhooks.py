"""Signed webhooks against a real receiver on 127.0.0.1 (tests/servers/webhook_receiver.py), which
verifies every delivery with the ``standardwebhooks`` library the way an integrator's code would.

Time: the service's webhook clock is an :class:`OffsetClock` (the real time plus an offset the test
moves), so a 24-hour retry window passes in milliseconds. The ``webhook-timestamp`` header is the
real time of each attempt, which is what the receiver's library checks (±5 minutes).

Events are emitted with :func:`app.webhooks.outbox.emit` inside a write transaction, as the code
where something happens to a source will (that wiring is not part of this module).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import create_app, db, webhooks
from app.db import begin_write
from app.secrets_store import rotate_all, sealed_models
from app.webhooks.delivery import claim_due, claim_length, prune_history, record_outcome, run_deliveries
from app.webhooks.models import UNFINISHED, WebhookDelivery, WebhookEvent, WebhookSecret
from app.webhooks.outbox import emit
from app.webhooks.schedule import FIRST_DELAY, JITTER, LONGEST_DELAY

from .conftest import OPERATOR_TOKEN, base_config, report_figure
from .live_service import ROOT, service_environment, stop, wait_for_file
from .servers import ReceiverFault
from .test_bad_inputs import database_state
from .test_service_basics import assert_error

SENDER_TIMEOUT = 0.5  # seconds the service waits for the receiver (a timeout fault waits longer)
WINDOW = timedelta(hours=24)
# A wait is counted from the attempt's start (last_attempt_at) but runs from its end: allow for
# the attempt itself (at most the sender's timeout, and a loaded machine's pause).
ATTEMPT_SLACK = SENDER_TIMEOUT + 2.0

OPERATOR_HEADERS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


# --- the clock, the app, the receiver ---------------------------------------------------------------


@dataclass
class OffsetClock:
    offset: timedelta = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)

    def advance_to(self, moment: datetime) -> None:
        """Move on to just after ``moment`` (never back)."""
        ahead = moment - self() + timedelta(milliseconds=1)
        if ahead > timedelta():
            self.offset += ahead


@pytest.fixture(scope="module")
def loopback_app(migrated_database: str) -> Iterator[Flask]:
    """One app for the module (building one per test would cost more than most tests take)."""
    application = create_app(base_config(migrated_database, WEBHOOK_ALLOW_LOOPBACK=True,
                                         WEBHOOK_TIMEOUT=SENDER_TIMEOUT))
    yield application
    db.get_db(application).dispose()


@pytest.fixture()
def clock(loopback_app: Flask) -> OffsetClock:
    """A fresh clock for each test, and the app's webhooks set up with it (as create_app does)."""
    fresh = OffsetClock()
    webhooks.init_app(loopback_app, clock=fresh)
    return fresh


@pytest.fixture()
def hooks_app(loopback_app: Flask, clock: OffsetClock) -> Flask:
    return loopback_app


@pytest.fixture()
def hooks(hooks_app: Flask):  # type: ignore[no-untyped-def]
    return hooks_app.test_client()


# --- helpers -------------------------------------------------------------------------------------


def register(client, account, url: str, events: tuple[str, ...] = ("*",), **extra: Any) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    response = client.post("/v4/webhooks", headers=account.headers,
                           json={"url": url, "events": list(events), **extra})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body["id"], body["secret"]


Event = tuple[str, dict[str, Any], int | None]


def created(source_id: int) -> Event:
    return "source.created", {"source_type": "platform.hubspot", "name": f"source_{source_id}"}, source_id


def step_changed(source_id: int, before: str, after: str) -> Event:
    return "source.step_changed", {"from": before, "to": after}, source_id


def emit_events(app: Flask, account_id: int, *events: Event) -> list[int | None]:
    """Emit in one committed write transaction, as a source write would."""
    with db.get_db(app).Session() as session, begin_write(session):
        return [emit(session, account_id, kind, data, source_id) for kind, data, source_id in events]


def deliveries(client, account, webhook_id: int, **query: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = client.get(f"/v4/webhooks/{webhook_id}/deliveries", headers=account.headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def only_delivery(client, account, webhook_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    found = deliveries(client, account, webhook_id)
    assert len(found) == 1, found
    return found[0]


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def unfinished(app: Flask) -> int:
    with db.get_db(app).Session() as session:
        return session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(WebhookDelivery.status.in_(UNFINISHED))) or 0


def next_due(app: Flask, clock: OffsetClock) -> datetime | None:
    """The next attempt still to come (rows waiting for an earlier event of their source are due
    already, but not sent: the attempt they wait for is the one to move the clock to)."""
    with db.get_db(app).Session() as session:
        return session.scalar(select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.status.in_(UNFINISHED), WebhookDelivery.next_attempt_at > clock()))


def within_step(failures: int, wait: float) -> bool:
    """Is ``wait`` the back-off after ``failures`` failures in a row: 10 s × 4^(n-1), at most 6 h,
    with ±25 % jitter?"""
    step = min(FIRST_DELAY.total_seconds() * 4 ** (failures - 1), LONGEST_DELAY.total_seconds())
    return step * (1 - JITTER) <= wait <= step * (1 + JITTER) + ATTEMPT_SLACK


def drain(app: Flask, clock: OffsetClock, rounds: int = 100) -> int:
    """Send until nothing is unfinished, moving the clock to each next attempt; returns the rounds."""
    for done in range(rounds):
        if not unfinished(app):
            return done
        if not run_deliveries(app):
            due = next_due(app, clock)
            assert due is not None, "nothing sendable, nothing to come: a delivery is stuck"
            clock.advance_to(due)
    raise AssertionError(f"deliveries still unfinished after {rounds} rounds")


# --- delivery ------------------------------------------------------------------------------------


def test_a_subscribed_endpoint_receives_the_event_signed_and_verifiable(hooks_app, hooks, account, receiver):
    webhook_id, secret = register(hooks, account, receiver.url, ("source.created",), description="Acme prod")
    receiver.trust("current", secret)
    assert secret.startswith("whsec_")
    event_id = emit_events(hooks_app, account.id, created(41))[0]
    assert event_id is not None

    assert run_deliveries(hooks_app) == 1
    [received] = receiver.wait_for(1)
    assert received.verified_by == {"current"} and received.answered == 200
    assert received.signatures == 1
    assert received.payload is not None and set(received.payload) == {"type", "timestamp", "data"}
    assert received.payload["type"] == "source.created"
    assert received.payload["data"] == {"source_id": 41, "source_type": "platform.hubspot", "name": "source_41"}
    assert abs(int(received.timestamp) - time.time()) < 60  # the real time of the attempt

    delivery = only_delivery(hooks, account, webhook_id)
    assert delivery["message_id"] == received.message_id and delivery["message_id"].startswith("msg_")
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("succeeded", 1, 200)
    assert delivery["event"]["id"] == event_id and delivery["last_response"] == "ok"
    assert delivery["delivered_at"] is not None and delivery["next_attempt_at"] is None
    assert run_deliveries(hooks_app) == 0  # sent once


def test_only_endpoints_subscribed_to_the_type_get_a_delivery(hooks_app, hooks, account, new_account, receiver):
    created_only, _ = register(hooks, account, receiver.url, ("source.created",))
    everything, _ = register(hooks, account, receiver.url, ("*",))
    other = new_account("Other")
    theirs, _ = register(hooks, other, receiver.url, ("*",))
    emit_events(hooks_app, account.id, step_changed(5, "form", "discover_schema"))
    assert deliveries(hooks, account, created_only) == []
    assert [d["event"]["type"] for d in deliveries(hooks, account, everything)] == ["source.step_changed"]
    assert deliveries(hooks, other, theirs) == []  # another account's event


def test_an_event_nobody_subscribes_to_is_not_stored(hooks_app, account):
    assert emit_events(hooks_app, account.id, created(3)) == [None]
    with db.get_db(hooks_app).Session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0


def test_failed_attempts_are_retried_with_backoff_and_jitter_until_the_endpoint_answers(
        hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    receiver.fail_next(ReceiverFault.SERVER_ERROR)
    receiver.fail_next(ReceiverFault.TIMEOUT, delay=SENDER_TIMEOUT + 1.0)
    receiver.fail_next(ReceiverFault.RATE_LIMITED, delay=600)
    receiver.fail_next(ReceiverFault.SLOW, delay=SENDER_TIMEOUT / 3)  # slow but in time: a success
    emit_events(hooks_app, account.id, created(7))

    observed: list[tuple[str | None, float]] = []
    for _ in range(3):
        assert run_deliveries(hooks_app) == 1
        delivery = only_delivery(hooks, account, webhook_id)
        assert delivery["status"] == "pending"
        wait = (parse(delivery["next_attempt_at"]) - parse(delivery["last_attempt_at"])).total_seconds()
        observed.append((delivery["last_error"]["type"], wait))
        assert run_deliveries(hooks_app) == 0  # not due before its time
        clock.advance_to(parse(delivery["next_attempt_at"]))
    assert run_deliveries(hooks_app) == 1

    delivery = only_delivery(hooks, account, webhook_id)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("succeeded", 4, 200)
    assert [kind for kind, _ in observed] == ["http_status", "timeout", "http_status"]
    first, second, rate_limited = (wait for _, wait in observed)
    assert within_step(1, first) and within_step(2, second)
    assert rate_limited >= 600  # Retry-After is a floor
    arrived = receiver.wait_for(4)  # the timed-out request arrives late
    assert {r.message_id for r in arrived} == {delivery["message_id"]}  # one webhook-id throughout
    assert all(r.verified_by == {"current"} for r in arrived)
    report_figure(f"webhook retries observed: waits {first:.1f} s, {second:.1f} s, {rate_limited:.0f} s "
                  f"(Retry-After 600), then delivered on attempt 4")


def test_a_delivery_is_given_up_after_the_retry_window(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    receiver.fail_next(ReceiverFault.SERVER_ERROR, count=None)
    emit_events(hooks_app, account.id, created(8))
    started = parse(only_delivery(hooks, account, webhook_id)["created_at"])

    schedule: list[float] = []
    while True:
        assert run_deliveries(hooks_app) == 1
        delivery = only_delivery(hooks, account, webhook_id)
        if delivery["status"] == "failed":
            break
        last, following = parse(delivery["last_attempt_at"]), parse(delivery["next_attempt_at"])
        schedule.append((following - last).total_seconds())
        assert following <= started + WINDOW  # nothing is scheduled after the window
        clock.advance_to(following)
        assert len(schedule) < 30, schedule

    attempts = delivery["attempts"]
    assert len(schedule) == attempts - 1
    # Each wait is the exponential step with its jitter; only the last may be cut short by the window.
    for number, wait in enumerate(schedule[:-1], start=1):
        assert within_step(number, wait), (number, wait)
    assert parse(delivery["last_attempt_at"]) >= started + WINDOW - timedelta(seconds=1)
    assert 10 <= attempts <= 12  # what 24 h of this schedule allows, whatever the jitter drew
    assert delivery["last_error"] == {"type": "http_status", "message": "the endpoint answered 500"}
    assert delivery["last_response"] == "receiver exploded"
    assert len(receiver.wait_for(attempts)) == attempts
    assert run_deliveries(hooks_app) == 0
    clock.advance(hours=48)
    assert run_deliveries(hooks_app) == 0  # failed for good
    waits = ", ".join(f"{wait / 3600:.2f} h" if wait >= 3600 else f"{wait:.0f} s" for wait in schedule)
    report_figure(f"webhook give-up: {attempts} attempts over 24 h of controlled time, waits {waits} "
                  "(the last may be cut short by the window), then failed")


def test_redelivery_resends_with_the_same_webhook_id(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    emit_events(hooks_app, account.id, created(9))
    run_deliveries(hooks_app)
    first = only_delivery(hooks, account, webhook_id)
    assert first["status"] == "succeeded"

    response = hooks.post(f"/v4/webhooks/{webhook_id}/deliveries/{first['id']}/redeliver", headers=account.headers)
    assert response.status_code == 202, response.get_json()
    assert (response.get_json()["status"], response.get_json()["attempts"]) == ("pending", 0)
    assert run_deliveries(hooks_app) == 1
    again = only_delivery(hooks, account, webhook_id)
    assert (again["status"], again["attempts"], again["message_id"]) == ("succeeded", 1, first["message_id"])
    assert [r.message_id for r in receiver.wait_for(2)] == [first["message_id"]] * 2

    # A delivery that failed for good gets a fresh window: it is retried again, then delivered.
    receiver.fail_next(ReceiverFault.SERVER_ERROR, count=None)
    emit_events(hooks_app, account.id, created(10))
    drain(hooks_app, clock)
    failed = deliveries(hooks, account, webhook_id, status="failed")
    assert len(failed) == 1
    receiver.clear_faults()
    hooks.post(f"/v4/webhooks/{webhook_id}/deliveries/{failed[0]['id']}/redeliver", headers=account.headers)
    assert run_deliveries(hooks_app) == 1
    final = hooks.get(f"/v4/webhooks/{webhook_id}/deliveries/{failed[0]['id']}", headers=account.headers).get_json()
    assert (final["status"], final["attempts"], final["last_status"]) == ("succeeded", 1, 200)


def test_a_delivery_being_sent_cannot_be_redelivered_and_a_lapsed_claim_loses_its_answer(
        hooks_app, hooks, account, receiver, clock):
    webhook_id, _ = register(hooks, account, receiver.url)
    emit_events(hooks_app, account.id, created(11))
    runtime = webhooks.get_runtime(hooks_app)
    [claimed] = claim_due(db.get_db(hooks_app).Session, runtime, 10)  # a sender that went quiet
    url = f"/v4/webhooks/{webhook_id}/deliveries/{claimed.delivery_id}/redeliver"
    assert_error(hooks.post(url, headers=account.headers), 409, "delivery_in_progress")

    clock.advance(seconds=claim_length(runtime).total_seconds() + 1)  # its claim lapses
    assert hooks.post(url, headers=account.headers).status_code == 202
    from app.webhooks.delivery import Outcome

    # The old sender's answer comes in now: it is not recorded over the redelivery.
    record_outcome(db.get_db(hooks_app).Session, runtime, claimed, Outcome(True, 200))
    assert only_delivery(hooks, account, webhook_id)["status"] == "pending"


def test_a_sender_whose_claim_lapsed_is_replaced(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    emit_events(hooks_app, account.id, created(12))
    runtime = webhooks.get_runtime(hooks_app)
    claim_due(db.get_db(hooks_app).Session, runtime, 10)  # claimed, never sent: its sender died
    assert run_deliveries(hooks_app) == 0
    assert only_delivery(hooks, account, webhook_id)["status"] == "sending"
    clock.advance(seconds=claim_length(runtime).total_seconds() + 1)
    assert run_deliveries(hooks_app) == 1
    delivery = only_delivery(hooks, account, webhook_id)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 2)
    assert len(receiver.wait_for(1)) == 1


def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new(
        hooks_app, hooks, account, receiver, clock):
    webhook_id, old = register(hooks, account, receiver.url)
    receiver.trust("old", old)
    response = hooks.post(f"/v4/webhooks/{webhook_id}/rotate-secret", headers=account.headers,
                          json={"overlap_seconds": 3600})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    new = body["secret"]
    assert new != old and new.startswith("whsec_")
    ends = [s["expires_at"] for s in body["signing_secrets"]]
    assert ends[1] is None and parse(ends[0]) - clock() <= timedelta(seconds=3600)
    receiver.trust("new", new)

    emit_events(hooks_app, account.id, created(13))
    run_deliveries(hooks_app)
    during = receiver.wait_for(1)[-1]
    assert (during.signatures, during.verified_by) == (2, {"old", "new"})

    clock.advance(seconds=3601)
    emit_events(hooks_app, account.id, created(14))
    run_deliveries(hooks_app)
    after = receiver.wait_for(2)[-1]
    assert (after.signatures, after.verified_by) == (1, {"new"})

    # A receiver still holding only the old secret now refuses, and the delivery is retried.
    receiver.forget("new")
    emit_events(hooks_app, account.id, created(15))
    run_deliveries(hooks_app)
    refused = deliveries(hooks, account, webhook_id)[0]
    assert (refused["status"], refused["last_status"]) == ("pending", 401)


def test_rotation_without_overlap_stops_the_old_secret_at_once(hooks_app, hooks, account, receiver):
    webhook_id, old = register(hooks, account, receiver.url)
    new = hooks.post(f"/v4/webhooks/{webhook_id}/rotate-secret", headers=account.headers,
                     json={"overlap_seconds": 0}).get_json()["secret"]
    receiver.trust("old", old)
    receiver.trust("new", new)
    emit_events(hooks_app, account.id, created(16))
    run_deliveries(hooks_app)
    assert receiver.wait_for(1)[0].verified_by == {"new"}
    # A second rotation drops the secret whose overlap has ended.
    third = hooks.post(f"/v4/webhooks/{webhook_id}/rotate-secret", headers=account.headers).get_json()
    assert [s["generation"] for s in third["signing_secrets"]] == [2, 3]


def test_a_sources_events_reach_each_endpoint_in_order(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    receiver.fail_next(ReceiverFault.SERVER_ERROR, source_id=21)
    emit_events(hooks_app, account.id, created(21))
    emit_events(hooks_app, account.id, step_changed(21, "form", "discover_schema"),
                step_changed(21, "discover_schema", "field_selection"), created(22))

    assert run_deliveries(hooks_app) == 2  # source 21's first event and source 22's: the rest wait
    assert run_deliveries(hooks_app) == 0  # 21's first is backing off: its later events are not due
    assert [r.type for r in receiver.of_source(22)] == ["source.created"]
    drain(hooks_app, clock)
    order = [(r.type, (r.payload or {})["data"].get("to")) for r in receiver.of_source(21) if r.answered == 200]
    assert order == [("source.created", None), ("source.step_changed", "discover_schema"),
                     ("source.step_changed", "field_selection")]
    assert len(receiver.of_source(21)) == 4  # one failed attempt, then each event once


def test_an_event_that_failed_for_good_lets_the_next_one_go(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    receiver.fail_next(ReceiverFault.SERVER_ERROR, count=None)
    emit_events(hooks_app, account.id, created(23))
    emit_events(hooks_app, account.id, step_changed(23, "form", "discover_schema"))
    for _ in range(30):
        statuses = sorted(d["status"] for d in deliveries(hooks, account, webhook_id))
        if "failed" in statuses:
            break
        if not run_deliveries(hooks_app):
            due = next_due(hooks_app, clock)
            assert due is not None
            clock.advance_to(due)
    assert statuses == ["failed", "pending"]
    assert {r.type for r in receiver.received} == {"source.created"}  # the second was never sent
    receiver.clear_faults()
    assert run_deliveries(hooks_app) == 1
    assert receiver.received[-1].type == "source.step_changed" and receiver.received[-1].answered == 200


def test_concurrent_senders_keep_each_sources_order_and_send_each_event_once(hooks_app, hooks, account, receiver):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    steps = ["form", "oauth", "discover_schema", "field_selection", "fully_configured"]
    for source_id in (31, 32, 33, 34):
        emit_events(hooks_app, account.id, created(source_id))
        for before, after in zip(steps, steps[1:], strict=False):
            emit_events(hooks_app, account.id, step_changed(source_id, before, after))
    total = 4 * len(steps)
    errors: list[BaseException] = []

    def sender() -> None:
        deadline = time.monotonic() + 60
        try:
            while unfinished(hooks_app) and time.monotonic() < deadline:
                if not run_deliveries(hooks_app, limit=3):
                    time.sleep(0.01)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors
    assert unfinished(hooks_app) == 0
    received = receiver.wait_for(total)
    assert len(received) == total and len({r.message_id for r in received}) == total  # each once
    for source_id in (31, 32, 33, 34):
        seen = [(r.payload or {})["data"].get("to") for r in receiver.of_source(source_id)]
        assert seen == [None, *steps[1:]], (source_id, seen)


def test_nothing_is_sent_for_a_change_that_rolled_back(hooks_app, hooks, account, receiver):
    webhook_id, _ = register(hooks, account, receiver.url)
    with pytest.raises(RuntimeError), db.get_db(hooks_app).Session() as session, begin_write(session):
        assert emit(session, account.id, *created(51)) is not None
        raise RuntimeError("the change fails after its event was emitted")
    assert deliveries(hooks, account, webhook_id) == []
    assert run_deliveries(hooks_app) == 0
    with db.get_db(hooks_app).Session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert receiver.received == []


def test_deleting_an_endpoint_stops_its_deliveries(hooks_app, hooks, account, receiver):
    webhook_id, _ = register(hooks, account, receiver.url)
    emit_events(hooks_app, account.id, created(52))
    assert hooks.delete(f"/v4/webhooks/{webhook_id}", headers=account.headers).status_code == 204
    assert_error(hooks.get(f"/v4/webhooks/{webhook_id}", headers=account.headers), 404, "not_found")
    assert run_deliveries(hooks_app) == 0
    assert receiver.received == []


def test_a_url_refused_at_send_time_fails_without_retries(hooks_app, hooks, account, receiver, clock):
    """The operator turned loopback off after the endpoint was registered."""
    webhook_id, _ = register(hooks, account, receiver.url)
    emit_events(hooks_app, account.id, created(53))
    webhooks.init_app(hooks_app, clock=clock, url_problem=lambda url: "is on a loopback host, which this "
                      "service does not deliver to")
    assert run_deliveries(hooks_app) == 1
    delivery = only_delivery(hooks, account, webhook_id)
    assert delivery["status"] == "failed" and delivery["last_error"]["type"] == "url_refused"
    assert receiver.received == []


def test_redirects_are_not_followed(hooks_app, hooks, account, receiver):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    receiver.fail_next(ReceiverFault.REDIRECT)
    emit_events(hooks_app, account.id, created(54))
    run_deliveries(hooks_app)
    delivery = only_delivery(hooks, account, webhook_id)
    assert (delivery["status"], delivery["last_status"]) == ("pending", 302)
    assert len(receiver.wait_for(1)) == 1  # /elsewhere was never called


def test_deliveries_are_paginated_newest_first(hooks_app, hooks, account, receiver):
    webhook_id, _ = register(hooks, account, receiver.url)
    emit_events(hooks_app, account.id, *(created(60 + n) for n in range(5)))
    first = hooks.get(f"/v4/webhooks/{webhook_id}/deliveries?limit=2", headers=account.headers).get_json()
    second = hooks.get(f"/v4/webhooks/{webhook_id}/deliveries?limit=2&cursor={first['next_cursor']}",
                       headers=account.headers).get_json()
    third = hooks.get(f"/v4/webhooks/{webhook_id}/deliveries?limit=2&cursor={second['next_cursor']}",
                      headers=account.headers).get_json()
    ids = [d["id"] for page in (first, second, third) for d in page["data"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5 and third["next_cursor"] is None
    assert [d["source_id"] for d in first["data"]] == [64, 63]


def test_history_older_than_the_retention_is_pruned(hooks_app, hooks, account, receiver, clock):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    emit_events(hooks_app, account.id, created(70))
    run_deliveries(hooks_app)
    assert prune_history(hooks_app) == 0
    clock.advance(days=31)
    emit_events(hooks_app, account.id, created(71))  # recent: kept
    assert prune_history(hooks_app) == 1
    assert [d["source_id"] for d in deliveries(hooks, account, webhook_id)] == [71]
    with db.get_db(hooks_app).Session() as session:
        assert session.scalars(select(WebhookEvent.source_id)).all() == [71]


# --- endpoints, secrets, isolation, bad input ----------------------------------------------------


def test_the_secret_is_shown_once_and_sealed_at_rest(hooks_app, hooks, account, receiver):
    webhook_id, secret = register(hooks, account, receiver.url, ("source.created", "source.deleted"))
    rotated = hooks.post(f"/v4/webhooks/{webhook_id}/rotate-secret", headers=account.headers).get_json()["secret"]
    emit_events(hooks_app, account.id, created(80))
    run_deliveries(hooks_app)
    for path in ("/v4/webhooks", f"/v4/webhooks/{webhook_id}", f"/v4/webhooks/{webhook_id}/deliveries"):
        text = hooks.get(path, headers=account.headers).get_data(as_text=True)
        for value in (secret, rotated):
            assert value not in text and value.removeprefix("whsec_") not in text
    shown = hooks.get(f"/v4/webhooks/{webhook_id}", headers=account.headers).get_json()
    assert "secret" not in shown and [s["generation"] for s in shown["signing_secrets"]] == [1, 2]
    with db.get_db(hooks_app).Session() as session:
        stored = session.scalars(select(WebhookSecret)).all()
    assert len(stored) == 2
    assert all(secret.encode() not in row.ciphertext and rotated.encode() not in row.ciphertext for row in stored)


def test_signing_secrets_are_re_encrypted_by_key_rotation(make_app, hooks_app, hooks, account, receiver, clock):
    from app.crypto import generate_key_spec, get_keyring

    from .conftest import TEST_KEYS

    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    assert WebhookSecret in sealed_models()
    rotated_app = make_app(WEBHOOK_ALLOW_LOOPBACK=True, ENCRYPTION_KEYS=f"{generate_key_spec()},{TEST_KEYS}")
    webhooks.init_app(rotated_app, clock=clock)
    counts = rotate_all(db.get_db(rotated_app).Session, get_keyring(rotated_app))
    assert counts["webhook_secrets"] == 1
    emit_events(rotated_app, account.id, created(81))
    run_deliveries(rotated_app)
    assert receiver.wait_for(1)[0].verified_by == {"current"}


def test_an_endpoint_can_be_changed(hooks, account, receiver):
    webhook_id, _ = register(hooks, account, receiver.url, ("source.created",))
    response = hooks.put(f"/v4/webhooks/{webhook_id}", headers=account.headers,
                         json={"events": ["source.deleted", "source.deleted"], "description": "ops"})
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["events"], response.get_json()["description"]) == (["source.deleted"], "ops")
    cleared = hooks.put(f"/v4/webhooks/{webhook_id}", headers=account.headers, json={"description": None})
    assert cleared.get_json()["description"] is None and cleared.get_json()["url"] == receiver.url
    listed = hooks.get("/v4/webhooks", headers=account.headers).get_json()
    assert [w["id"] for w in listed] == [webhook_id]


def test_another_accounts_webhooks_and_deliveries_are_404_and_unchanged(hooks_app, hooks, account, new_account,
                                                                        receiver):
    theirs = new_account("Theirs")
    their_webhook, _ = register(hooks, theirs, receiver.url)
    mine, _ = register(hooks, account, receiver.url)
    emit_events(hooks_app, theirs.id, created(90))
    [their_delivery] = deliveries(hooks, theirs, their_webhook)
    attempts = [
        ("GET", f"/v4/webhooks/{their_webhook}", None),
        ("PUT", f"/v4/webhooks/{their_webhook}", {"url": "https://mine.example/hook"}),
        ("DELETE", f"/v4/webhooks/{their_webhook}", None),
        ("POST", f"/v4/webhooks/{their_webhook}/rotate-secret", {}),
        ("GET", f"/v4/webhooks/{their_webhook}/deliveries", None),
        ("GET", f"/v4/webhooks/{their_webhook}/deliveries/{their_delivery['id']}", None),
        ("POST", f"/v4/webhooks/{their_webhook}/deliveries/{their_delivery['id']}/redeliver", None),
        # Their delivery under my webhook: looked up within my webhook.
        ("GET", f"/v4/webhooks/{mine}/deliveries/{their_delivery['id']}", None),
        ("POST", f"/v4/webhooks/{mine}/deliveries/{their_delivery['id']}/redeliver", None),
    ]
    for method, path, body in attempts:
        before = database_state(hooks_app)
        response = hooks.open(path, method=method, headers=account.headers, json=body)
        assert_error(response, 404, "not_found")
        assert database_state(hooks_app) == before, (method, path)
    assert [w["id"] for w in hooks.get("/v4/webhooks", headers=account.headers).get_json()] == [mine]


BAD_BODIES = [
    ("url missing", {"events": ["*"]}, "url", "invalid_body"),
    ("url not a string", {"url": 5, "events": ["*"]}, "url", "invalid_body"),
    ("not http", {"url": "ftp://hooks.example/x", "events": ["*"]}, "url", "invalid_url"),
    ("plain http to a public host", {"url": "http://hooks.example/x", "events": ["*"]}, "url", "invalid_url"),
    ("user-info", {"url": "https://good.example@evil.example/x", "events": ["*"]}, "url", "invalid_url"),
    ("fragment", {"url": "https://hooks.example/x#y", "events": ["*"]}, "url", "invalid_url"),
    ("cloud metadata", {"url": "http://169.254.169.254/latest", "events": ["*"]}, "url", "invalid_url"),
    ("metadata over IPv6", {"url": "https://[fd00:ec2::254]/", "events": ["*"]}, "url", "invalid_url"),
    ("metadata by name", {"url": "https://metadata.google.internal/x", "events": ["*"]}, "url", "invalid_url"),
    ("private address", {"url": "https://10.1.2.3/hook", "events": ["*"]}, "url", "invalid_url"),
    ("loopback in another form", {"url": "https://0x7f000001/hook", "events": ["*"]}, "url", "invalid_url"),
    ("no host", {"url": "https:///hook", "events": ["*"]}, "url", "invalid_url"),
    ("events missing", {"url": "https://hooks.example/x"}, "events", "invalid_body"),
    ("events empty", {"url": "https://hooks.example/x", "events": []}, "events", "invalid_body"),
    ("unknown event", {"url": "https://hooks.example/x", "events": ["source.exploded"]}, "events.0",
     "invalid_body"),
    ("events not a list", {"url": "https://hooks.example/x", "events": "source.created"}, "events",
     "invalid_body"),
    ("description with a newline", {"url": "https://hooks.example/x", "events": ["*"], "description": "a\nb"},
     "description", "invalid_body"),
    ("description too long", {"url": "https://hooks.example/x", "events": ["*"], "description": "d" * 201},
     "description", "invalid_body"),
    ("unknown field", {"url": "https://hooks.example/x", "events": ["*"], "secret": "whsec_mine"}, "secret",
     "invalid_body"),
]


@pytest.mark.parametrize("label, body, field, error_type", BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_webhook_bodies_are_422_naming_the_field_and_change_nothing(hooks_app, hooks, account, label, body,
                                                                        field, error_type):
    before = database_state(hooks_app)
    error = assert_error(hooks.post("/v4/webhooks", headers=account.headers, json=body), 422, error_type)
    assert field in {detail.get("field") for detail in error["details"]}, error
    assert database_state(hooks_app) == before


def test_loopback_urls_are_refused_unless_the_operator_allows_them(make_app):
    strict = make_app(ALLOWED_SOURCE_NETWORKS="")  # the default: no private range, no loopback
    client = strict.test_client()
    account = client.post("/v4/accounts", json={"name": "Strict"}, headers=OPERATOR_HEADERS).get_json()
    headers = {"Authorization": f"Bearer {account['token']}"}
    for url in ("http://127.0.0.1:9/hook", "https://localhost/hook", "https://[::1]/hook"):
        error = assert_error(client.post("/v4/webhooks", headers=headers, json={"url": url, "events": ["*"]}),
                             422, "invalid_url")
        assert error["details"] == [{"field": "url", "reason": "is on a loopback host, which this service does "
                                                                "not deliver to"}]


def test_endpoints_follow_the_same_network_rules_as_sources(make_app):
    """CONNECT_ALLOWED_SOURCE_NETWORKS is the one rule: what it allows a source to reach, a webhook
    may be sent to; metadata and link-local addresses never."""
    client = make_app(ALLOWED_SOURCE_NETWORKS="10.0.0.0/8,127.0.0.0/8").test_client()
    account = client.post("/v4/accounts", json={"name": "Private"}, headers=OPERATOR_HEADERS).get_json()
    headers = {"Authorization": f"Bearer {account['token']}"}
    for url in ("https://10.1.2.3/hook", "http://127.0.0.1:9/hook", "https://localhost/hook"):
        response = client.post("/v4/webhooks", headers=headers, json={"url": url, "events": ["*"]})
        assert response.status_code == 201, (url, response.get_json())
    for url, reason in (("https://192.168.1.1/hook", "is a private or reserved address"),
                        ("http://10.1.2.3/hook", "must use https"),
                        ("https://169.254.169.254/latest", "is a link-local or cloud metadata address")):
        error = assert_error(client.post("/v4/webhooks", headers=headers, json={"url": url, "events": ["*"]}),
                             422, "invalid_url")
        assert reason in error["details"][0]["reason"], (url, error)


def test_deliveries_connect_through_the_network_policy(make_app, receiver):
    """The URL passed at registration (the webhook flag lets loopback through there), but the
    connection is the policy's: with loopback not allowed, nothing reaches the receiver and the
    delivery fails for good, in the policy's words."""
    app = make_app(ALLOWED_SOURCE_NETWORKS="", WEBHOOK_ALLOW_LOOPBACK=True)
    client = app.test_client()
    account = client.post("/v4/accounts", json={"name": "Pinned"}, headers=OPERATOR_HEADERS).get_json()
    headers = {"Authorization": f"Bearer {account['token']}"}
    response = client.post("/v4/webhooks", headers=headers, json={"url": receiver.url, "events": ["*"]})
    assert response.status_code == 201, response.get_json()
    emit_events(app, account["id"], created(61))
    assert run_deliveries(app) == 1
    delivery = client.get(f"/v4/webhooks/{response.get_json()['id']}/deliveries", headers=headers).get_json()["data"]
    assert [d["status"] for d in delivery] == ["failed"]
    assert delivery[0]["last_error"]["type"] == "url_refused"
    assert "CONNECT_ALLOWED_SOURCE_NETWORKS" in delivery[0]["last_error"]["message"]
    assert receiver.received == []


def test_bad_rotation_update_and_listing_inputs(hooks_app, hooks, account, receiver):
    webhook_id, _ = register(hooks, account, receiver.url)
    cases = [
        ("POST", f"/v4/webhooks/{webhook_id}/rotate-secret", {"overlap_seconds": -1}, 422, "overlap_seconds"),
        ("POST", f"/v4/webhooks/{webhook_id}/rotate-secret", {"overlap_seconds": 8 * 86400}, 422, "overlap_seconds"),
        ("POST", f"/v4/webhooks/{webhook_id}/rotate-secret", {"overlap_seconds": "60"}, 422, "overlap_seconds"),
        ("PUT", f"/v4/webhooks/{webhook_id}", {"url": "http://hooks.example/x"}, 422, "url"),
        ("PUT", f"/v4/webhooks/{webhook_id}", {"events": []}, 422, "events"),
        ("PUT", f"/v4/webhooks/{webhook_id}", {"url": None}, 422, "url"),
        ("GET", f"/v4/webhooks/{webhook_id}/deliveries?limit=0", None, 422, "limit"),
        ("GET", f"/v4/webhooks/{webhook_id}/deliveries?status=lost", None, 422, "status"),
        ("GET", f"/v4/webhooks/{webhook_id}/deliveries?limt=5", None, 422, "limt"),
        ("GET", f"/v4/webhooks/{webhook_id}/deliveries?cursor=nope", None, 400, "cursor"),
    ]
    for method, path, body, status, field in cases:
        before = database_state(hooks_app)
        response = hooks.open(path, method=method, headers=account.headers, json=body)
        assert response.status_code == status, (path, body, response.get_json())
        assert field in {d.get("field") for d in response.get_json()["error"]["details"]}, response.get_json()
        assert database_state(hooks_app) == before


def test_an_account_has_at_most_twenty_webhooks(hooks_app, hooks, account):
    for number in range(20):
        register(hooks, account, f"https://hooks.example/{number}")
    before = database_state(hooks_app)
    assert_error(hooks.post("/v4/webhooks", headers=account.headers,
                            json={"url": "https://hooks.example/21", "events": ["*"]}), 409, "webhook_limit_reached")
    assert database_state(hooks_app) == before


def test_the_operator_token_cannot_manage_webhooks(client, operator):
    assert_error(client.get("/v4/webhooks", headers=operator), 403, "access_denied")


# --- a process killed between the commit and the send --------------------------------------------

PAUSE_MARKER = "CONNECT_TEST_PAUSE_MARKER"
ACCOUNT_ID = "CONNECT_TEST_ACCOUNT_ID"


def _pause() -> None:
    Path(os.environ[PAUSE_MARKER]).write_text(str(os.getpid()))
    time.sleep(300)  # until the test kills this process (the deadline only bounds a lost test)
    os._exit(3)


def emit_then_pause() -> None:
    """A process whose change (here: only its event) commits, and that dies before sending."""
    app = create_app()
    with db.get_db(app).Session() as session, begin_write(session):
        emit(session, int(os.environ[ACCOUNT_ID]), *created(95))
    _pause()


def claim_then_pause() -> None:
    """A sender that claims the due deliveries and dies before its request goes out."""
    app = create_app()
    claimed = claim_due(db.get_db(app).Session, webhooks.get_runtime(app), 10)
    assert claimed, "nothing was due"
    _pause()


def run_killed(entry_point: str, app: Flask, account_id: int, marker: Path) -> None:
    environment = service_environment(app.config["DATABASE_URL"], CONNECT_WEBHOOK_TIMEOUT=str(SENDER_TIMEOUT),
                                      **{PAUSE_MARKER: str(marker), ACCOUNT_ID: str(account_id)})
    process = subprocess.Popen([sys.executable, "-c", f"from tests.test_webhooks import {entry_point}; "
                                f"{entry_point}()"], cwd=ROOT, env=environment)
    try:
        wait_for_file(marker, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        stop(process)


def test_an_event_committed_by_a_process_killed_before_sending_arrives_once(hooks_app, hooks, account, receiver,
                                                                            clock, tmp_path):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    run_killed("emit_then_pause", hooks_app, account.id, tmp_path / "emitted")
    assert only_delivery(hooks, account, webhook_id)["status"] == "pending"
    assert run_deliveries(hooks_app) == 1
    assert run_deliveries(hooks_app) == 0
    [received] = receiver.wait_for(1)
    assert received.verified_by == {"current"} and received.source_id == 95


def test_a_sender_killed_after_claiming_is_replaced_once_its_claim_lapses(hooks_app, hooks, account, receiver,
                                                                        clock, tmp_path):
    webhook_id, secret = register(hooks, account, receiver.url)
    receiver.trust("current", secret)
    emit_events(hooks_app, account.id, created(96))
    run_killed("claim_then_pause", hooks_app, account.id, tmp_path / "claimed")
    assert only_delivery(hooks, account, webhook_id)["status"] == "sending"
    assert run_deliveries(hooks_app) == 0  # the dead sender's claim still holds
    clock.advance(seconds=claim_length(webhooks.get_runtime(hooks_app)).total_seconds() + 1)
    assert run_deliveries(hooks_app) == 1
    assert run_deliveries(hooks_app) == 0
    delivery = only_delivery(hooks, account, webhook_id)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 2)
    assert len(receiver.wait_for(1)) == 1 and receiver.received[0].source_id == 96


def test_an_event_emitted_while_its_endpoint_is_being_deleted_fails_neither(hooks_app, hooks, account, receiver):
    """PostgreSQL: the endpoint's DELETE is open when a change emits an event. The emitter waits for
    it, then finds no endpoint; without waiting it would insert a delivery whose foreign key fails
    once the DELETE commits, and the change that emitted would fail with it."""
    if db.get_db(hooks_app).engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the two cannot overlap")
    from sqlalchemy import delete, text

    from app.webhooks.models import WebhookEndpoint

    webhook_id, _ = register(hooks, account, receiver.url)
    outcome: list[object] = []

    def emitter() -> None:
        try:
            outcome.append(emit_events(hooks_app, account.id, created(97)))
        except Exception as error:  # reported below, in the test's thread
            outcome.append(error)

    with db.get_db(hooks_app).Session() as deleting:
        deleting.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == webhook_id))
        thread = threading.Thread(target=emitter)
        thread.start()
        deadline = time.monotonic() + 30
        with db.get_db(hooks_app).engine.connect() as probe:
            while not probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                assert time.monotonic() < deadline, "the emitter never waited for the DELETE"
                assert thread.is_alive(), outcome
                time.sleep(0.02)
        deleting.commit()
    thread.join(timeout=30)
    assert outcome == [[None]]  # no endpoint any more: nothing to deliver, and no error


def test_an_idle_poll_takes_no_write_lock(hooks_app, hooks, account, receiver):
    """SQLite: a worker polling with nothing due must not queue behind (or hold up) writers."""
    if db.get_db(hooks_app).engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL claims with row locks only")
    import sqlite3

    from sqlalchemy.engine import make_url

    register(hooks, account, receiver.url)
    writer = sqlite3.connect(make_url(hooks_app.config["DATABASE_URL"]).database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        assert run_deliveries(hooks_app) == 0
    finally:
        writer.rollback()
        writer.close()
