"""A source's ``schedule``, as Stitch's Source object shows it, derived from its properties.

Stitch's precedence: a ``cron_expression`` wins; else ``frequency_in_minutes``; else the type's
``details.default_scheduling_interval``. ``schedule`` is null while the source is paused or
deleted, and for types that have no scheduling properties (webhooks, Import API). This service
runs no replication itself, so ``next_fire_time`` is always null: the pipeline that reads the
schedule decides when it fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalog.cards import ReportCard

SCHEDULING_PROPERTIES = ("cron_expression", "frequency_in_minutes")


def _minutes(value: Any) -> float | None:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        return None
    return minutes if minutes > 0 else None


def schedule_of(card: ReportCard, properties: Mapping[str, Any], paused: bool, deleted: bool) -> dict[str, Any] | None:
    """The Schedule object of a source with these (non-credential) properties, or None."""
    if paused or deleted or not any(name in card.properties for name in SCHEDULING_PROPERTIES):
        return None
    cron = properties.get("cron_expression")
    if isinstance(cron, str) and cron.strip():
        return {"type": "cron", "cron_expression": cron.strip(), "next_fire_time": None}
    minutes = _minutes(properties.get("frequency_in_minutes"))
    if minutes is None:
        minutes = _minutes(card.details.get("default_scheduling_interval"))
    if minutes is None:
        return None
    return {"type": "interval", "unit": "minute", "interval": minutes, "next_fire_time": None}
