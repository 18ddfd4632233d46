"""Run the service (or a worker) in a subprocess of its own, for tests that need a real server
process: several gunicorn workers (tests/test_concurrency_pg.py), or one to SIGKILL
(tests/test_crash_safety.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import requests

from .conftest import OPERATOR_TOKEN, TEST_KEYS, TESTS

ROOT = TESTS.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_environment(database_url: str, *card_folders: Path, **extra: str) -> dict[str, str]:
    """The CONNECT_* settings of the test apps (conftest.base_config), as a process environment."""
    return {
        **os.environ,
        "CONNECT_DATABASE_URL": database_url,
        "CONNECT_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "CONNECT_ENCRYPTION_KEYS": TEST_KEYS,
        "CONNECT_REPORT_CARDS": os.pathsep.join(
            [str(ROOT / "report_cards"), str(TESTS / "report_cards"), *map(str, card_folders)]),
        "CONNECT_LOG_LEVEL": "WARNING",
        "CONNECT_RATE_LIMIT": "",
        "CONNECT_EMBEDDED_WORKER": "0",
        "CONNECT_ALLOWED_SOURCE_NETWORKS": "127.0.0.0/8,::1/128",
        **extra,
    }


def wait_until_healthy(base_url: str, process: subprocess.Popen, deadline: float = 90.0) -> None:
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before it answered")
        try:
            if requests.get(base_url + "/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or its workers are still starting
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer /health within {deadline:g} s")


def wait_for_file(path: Path, process: subprocess.Popen, deadline: float = 60.0) -> None:
    stop_at = time.monotonic() + deadline
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} before {path.name} appeared")
        if time.monotonic() > stop_at:
            raise AssertionError(f"{path.name} did not appear within {deadline:g} s")
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
