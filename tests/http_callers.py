"""The body of a caller process in tests/test_concurrency_pg.py and tests/test_crash_safety.py.

Started with multiprocessing's ``spawn`` context, so it imports only ``requests``: a process is
ready in a fraction of a second and shares nothing with the test process but the server it calls.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests

BARRIER_TIMEOUT = 120
REQUEST_TIMEOUT = 120


def one_request(http: requests.Session, base_url: str, job: dict[str, Any]) -> dict[str, Any]:
    response = http.request(job["method"], base_url + job["path"], headers=job.get("headers"),
                            json=job.get("json"), timeout=REQUEST_TIMEOUT)
    return {"status": response.status_code, "body": response.json(), "headers": dict(response.headers),
            "attempts": 1}


def increment(http: requests.Session, base_url: str, job: dict[str, Any]) -> dict[str, Any]:
    """Read field_001, write it + 1 with If-Match; on 409 read again and retry (optimistic locking)."""
    url = base_url + job["path"]
    conflicts = 0
    while True:
        read = http.get(url, headers=job["headers"], timeout=REQUEST_TIMEOUT)
        value = int(read.json()["properties"].get("field_001", "0"))
        written = http.put(url, timeout=REQUEST_TIMEOUT, json={"properties": {"field_001": str(value + 1)}},
                           headers={**job["headers"], "If-Match": read.headers["ETag"]})
        if written.status_code != 409:
            return {"status": written.status_code, "body": written.json(), "headers": dict(written.headers),
                    "attempts": conflicts + 1}
        assert written.json()["error"]["type"] == "stale_version", written.text
        conflicts += 1


KINDS = {"one_request": one_request, "increment": increment}


def run_callers(base_url: str, jobs: list[dict[str, Any]], barrier: Any, results: Any) -> None:
    """A caller process: one thread per job, all released by the barrier shared by every process."""

    def call(job: dict[str, Any]) -> None:
        with requests.Session() as http:
            try:
                barrier.wait(BARRIER_TIMEOUT)
                outcome = KINDS[job["kind"]](http, base_url, job)
                results.put({"index": job["index"], "pid": os.getpid(), **outcome})
            except Exception as error:  # reported to the test, which fails on it
                results.put({"index": job["index"], "pid": os.getpid(), "error": repr(error)})

    threads = [threading.Thread(target=call, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT + REQUEST_TIMEOUT * 2)
