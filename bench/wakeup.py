"""Time from the last credential to ``field_selection``, with the embedded worker of ``make run``.

A client creates a source with all its credentials (``POST /v4/sources``); the service queues its
connection check and discovery; the worker runs them against a loopback API (the data API of
tests/servers, the ``test.discovery`` card); the client polls ``GET /v4/sources/{id}`` every 5 ms
until the source stands at ``field_selection``. What used to dominate is the worker's 1 s poll;
workers now wake on the commit that queued the job (app/wakeup.py). The row is measured twice:
woken (as shipped) and polling only (the worker's doorbell disconnected), so the difference is
the wake-up's.

    python -m bench.wakeup [--runs 15] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine

from app.config import DEFAULT_REPORT_CARDS

TARGET_S = 0.2
TYPE = "test.discovery"
TOKEN = "bench-wakeup-token"
TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextmanager
def _service(url: str, keys: str, woken: bool) -> Iterator[tuple[str, dict[str, str], str]]:
    """The service (embedded worker) and the data API on 127.0.0.1; yields (service URL, account
    headers, API URL)."""
    from app import create_app
    from app.db import get_db
    from app.migrations import upgrade
    from app.models import load_all_models
    from app.wakeup import EXTENSION_KEY, Wakeup
    from tests.servers import create_data_api, get_data_api, serve

    load_all_models()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    operator = "op_bench_" + secrets.token_urlsafe(16)
    app = create_app({"DATABASE_URL": url, "OPERATOR_TOKEN": operator, "ENCRYPTION_KEYS": keys,
                      "LOG_LEVEL": "WARNING", "EMBEDDED_WORKER": True,
                      "REPORT_CARDS": f"{DEFAULT_REPORT_CARDS}:{TESTS / 'report_cards'}",
                      "ALLOWED_SOURCE_NETWORKS": "127.0.0.0/8"})
    worker = app.extensions["connect.worker"]
    if not woken:
        worker.wakeup = Wakeup()  # rung by nobody: the worker finds jobs by polling alone
        app.extensions[EXTENSION_KEY] = Wakeup()
    api_app = create_data_api()
    get_data_api(api_app).settings.bearer_token = TOKEN
    try:
        with serve(app) as base, serve(api_app) as api_url:
            account = requests.post(f"{base}/v4/accounts", json={"name": "bench"}, timeout=10,
                                    headers={"Authorization": f"Bearer {operator}"}).json()
            yield base, {"Authorization": f"Bearer {account['token']}"}, api_url
    finally:
        worker.stop()
        get_db(app).dispose()


def _one(base: str, headers: dict[str, str], api_url: str) -> float:
    http = requests.Session()
    started = time.perf_counter()
    created = http.post(f"{base}/v4/sources", headers=headers, timeout=10, json={
        "type": TYPE, "display_name": "Wake " + secrets.token_hex(3),
        "properties": {"api_url": api_url, "api_token": TOKEN}}).json()
    while time.perf_counter() - started < 30:
        body = http.get(f"{base}/v4/sources/{created['id']}", headers=headers, timeout=10).json()
        if body["report_card"]["current_step_type"] == "field_selection":
            return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError("the source did not reach field_selection in 30 s")


def measure_backend(url: str, runs: int) -> dict[str, Any]:
    from app.crypto import generate_key_spec

    keys = generate_key_spec()
    rows: dict[str, Any] = {}
    for label, woken in (("woken", True), ("polling only", False)):
        with _service(url, keys, woken) as (base, headers, api_url):
            _one(base, headers, api_url)  # warm-up: first connections, caches
            times = sorted(_one(base, headers, api_url) for _ in range(runs))
        rows[label] = {"median_s": round(statistics.median(times), 3), "p90_s": round(times[int(0.9 * (runs - 1))], 3),
                       "max_s": round(times[-1], 3)}
    return rows


def measure(backends: list[str], runs: int = 15, admin_url: str | None = None) -> dict[str, Any]:
    from . import seed

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="connect-wakeup-") as tmp:
        for backend in backends:
            if backend == "sqlite":
                database = seed.sqlite_database(Path(tmp))
            else:
                admin = admin_url or seed.postgres_admin_url()
                if seed.postgres_available(admin):
                    continue
                database = seed.postgres_database(admin)
            with database as url:
                results[backend] = measure_backend(url, runs)
    return results


def markdown(results: dict[str, Any], runs: int) -> list[str]:
    lines = [f"## Last credential → field_selection (embedded worker, loopback API, {runs} runs)", "",
             "| db | worker | median s | p90 s | max s | target < 0.2 s |", "|---|---|---:|---:|---:|---|"]
    for backend, rows in results.items():
        for label, row in rows.items():
            met = ("yes" if row["median_s"] < TARGET_S else "**no**") if label == "woken" else "(reference)"
            lines.append(f"| {backend} | {label} | {row['median_s']} | {row['p90_s']} | {row['max_s']} | {met} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    results = measure([b.strip() for b in args.backends.split(",") if b.strip()], args.runs)
    print("\n".join(markdown(results, args.runs)))


if __name__ == "__main__":
    main()
