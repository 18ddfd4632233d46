"""Stream selection facts. (The streams table arrives with discovery; until then nothing is
selected.)"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session


def sources_with_selected_streams(session: Session, source_ids: Sequence[int]) -> set[int]:
    return set()
