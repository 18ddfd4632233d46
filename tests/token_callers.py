"""The body of a process in the concurrency proof (tests/test_token_store.py).

Started with multiprocessing's ``spawn`` context, so it shares nothing with the test process but
the database and the test servers: it builds its own app from the config it is given.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from app.connectors.models import ACCESS_TOKEN
from app.connectors.tokens import TokenSettings, TokenStore

BARRIER_TIMEOUT = 120


def call_concurrently(store: TokenStore, threads: int, barrier: Any, results: Any) -> list[threading.Thread]:
    """Start ``threads`` callers that each find the token stale, wait until every caller in every
    process has, then ask for a token; each puts (pid, found_stale, token, error) on ``results``."""

    def caller() -> None:
        try:
            found_stale = store.cached_token(ACCESS_TOKEN) is None
            barrier.wait(BARRIER_TIMEOUT)
            results.put((os.getpid(), found_stale, store.refresh_if_stale(ACCESS_TOKEN), None))
        except Exception as error:  # reported to the test, which fails on it
            results.put((os.getpid(), False, None, repr(error)))

    started = [threading.Thread(target=caller, name=f"caller-{i}") for i in range(threads)]
    for thread in started:
        thread.start()
    return started


def run_callers(config: dict[str, Any], source_id: int, threads: int, barrier: Any, results: Any) -> None:
    from app import create_app
    from app.catalog import get_catalog
    from app.crypto import get_keyring
    from app.db import get_db
    from app.models import Source

    app = create_app(config)
    with app.app_context(), get_db().Session() as session:
        card = get_catalog().get(session.get(Source, source_id).type)
        store = TokenStore(get_db().Session, get_keyring(), card, source_id, TokenSettings.from_config(app.config))
        for thread in call_concurrently(store, threads, barrier, results):
            thread.join(BARRIER_TIMEOUT + 60)
    get_db(app).dispose()
