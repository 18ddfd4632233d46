"""The pure rules of app/webhooks: URLs an endpoint may have, the retry schedule, the event
contract, and signatures as the standardwebhooks library verifies them. No app, no database."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.webhooks.events import EVENT_TYPES, event_data, subscribed
from app.webhooks.schedule import LONGEST_DELAY, next_attempt_at, retry_delay
from app.webhooks.signing import new_secret, signed_headers
from app.webhooks.urls import url_problem

ACCEPTED = [
    "https://hooks.example.com/connect",
    "https://hooks.example.com:8443/connect?token=abc",
    "https://8.8.8.8/hook",
    "https://[2001:4860:4860::8888]/hook",
]
REFUSED = [
    ("http://hooks.example.com/connect", "must use https"),
    ("ftp://hooks.example.com/x", "must be an https URL"),
    ("hooks.example.com/x", "must be an https URL"),
    ("https://user:pw@hooks.example.com/x", "user information"),
    ("https://hooks.example.com@evil.example/x", "user information"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("https://hooks.example.com/a b", "whitespace"),
    ("https://hooks.example.com\\@evil.example/", "backslash"),
    ("https://hooks.example.com:99999/", "not a valid URL"),
    ("https:///x", "no host"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fd00:ec2::254]/", "metadata"),
    ("https://100.100.100.200/", "metadata"),
    ("https://[::ffff:169.254.169.254]/", "metadata"),
    ("https://metadata.google.internal/computeMetadata/v1/", "metadata service"),
    ("https://10.0.0.8/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://172.16.0.1/", "private"),
    ("https://100.64.0.1/", "private"),
    ("https://0.0.0.0/", "private"),
    ("https://224.0.0.1/", "private"),
    ("https://127.1/", "dotted-decimal"),
    ("https://2130706433/", "dotted-decimal"),
    ("https://127.0.0.1/", "loopback"),
    ("https://localhost/", "loopback"),
    ("https://api.localhost/", "loopback"),
    ("https://[::1]/", "loopback"),
    ("https://" + "a" * 2100 + ".example/", "longer than"),
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_public_https_urls_are_accepted(url):
    assert url_problem(url) is None


@pytest.mark.parametrize("url, reason", REFUSED, ids=[url[:60] for url, _ in REFUSED])
def test_urls_refused_and_why(url, reason):
    problem = url_problem(url)
    assert problem is not None and reason in problem, problem


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://localhost/hook", "http://[::1]:9/x"])
def test_loopback_and_http_on_it_only_when_the_operator_allows(url):
    assert "loopback" in (url_problem(url) or "")
    assert url_problem(url, allow_loopback=True) is None


def test_allowing_loopback_allows_nothing_else():
    assert url_problem("http://hooks.example.com/", allow_loopback=True) is not None
    assert url_problem("https://10.0.0.1/", allow_loopback=True) is not None
    assert url_problem("http://169.254.169.254/", allow_loopback=True) is not None


# --- the retry schedule --------------------------------------------------------------------------


def test_the_delay_grows_fourfold_from_ten_seconds_up_to_six_hours_with_jitter():
    middle = [retry_delay(n, rng=lambda: 0.5).total_seconds() for n in range(1, 10)]
    assert middle == [10, 40, 160, 640, 2560, 10240, 21600, 21600, 21600]
    assert retry_delay(1, rng=lambda: 0.0) == timedelta(seconds=7.5)
    assert retry_delay(1, rng=lambda: 1.0) == timedelta(seconds=12.5)
    assert retry_delay(10_000, rng=lambda: 1.0) == LONGEST_DELAY * 1.25  # no overflow, however long


def test_the_next_attempt_is_cut_to_the_end_of_the_window_and_none_after_it():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    give_up = now + timedelta(minutes=1)
    assert next_attempt_at(now, 1, give_up, rng=lambda: 0.5) == now + timedelta(seconds=10)
    assert next_attempt_at(now, 8, give_up, rng=lambda: 0.5) == give_up
    assert next_attempt_at(give_up, 1, give_up) is None
    assert next_attempt_at(now, 1, now + timedelta(hours=1), retry_after=120,
                           rng=lambda: 0.5) == now + timedelta(seconds=120)


# --- the event contract --------------------------------------------------------------------------


def test_every_event_of_the_issue_exists():
    assert set(EVENT_TYPES) == {
        "source.created", "source.step_changed", "source.setup_state_changed", "source.fully_configured",
        "source.deleted", "oauth.completed", "token.refresh_failed", "connection_check.completed"}


def test_event_data_must_have_exactly_the_documented_fields():
    assert event_data("source.step_changed", {"from": "form", "to": "oauth"}, 4) == {
        "source_id": 4, "from": "form", "to": "oauth"}
    assert event_data("oauth.completed", {"source_type": "platform.hubspot"}, None)["source_id"] is None
    with pytest.raises(ValueError, match="unknown"):
        event_data("source.exploded", {}, 1)
    with pytest.raises(ValueError, match="exactly"):
        event_data("source.deleted", {"client_secret": "oops"}, 1)
    with pytest.raises(ValueError, match="source_id"):
        event_data("source.deleted", {}, None)


def test_star_subscribes_to_every_type():
    assert subscribed(["*"], "token.refresh_failed")
    assert subscribed(["source.created"], "source.created")
    assert not subscribed(["source.created"], "source.deleted")


# --- signatures ----------------------------------------------------------------------------------


def test_a_secret_is_whsec_and_32_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signatures_verify_with_the_standardwebhooks_library_for_each_secret():
    old, new, stranger = new_secret(), new_secret(), new_secret()
    body = '{"type":"source.created","timestamp":"2026-01-01T00:00:00Z","data":{"source_id":1}}'
    headers = signed_headers([new, old], "msg_1", datetime.now(UTC), body)
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"] == {"source_id": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("1}", "2}"), headers)  # another body
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-id": "msg_2"})  # another id


def test_a_stale_timestamp_does_not_verify():
    secret = new_secret()
    headers = signed_headers([secret], "msg_1", datetime.now(UTC) - timedelta(minutes=10), "{}")
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify("{}", headers)
