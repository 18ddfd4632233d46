"""The facts the step machine needs about sources, read in one pass for a page of sources.

Only what can change a source's step is read. Credential names come with the source: a
:class:`~app.sources.queries.SourceView` carries them, an ORM ``Source`` has them when its
``credentials`` are loaded (one query for all the others, names only). Streams are looked at only
for sources that stand at a ``field_selection`` step (every earlier step complete), since that is the
only step whose completion depends on a selected stream. So for most sources no query runs at all;
when one must, it runs in the session's transaction, or in one of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..discovery.models import Stream
from ..models import SourceCredential
from .queries import AnySource, SourceView
from .steps import SourceFacts, derive_step


def provided_names(source: AnySource, credential_names: frozenset[str] | None = None) -> frozenset[str]:
    """The source's provided properties: plain values that are not null, and its credentials
    (``credential_names``, when the caller has them already)."""
    if credential_names is None:
        credential_names = source.credential_names if isinstance(source, SourceView) else \
            frozenset(credential.name for credential in source.credentials)
    return frozenset({name for name, value in source.properties.items() if value is not None}
                     | credential_names)


def _transaction(session: Session) -> AbstractContextManager[object]:
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


def _with_selected_streams(session: Session, source_ids: Sequence[int]) -> set[int]:
    with _transaction(session):
        return set(session.scalars(select(Stream.source_id).where(
            Stream.source_id.in_(source_ids), Stream.selected.is_(True)).distinct()))


def facts_for(session: Session, sources: Sequence[AnySource], catalog: Catalog) -> dict[int, SourceFacts]:
    credentials = _credential_names(session, sources)
    facts: dict[int, SourceFacts] = {}
    at_field_selection: list[int] = []
    for source in sources:
        found = SourceFacts(provided=provided_names(source, credentials[source.id]),
                            discovery_succeeded=source.discovered_generation == source.config_generation)
        card = catalog.get(source.type)
        if card is not None and derive_step(card, found).type == "field_selection":
            at_field_selection.append(source.id)
        facts[source.id] = found
    if at_field_selection:
        for source_id in _with_selected_streams(session, at_field_selection):
            old = facts[source_id]
            facts[source_id] = SourceFacts(old.provided, old.discovery_succeeded, stream_selected=True)
    return facts
