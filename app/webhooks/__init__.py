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
from .urls import url_problem as default_url_problem

EXTENSION_KEY = "connect.webhooks"

Clock = Callable[[], datetime]
HttpSessionFactory = Callable[[], requests.Session]
UrlRule = Callable[[str], "str | None"]


@dataclass(frozen=True)
class WebhookRuntime:
    clock: Clock
    http_session: HttpSessionFactory
    url_problem: UrlRule
    timeout: float
    retry_window: timedelta
    retention: timedelta


def init_app(app: Flask, *, clock: Clock | None = None, http_session: HttpSessionFactory | None = None,
             url_problem: UrlRule | None = None) -> WebhookRuntime:
    """Keep the webhooks' collaborators for ``app`` (calling it again replaces them)."""
    runtime = WebhookRuntime(
        clock=clock or utcnow,
        http_session=http_session or requests.Session,
        url_problem=url_problem or partial(default_url_problem,
                                           allow_loopback=bool(app.config.get("WEBHOOK_ALLOW_LOOPBACK"))),
        timeout=float(app.config.get("WEBHOOK_TIMEOUT") or 10.0),
        retry_window=timedelta(hours=float(app.config.get("WEBHOOK_RETRY_HOURS") or 24.0)),
        retention=timedelta(days=int(app.config.get("WEBHOOK_RETENTION_DAYS") or 30)),
    )
    app.extensions[EXTENSION_KEY] = runtime
    return runtime


def get_runtime(app: Flask | None = None) -> WebhookRuntime:
    runtime: WebhookRuntime = (app or current_app).extensions[EXTENSION_KEY]
    return runtime
