"""The Singer connector against a fake tap (tests/taps/fake_tap): a real process, installed by uv
through the operator's code path, that speaks the protocol and misbehaves on request.

Each failure mode ends as a :class:`ConnectorFailure` saying who can fix it; none escapes as
another exception, and no secret reaches a message, an operator detail or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from app.catalog.singer_section import parse_spec
from app.connectors.base import ConnectorFailure, DiscoveredStream
from app.connectors.singer.connector import SingerConnector
from app.connectors.singer.environments import TapEnvironments
from app.connectors.singer.runner import RunLimits, TapMissing, run_tap
from app.discovery.handoff import StoredStream, selected_catalog
from app.redaction import MASK

from .servers.planted import new_secret
from .singer_support import (  # noqa: F401  (fixtures)
    FAKE_TYPE,
    Changes,
    connector,
    fake_card,
    fake_tap_installed,
    taps,
    target,
)


def failure_of(call, *args) -> ConnectorFailure:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectorFailure) as caught:
        call(*args)
    return caught.value


def runs(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def gone(pid: int, deadline_seconds: float = 10.0) -> bool:
    """Whether the process has ended (or is only a zombie waiting for init) before the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


# --- the happy path ------------------------------------------------------------------------------

def test_check_then_discover_runs_the_tap_once_and_keeps_its_metadata(taps: TapEnvironments, tmp_path: Path) -> None:
    card = fake_card()
    runs_file = tmp_path / "runs"
    source = target(card, {"username": "ada", "password": "pw", "runs_file": str(runs_file)})
    singer = connector(taps)

    assert singer.availability(card).configurable
    singer.check(source)
    streams = singer.discover(source)

    assert [line.split(" ", 1)[1] for line in runs(runs_file)] == ["--discover"]
    assert [s.tap_stream_id for s in streams] == ["contacts", "deals"]
    assert all(isinstance(s, DiscoveredStream) for s in streams)
    contacts = streams[0]
    assert contacts.schema["properties"]["email"] == {"type": "string"}
    stream_level = next(m for m in contacts.metadata if m["breadcrumb"] == [])
    assert stream_level["metadata"]["valid-replication-keys"] == ["updatedAt"]
    assert {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}} in contacts.metadata
    # A second discovery of the same configuration (a re-discovery) runs the tap again.
    singer.discover(source)
    assert len(runs(runs_file)) == 2


def test_a_tap_that_declares_test_is_checked_with_test(taps: TapEnvironments, tmp_path: Path) -> None:
    card = fake_card(capabilities=["discover", "test"])
    runs_file = tmp_path / "runs"
    singer = connector(taps)
    wrong = target(card, {"username": "ada", "password": "wrong-password-1", "expected_password": "right",
                          "runs_file": str(runs_file)})
    failure = failure_of(singer.check, wrong)
    assert (failure.error_type, failure.fixed_by) == ("credentials_rejected", "user")
    assert "401" not in failure.message  # the user gets words; the operator gets the tail
    assert "401 Client Error" in failure.operator_detail

    right = target(card, {"username": "ada", "password": "right", "expected_password": "right",
                          "runs_file": str(runs_file)})
    singer.check(right)
    assert [s.tap_stream_id for s in singer.discover(right)] == ["contacts", "deals"]
    assert [line.split(" ", 1)[1] for line in runs(runs_file)] == ["--test", "--test", "--discover"]


def test_properties_become_the_config_under_the_cards_mapping(taps: TapEnvironments) -> None:
    card = fake_card(config={"drop": ["frequency_in_minutes"], "rename": {"username": "user"},
                             "fixed": {"user_agent": "connect"}, "types": {"port": "integer"}})
    source = target(card, {"mode": "report", "username": "ada", "password": "pw", "frequency_in_minutes": "60",
                           "port": "5432"})
    report = next(s for s in connector(taps).discover(source) if s.tap_stream_id == "report")
    facts = json.loads(report.schema["description"])
    assert facts["config_mode"] == "0o600" and facts["directory_mode"] == "0o700"
    assert facts["cwd"] == facts["home"] == os.path.dirname(facts["config_path"])
    assert not os.path.exists(facts["config_path"]) and not os.path.exists(facts["cwd"])


