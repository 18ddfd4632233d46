"""The Source object of API.md, built from a source row, its type's card and its facts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..catalog.cards import ReportCard
from ..models import Source
from .steps import SourceFacts, derive_step


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def setup_state(source: Source) -> str:
    if source.broken_at is not None:
        return "broken"
    return "connected" if source.connected_at is not None else "incomplete"


def report_card(card: ReportCard, source: Source, facts: SourceFacts) -> dict[str, Any]:
    position = derive_step(card, facts)
    body: dict[str, Any] = {
        "type": card.type,
        "current_step": position.number,
        "current_step_type": position.type,
        "steps": card.public_steps(facts.provided),
    }
    if source.broken_at is not None:
        body["setup_error"] = source.broken_reason
    return body


def source_body(source: Source, card: ReportCard, facts: SourceFacts) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "display_name": source.display_name,
        "type": source.type,
        "properties": {k: v for k, v in source.properties.items() if v is not None},
        "report_card": report_card(card, source, facts),
        "setup_state": setup_state(source),
        "created_at": timestamp(source.created_at),
        "updated_at": timestamp(source.updated_at),
        "paused_at": timestamp(source.paused_at),
        "system_paused_at": timestamp(source.system_paused_at),
        "deleted_at": timestamp(source.deleted_at),
    }


def etag(source: Source) -> str:
    return f'"{source.id}.{source.version}"'
