"""The facts the step machine needs about sources, read in one pass for a page of sources.

Only what can change a source's step is read. Credential names come with the source: a
:class:`~app.sources.service.SourceView` carries them, an ORM ``Source`` has them when its
``credentials`` are loaded (one query for all the others, names only). Streams are looked at only
for sources that stand at a ``field_selection`` step (every earlier step complete), since that is the
only step whose completion depends on a selected stream. So for most sources no query runs at all;
when one must, it runs in the session's transaction, or in one of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from ..catalog import Catalog, get_catalog
from ..models import Source, SourceCredential
from .service import SourceView
from .steps import SourceFacts, derive_step

AnySource = Source | SourceView


def provided_names(source: AnySource) -> frozenset[str]:
    values = {name for name, value in source.properties.items() if value is not None}
    if isinstance(source, SourceView):
        return frozenset(values | source.credential_names)
    return frozenset(values | {credential.name for credential in source.credentials})


def _transaction(session: Session):  # type: ignore[no-untyped-def]
    return nullcontext() if session.in_transaction() else session.begin()


def _credential_names(session: Session, sources: Sequence[AnySource]) -> dict[int, frozenset[str]]:
    """Credential names by source id: carried or loaded, else one query (names, no ciphertexts)."""
    names: dict[int, frozenset[str]] = {}
    missing: dict[int, set[str]] = {}
    for source in sources:
        if isinstance(source, SourceView):
            names[source.id] = source.credential_names
        elif "credentials" in inspect(source).unloaded:
            missing[source.id] = set()
        else:
            names[source.id] = frozenset(credential.name for credential in source.credentials)
    if missing:
        with _transaction(session):
            rows = session.execute(select(SourceCredential.source_id, SourceCredential.name)
                                   .where(SourceCredential.source_id.in_(list(missing))))
            for source_id, name in rows:
                missing[source_id].add(name)
        names.update((source_id, frozenset(found)) for source_id, found in missing.items())
    return names


def facts_for(session: Session, sources: Sequence[AnySource],
              catalog: Catalog | None = None) -> dict[int, SourceFacts]:
    from ..discovery.selection import sources_with_selected_streams

    catalog = catalog if catalog is not None else get_catalog()
    credentials = _credential_names(session, sources)
    facts: dict[int, SourceFacts] = {}
    at_field_selection: list[int] = []
    for source in sources:
        provided = frozenset(
            {name for name, value in source.properties.items() if value is not None}
            | credentials[source.id])
        found = SourceFacts(provided=provided,
                            discovery_succeeded=source.discovered_generation == source.config_generation)
        card = catalog.get(source.type)
        if card is not None and derive_step(card, found).type == "field_selection":
            at_field_selection.append(source.id)
        facts[source.id] = found
    if at_field_selection:
        with _transaction(session):
            selected = sources_with_selected_streams(session, at_field_selection)
        for source_id in selected:
            old = facts[source_id]
            facts[source_id] = SourceFacts(old.provided, old.discovery_succeeded, stream_selected=True)
    return facts