def test_the_tap_inherits_no_setting_and_no_secret_of_the_service(taps: TapEnvironments,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_ENCRYPTION_KEYS", new_secret("env-key"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", new_secret("env-aws"))
    source = target(fake_card(), {"mode": "report", "username": "ada", "password": "pw"})
    report = next(s for s in connector(taps).discover(source) if s.tap_stream_id == "report")
    environment = json.loads(report.schema["description"])["environment"]
    assert set(environment) <= {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONUNBUFFERED", "LC_CTYPE"}


def test_the_hand_off_catalog_with_selections_is_accepted_by_the_tap(taps: TapEnvironments) -> None:
    card = fake_card()
    properties = {"username": "ada", "password": "pw"}
    streams = connector(taps).discover(target(card, properties))
    stored = [StoredStream(s.tap_stream_id, s.stream_name, s.schema, [dict(m) for m in s.metadata], {})
              for s in streams]
    stored[0] = StoredStream(**{**stored[0].__dict__, "selections": {
        "[]": {"selected": True, "replication-method": "INCREMENTAL", "replication-key": "updatedAt"},
        '["properties","email"]': {"selected": False}, '["properties","updatedAt"]': {"selected": True}}})
    handed = selected_catalog(stored)

    run = run_tap(taps.installed(FAKE_TYPE).executable, ["--catalog", "{dir}/catalog.json"], properties,
                  RunLimits(timeout=20), files={"catalog.json": handed})
    messages = [json.loads(line) for line in run.stdout.decode().splitlines()]
    records = [m for m in messages if m["type"] == "RECORD"]
    assert run.succeeded
    assert records == [{"type": "RECORD", "stream": "contacts", "record": {"id": "id-1", "updatedAt": "updatedAt-1"}}]
    assert handed["streams"][0]["replication_key"] == "updatedAt"


# --- failure modes -------------------------------------------------------------------------------

def test_a_tap_that_hangs_is_killed_at_the_timeout_with_its_children(taps: TapEnvironments, tmp_path: Path) -> None:
    runs_file = tmp_path / "runs"
    source = target(fake_card(), {"mode": "hang", "username": "ada", "password": "pw", "runs_file": str(runs_file)})
    failure = failure_of(connector(taps, timeout=1.5).check, source)
    assert (failure.error_type, failure.fixed_by) == ("tap_timeout", "time")
    pid = int(runs(runs_file)[0].split()[0])
    assert gone(pid)


def test_a_child_left_holding_the_pipes_does_not_keep_the_run_going(taps: TapEnvironments) -> None:
    source = target(fake_card(), {"mode": "hang_child", "username": "ada", "password": "pw"})
    # The tap exits at once; its child would hold stdout for an hour. Past the 30 s timeout this
    # would be a tap_timeout failure, not a catalog.
    streams = connector(taps, timeout=30).discover(source)
    assert [s.tap_stream_id for s in streams] == ["contacts", "deals"]


def test_a_tap_that_floods_stdout_is_cut_off_at_the_cap(taps: TapEnvironments) -> None:
    tap = taps.installed(FAKE_TYPE)
    run = run_tap(tap.executable, ["--discover"], {"mode": "flood", "flood_mb": 200},
                  RunLimits(timeout=60, max_output_bytes=2 * 1024 * 1024))
    assert run.output_capped and not run.succeeded and run.returncode is None
    assert len(run.stdout) == 2 * 1024 * 1024

    source = target(fake_card(), {"mode": "flood", "username": "ada", "password": "pw"})
    failure = failure_of(connector(taps, max_output_bytes=1024 * 1024).check, source)
    assert (failure.error_type, failure.fixed_by) == ("tap_output_too_large", "operator")


def test_a_password_in_stderr_is_redacted_everywhere(taps: TapEnvironments, caplog: pytest.LogCaptureFixture) -> None:
    password = new_secret("tap-password")
    source = target(fake_card(), {"mode": "fail_with_password", "username": "ada", "password": password})
    failure = failure_of(connector(taps).check, source)
    logging.getLogger("connect.singer").error("check failed", extra={"detail": failure.operator_detail})

    assert (failure.error_type, failure.fixed_by) == ("tap_failed", "time")
    for text in (failure.message, failure.operator_detail, str(failure), json.dumps(failure.error), caplog.text):
        assert password not in text
    assert "RuntimeError: login with" in failure.operator_detail and MASK in failure.operator_detail


@pytest.mark.parametrize("mode, reason", [("malformed", "not JSON"), ("not_a_catalog", "no \"streams\" list")])
def test_output_that_is_not_a_catalog_is_a_clear_failure(taps: TapEnvironments, mode: str, reason: str) -> None:
    source = target(fake_card(), {"mode": mode, "username": "ada", "password": "pw"})
    failure = failure_of(connector(taps).check, source)
    assert (failure.error_type, failure.fixed_by) == ("tap_invalid_output", "operator")
    assert reason in failure.operator_detail


@pytest.mark.parametrize("message, error_type, fixed_by", [
    ("psycopg2.OperationalError: FATAL:  password authentication failed for user \"ada\"",
     "credentials_rejected", "user"),
    ("requests.exceptions.HTTPError: 403 Client Error: Forbidden for url", "credentials_rejected", "user"),
    ("singer: 429 Too Many Requests, retry after 30 seconds", "source_rate_limited", "time"),
    ("requests.exceptions.HTTPError: 503 Server Error: Service Unavailable", "source_unavailable", "time"),
    ("requests.exceptions.ConnectionError: [Errno 111] Connection refused", "source_unreachable", "time"),
    ("MemoryError", "tap_out_of_memory", "operator"),
    ("KeyError: 'results'", "tap_failed", "time"),
])
def test_failures_are_classified_from_the_last_telling_line(taps: TapEnvironments, message: str, error_type: str,
                                                             fixed_by: str) -> None:
    source = target(fake_card(), {"mode": "stderr_message", "message": message, "username": "a", "password": "p"})
    failure = failure_of(connector(taps).check, source)
    assert (failure.error_type, failure.fixed_by) == (error_type, fixed_by)
    if error_type == "source_rate_limited":
        assert failure.retry_after == 30


def test_a_tap_over_its_memory_limit_fails_for_the_operator(taps: TapEnvironments) -> None:
    source = target(fake_card(), {"mode": "allocate", "allocate_mb": 1024, "username": "a", "password": "p"})
    failure = failure_of(connector(taps, max_memory_bytes=256 * 1024 * 1024).check, source)
    assert (failure.error_type, failure.fixed_by) == ("tap_out_of_memory", "operator")
    # Without the limit the same tap succeeds: the limit made the difference.
    connector(taps, max_memory_bytes=None).check(source)


def test_a_rotated_refresh_token_is_handed_on_after_success_and_failure(taps: TapEnvironments) -> None:
    card = fake_card(config={"rename": {"username": "user"}})
    for mode in ("rotate", "rotate_and_fail"):
        new_token = new_secret("rotated-refresh")
        changes = Changes()
        source = target(card, {"mode": mode, "username": "ada", "password": "pw",
                               "refresh_token": new_secret("old-refresh"), "new_refresh_token": new_token})
        singer = connector(taps, changes=changes)
        if mode == "rotate":
            singer.check(source)
        else:
            failure = failure_of(singer.check, source)
            assert (failure.error_type, failure.fixed_by) == ("source_unavailable", "time")
        [change] = changes
        assert change.properties == {"refresh_token": new_token}
        assert (change.source_id, change.config_generation) == (source.source_id, 1)
        assert new_token not in repr(change)


def test_a_type_whose_tap_is_not_installed_names_the_command(taps: TapEnvironments) -> None:
    card = fake_card("test.singer-not-installed")
    availability = connector(taps).availability(card)
    assert not availability.configurable
    assert "flask connect taps install test.singer-not-installed" in availability.reason
    failure = failure_of(connector(taps).check, target(card, {"username": "a", "password": "p"}))
    assert (failure.error_type, failure.fixed_by) == ("connector_not_installed", "operator")
    assert "flask connect taps install test.singer-not-installed" in failure.message


def test_a_tap_removed_between_install_and_run_is_not_installed(tmp_path: Path) -> None:
    environments = TapEnvironments(tmp_path / "taps")
    card = fake_card("test.singer-removed")
    tap = environments.install(card.type, parse_spec(card.singer))
    singer = connector(environments)
    assert singer.availability(card).configurable
    source = target(card, {"username": "a", "password": "p"})

    os.remove(tap.executable)  # the environment broken under the service's feet
    assert failure_of(singer.check, source).error_type == "connector_not_installed"
    with pytest.raises(TapMissing):
        run_tap(tap.executable, ["--discover"], {}, RunLimits())
    shutil.rmtree(tap.environment)
    assert failure_of(singer.discover, source).error_type == "connector_not_installed"
    assert environments.remove(card.type) and not environments.remove(card.type)


def test_a_value_the_tap_needs_typed_that_does_not_convert_is_the_users(taps: TapEnvironments) -> None:
    card = fake_card(config={"types": {"username": "integer"}})
    failure = failure_of(connector(taps).check, target(card, {"username": "not a number", "password": "p"}))
    assert (failure.error_type, failure.fixed_by) == ("invalid_configuration", "user")
    assert "username" in failure.message and "not a number" not in failure.message


def test_a_cards_bad_singer_section_is_the_operators(taps: TapEnvironments) -> None:
    card = fake_card(executable="no spaces allowed")
    assert not connector(taps).availability(card).configurable
    assert failure_of(connector(taps).check, target(card, {})).fixed_by == "operator"


def test_not_installable_taps_are_not_configurable(taps: TapEnvironments) -> None:
    card = fake_card(FAKE_TYPE, installable=False, not_installable_reason="needs Python 2")
    availability = connector(taps).availability(card)
    assert not availability.configurable and "needs Python 2" in availability.reason


def test_an_address_the_network_rules_refuse_never_reaches_the_tap(taps: TapEnvironments, tmp_path: Path) -> None:
    runs_file = tmp_path / "runs"
    card = fake_card(network={"hosts": ["username"], "urls": ["mode"]})
    asked: list[str] = []

    def check_address(host: str) -> str | None:
        asked.append(host)
        return "a cloud metadata address" if host == "169.254.169.254" else None

    singer = SingerConnector(taps, RunLimits(timeout=20), check_address=check_address)
    refused = target(card, {"username": "169.254.169.254:80", "password": "p", "runs_file": str(runs_file)})
    failure = failure_of(singer.check, refused)
    assert (failure.error_type, failure.fixed_by) == ("address_not_allowed", "user")
    assert "'username'" in failure.message and not runs(runs_file)

    singer.check(target(card, {"username": "db.example", "mode": "ok", "password": "p"}))
    assert asked == ["169.254.169.254", "db.example", "ok"]
