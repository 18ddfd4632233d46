"""A webhook receiver, as an integrator would write one: every delivery is verified with the
``standardwebhooks`` library (signature and timestamp), and one that does not verify is refused
with 401. It can fail on demand: answer 500, answer too late for the sender (``timeout``), answer
slowly but in time (``slow``), or redirect.

It holds any number of named secrets and verifies each delivery against each on its own, so a
test sees which secrets a delivery was signed with (during a rotation's overlap: the old and the
new one). A fault can be limited to the deliveries of one source.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Flask, Response, request
from standardwebhooks import Webhook, WebhookVerificationError

HOOK_PATH = "/hook"
DEADLINE = 30.0  # the longest a test waits for deliveries to arrive


class ReceiverFault(StrEnum):
    SERVER_ERROR = "server_error"  # 500 with a short body
    TIMEOUT = "timeout"  # answers 200 only after ``delay`` (longer than the sender waits)
    SLOW = "slow"  # answers normally after ``delay`` (shorter than the sender waits)
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After: ``delay`` seconds
    REDIRECT = "redirect"  # 302 to another path of this receiver


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    message_id: str | None
    timestamp: str | None
    signatures: int  # how many v1 signatures the header carried
    verified_by: frozenset[str]  # names of the secrets whose signature matched
    payload: dict[str, Any] | None
    answered: int

    @property
    def source_id(self) -> int | None:
        return ((self.payload or {}).get("data") or {}).get("source_id")

    @property
    def type(self) -> str | None:
        return (self.payload or {}).get("type")


@dataclass
class _Fault:
    mode: ReceiverFault
    remaining: int | None
    delay: float
    source_id: int | None


class WebhookReceiver:
    def __init__(self) -> None:
        self.url = ""  # set by whoever serves it: base URL + HOOK_PATH
        self.lock = threading.Lock()
        self.secrets: dict[str, str] = {}
        self.received: list[Received] = []
        self._faults: deque[_Fault] = deque()

    def trust(self, name: str, secret: str) -> None:
        with self.lock:
            self.secrets[name] = secret

    def forget(self, name: str) -> None:
        with self.lock:
            self.secrets.pop(name, None)

    def fail_next(self, mode: ReceiverFault | str, count: int | None = 1, *, delay: float = 0.0,
                  source_id: int | None = None) -> None:
        """Misbehave for the next ``count`` deliveries (``None``: until :meth:`clear_faults`),
        only those about ``source_id`` when it is given."""
        with self.lock:
            self._faults.append(_Fault(ReceiverFault(mode), count, delay, source_id))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _take_fault(self, source_id: int | None) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.source_id is None or fault.source_id == source_id:
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def verified_by(self, body: str, headers: dict[str, str]) -> frozenset[str]:
        with self.lock:
            secrets = dict(self.secrets)
        names = set()
        for name, secret in secrets.items():
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            names.add(name)
        return frozenset(names)

    def wait_for(self, count: int, deadline: float = DEADLINE) -> list[Received]:
        stop_at = time.monotonic() + deadline
        while True:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            if time.monotonic() > stop_at:
                raise AssertionError(f"{count} deliveries expected, {len(self.received)} arrived")
            time.sleep(0.02)

    def of_source(self, source_id: int) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.source_id == source_id]

    def record(self, received: Received) -> None:
        with self.lock:
            self.received.append(received)


def _answer(fault: _Fault | None, verified: bool) -> Response:
    if fault is not None and fault.mode in (ReceiverFault.TIMEOUT, ReceiverFault.SLOW):
        time.sleep(fault.delay)
    if fault is not None and fault.mode is ReceiverFault.SERVER_ERROR:
        return Response("receiver exploded", status=500, mimetype="text/plain")
    if fault is not None and fault.mode is ReceiverFault.RATE_LIMITED:
        return Response("slow down", status=429, headers={"Retry-After": str(int(fault.delay))})
    if fault is not None and fault.mode is ReceiverFault.REDIRECT:
        return Response("", status=302, headers={"Location": "/elsewhere"})
    if not verified:
        return Response("signature does not verify", status=401, mimetype="text/plain")
    return Response("ok", status=200, mimetype="text/plain")


def create_webhook_receiver(receiver: WebhookReceiver | None = None) -> Flask:
    app = Flask("tests.servers.webhook_receiver")
    state = receiver or WebhookReceiver()
    app.extensions["webhook_receiver"] = state

    @app.post(HOOK_PATH)
    @app.post("/elsewhere")
    def hook() -> Response:
        body = request.get_data(as_text=True)
        headers = {name.lower(): value for name, value in request.headers.items()}
        verified = state.verified_by(body, headers)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        source_id = ((payload or {}).get("data") or {}).get("source_id") if isinstance(payload, dict) else None
        fault = state._take_fault(source_id)
        response = _answer(fault, bool(verified))
        state.record(Received(headers.get("webhook-id"), headers.get("webhook-timestamp"),
                              len(headers.get("webhook-signature", "").split()), verified,
                              payload if isinstance(payload, dict) else None, response.status_code))
        return response

    return app


def get_receiver(app: Flask) -> WebhookReceiver:
    return app.extensions["webhook_receiver"]

