"""The events a webhook can subscribe to, and the fields of each one's ``data``.

One home for the shape of every event: :func:`app.webhooks.outbox.emit` refuses an event whose
``data`` does not have exactly the fields named here, so a payload cannot grow a field (a
credential, say) without this file, the README and the tests changing with it. ``source_id`` is
added by ``emit`` itself. Every value is something the integrator already sees in the API: ids,
type and step names, states, error types and messages (which never hold a secret value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALL_EVENTS = "*"  # in an endpoint's ``events``: every type, including types added later


@dataclass(frozen=True)
class EventType:
    name: str
    fields: frozenset[str]  # data fields besides source_id, each always present (null allowed)
    needs_source: bool = True
    description: str = ""


_TYPES = (
    EventType("source.created", frozenset({"source_type", "name"}),
              description="A source was created."),
    EventType("source.step_changed", frozenset({"from", "to"}),
              description="The source's current step changed (step types, e.g. form → discover_schema)."),
    EventType("source.setup_state_changed", frozenset({"from", "to", "reason"}),
              description="setup_state changed (to connected or broken); reason says why it broke, "
                          "else null."),
    EventType("source.fully_configured", frozenset(),
              description="The source reached its last step, fully_configured."),
    EventType("source.deleted", frozenset(), description="The source was deleted."),
    EventType("oauth.completed", frozenset({"source_type"}), needs_source=False,
              description="An OAuth handshake finished: for a reconnect, with its source_id; for a "
                          "source not created yet, with source_id null when the secret_id goes to the "
                          "redirect_url, and again with the source_id when a source takes it."),
    EventType("token.refresh_failed", frozenset({"error", "transient"}),
              description="Refreshing the source's access token failed; transient says whether it "
                          "will be retried without the user."),
    EventType("connection_check.completed", frozenset({"check_id", "status", "error"}),
              description="A connection check (and discovery) finished: status succeeded or failed."),
)

EVENT_TYPES: Mapping[str, EventType] = {event.name: event for event in _TYPES}


def event_data(event_type: str, data: Mapping[str, Any], source_id: int | None) -> dict[str, Any]:
    """The ``data`` of an event as sent: ``source_id`` first, then the given fields. Raises
    ``ValueError`` for an unknown type or fields other than the type's (a programming error)."""
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if set(data) != kind.fields:
        raise ValueError(f"{event_type}: data must have exactly {sorted(kind.fields)}, got {sorted(data)}")
    if kind.needs_source and source_id is None:
        raise ValueError(f"{event_type} is about a source: give source_id")
    return {"source_id": source_id, **data}


def subscribed(events: list[str], event_type: str) -> bool:
    return ALL_EVENTS in events or event_type in events
