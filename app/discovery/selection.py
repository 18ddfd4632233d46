"""Stream selection facts for the step machine."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session


def sources_with_selected_streams(session: Session, source_ids: Sequence[int]) -> set[int]:
    from .models import Stream

    if not source_ids:
        return set()
    return set(session.scalars(select(Stream.source_id).where(
        Stream.source_id.in_(source_ids), Stream.selected.is_(True)).distinct()))
