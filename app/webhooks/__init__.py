"""Signed webhooks (Standard Webhooks): endpoints per account, an outbox, deliveries with retries.

- routes.py · schemas.py · service.py: ``/v4/webhooks`` — endpoints, their one-time secrets and
  rotation, deliveries and redelivery.
- outbox.py: :func:`~app.webhooks.outbox.emit`, called by the code where something happens to a
  source, inside that change's transaction.
- delivery.py: :func:`~app.webhooks.delivery.run_deliveries`, called by a worker: sends what is
  due, signed, outside any transaction, and records the outcome.
- events.py (the event types and their data), signing.py, schedule.py, urls.py: pure rules.

``create_app`` calls :func:`init_app`, which keeps the collaborators of the delivery code in
``app.extensions``: the clock (``now`` for scheduling, rotation overlaps and give-up; tests pass a
clock they move), the HTTP session factory every delivery is sent through (the seam for the
network policy that vets and pins each outbound connection), and the URL rule endpoints are held to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import requests
from flask import Flask, current_app

from ..models import utcnow
from .urls import Address
from .urls import url_problem as default_url_problem

EXTENSION_KEY = "connect.webhooks"

Clock = Callable[[], datetime]
HttpSessionFactory = Callable[[], requests.Session]
UrlRule = Callable[[str], "str | None"]
AddressRule = Callable[[Address, int], bool]


@dataclass(frozen=True)
class WebhookRuntime:
    clock: Clock
    http_session: HttpSessionFactory
    url_problem: UrlRule
    address_allowed: AddressRule | None
    # What http_session raises for a connection the network policy refuses (a name that resolved
    # to a refused address): the delivery fails for good, in the policy's words.
    refused_errors: tuple[type[Exception], ...]
    timeout: float
    retry_window: timedelta
    retention: timedelta


def init_app(app: Flask, *, clock: Clock | None = None, http_session: HttpSessionFactory | None = None,
             url_problem: UrlRule | None = None, address_allowed: AddressRule | None = None,
             refused_errors: tuple[type[Exception], ...] | None = None) -> WebhookRuntime:
    """Keep the webhooks' collaborators for ``app``. Calling it again replaces those given and keeps
    the others (a test swapping the clock keeps the network policy ``create_app`` installed).

    ``create_app`` passes the network policy's pinned session as ``http_session`` and its verdict on
    an address as ``address_allowed``: endpoints follow the same rules as every other outbound
    connection (a private or loopback address only when ``CONNECT_ALLOWED_SOURCE_NETWORKS`` allows
    it; metadata and link-local never; a name judged on the address it resolves to when sending)."""
    previous: WebhookRuntime | None = app.extensions.get(EXTENSION_KEY)
    if address_allowed is None and previous is not None:
        address_allowed = previous.address_allowed
    runtime = WebhookRuntime(
        clock=clock or (previous.clock if previous else utcnow),
        http_session=http_session or (previous.http_session if previous else requests.Session),
        refused_errors=refused_errors if refused_errors is not None else (previous.refused_errors if previous else ()),
        url_problem=url_problem or partial(default_url_problem,
                                           allow_loopback=bool(app.config.get("WEBHOOK_ALLOW_LOOPBACK")),
                                           address_allowed=address_allowed),
        address_allowed=address_allowed,
        timeout=float(app.config.get("WEBHOOK_TIMEOUT") or 10.0),
        retry_window=timedelta(hours=float(app.config.get("WEBHOOK_RETRY_HOURS") or 24.0)),
        retention=timedelta(days=int(app.config.get("WEBHOOK_RETENTION_DAYS") or 30)),
    )
    app.extensions[EXTENSION_KEY] = runtime
    return runtime


def get_runtime(app: Flask | None = None) -> WebhookRuntime:
    runtime: WebhookRuntime = (app or current_app).extensions[EXTENSION_KEY]
    return runtime
