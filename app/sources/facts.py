"""The facts the step machine needs about sources, read in one pass for a page of sources."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from ..models import Source
from .steps import SourceFacts


def provided_names(source: Source) -> frozenset[str]:
    values = {name for name, value in source.properties.items() if value is not None}
    return frozenset(values | {credential.name for credential in source.credentials})


def facts_for(session: Session, sources: Sequence[Source]) -> dict[int, SourceFacts]:
    from ..discovery.selection import sources_with_selected_streams

    selected = sources_with_selected_streams(session, [s.id for s in sources])
    return {
        source.id: SourceFacts(
            provided=provided_names(source),
            discovery_succeeded=source.discovered_generation == source.config_generation,
            stream_selected=source.id in selected,
        )
        for source in sources
    }
