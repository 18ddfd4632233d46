"""The Source object of API.md, built from a source row, its type's card and its facts, and the
blank report card of a type.

:func:`source_json` serialises a source the way the routes send it. A source's report card is the
type's card with ``provided`` flags and the source's position, so it depends only on the card and
the facts: it is serialised once per (card, facts) and reused (``setup_error``, when the source is
broken, is added per source). A type's blank card (``GET /v4/source-types/{type}``) never changes,
so it is serialised once per card (:func:`blank_card_json`).

A source whose type has no card (the operator removed it, app/sources/availability.py) is shown
with an *unavailable* report card: ``{"type", "current_step": null, "current_step_type": null,
"steps": [], "unavailable": true, "setup_error": {"type": "type_unavailable", "message"}}``, and
``setup_state`` ``broken``: the source cannot work until the card is back.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from ..catalog.cards import ReportCard
from ..catalog.frozen import thaw
from .availability import unavailable_reason
from .queries import AnySource
from .schedule import schedule_of
from .steps import SourceFacts, derive_step

# As Flask's jsonify sends it (compact, ASCII), in the key order of API.md.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def blank_card_json(card: ReportCard) -> bytes:
    """Where a new source of the type starts: the card's steps, its position and its details."""
    position = derive_step(card, SourceFacts())
    return json.dumps({
        "type": card.type,
        "current_step": position.number,
        "current_step_type": position.type,
        "steps": card.public_steps(),
        "details": thaw(card.details),
        "upgrade_available": thaw(card.upgrade_available),
        **card.handshake_summary(),
    }, separators=(",", ":")).encode()


def setup_state(source: AnySource, card: ReportCard | None) -> str:
    if source.broken_at is not None or card is None:
        return "broken"
    return "connected" if source.connected_at is not None else "incomplete"


@lru_cache(maxsize=4096)
def _report_card_json(card: ReportCard, facts: SourceFacts) -> str:
    position = derive_step(card, facts)
    return _dumps({
        "type": card.type,
        "current_step": position.number,
        "current_step_type": position.type,
        "steps": card.public_steps(facts.provided),
    })


def _card_facts(card: ReportCard, facts: SourceFacts) -> SourceFacts:
    # Names the card does not know change nothing in its report card: leave them out of the key.
    provided = facts.provided
    if not provided <= card.properties.keys():
        provided = frozenset(name for name in provided if name in card.properties)
    return facts if provided is facts.provided else SourceFacts(
        provided, facts.discovery_succeeded, facts.stream_selected)


@lru_cache(maxsize=256)
def _unavailable_card_json(source_type: str) -> str:
    return _dumps({"type": source_type, "current_step": None, "current_step_type": None, "steps": [],
                   "unavailable": True, "setup_error": unavailable_reason(source_type)})


def report_card_json(card: ReportCard | None, source: AnySource, facts: SourceFacts) -> str:
    """The source's report card as JSON text: the type's card with ``provided`` flags and the
    source's position, plus ``setup_error`` when the source is broken (or the unavailable card
    when the type has none)."""
    if card is None:
        return _unavailable_card_json(source.type)
    text = _report_card_json(card, _card_facts(card, facts))
    if source.broken_at is not None:
        text = f'{text[:-1]},"setup_error":{_dumps(source.broken_reason)}}}'
    return text


def source_json(source: AnySource, card: ReportCard | None, facts: SourceFacts) -> str:
    """The Source object as JSON text, its keys in the order of API.md."""
    head = _dumps({
        "id": source.id,
        "name": source.name,
        "display_name": source.display_name,
        "type": source.type,
        "properties": {k: v for k, v in source.properties.items() if v is not None},
    })
    tail = _dumps({
        "schedule": None if card is None else schedule_of(
            card, source.properties, source.paused_at is not None, source.deleted_at is not None),
        # Stitch's name for the owning account ("client"): the account id.
        "stitch_client_id": source.account_id,
        "setup_state": setup_state(source, card),
        "created_at": timestamp(source.created_at),
        "updated_at": timestamp(source.updated_at),
        "paused_at": timestamp(source.paused_at),
        "system_paused_at": timestamp(source.system_paused_at),
        "deleted_at": timestamp(source.deleted_at),
    })
    return f'{head[:-1]},"report_card":{report_card_json(card, source, facts)},{tail[1:]}'


def etag(source: AnySource) -> str:
    return f'"{source.id}.{source.version}"'
