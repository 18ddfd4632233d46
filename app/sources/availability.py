"""Sources whose type has no report card: the operator removed the card from the catalog folder.

Such a source is *unavailable*, not lost: its rows stay as they were and it comes back whole when
the card returns. Until then it stays readable and listed (its report card says the type is
unavailable and the source is ``broken`` with a ``setup_error`` of type ``type_unavailable``), and
it can be deleted; nothing that needs the card (an update, a check, discovery, a field selection)
can run, and each says so with a 422 naming ``type``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..catalog import Catalog
from ..errors import Invalid
from ..models import Source

TYPE_UNAVAILABLE = "type_unavailable"

log = logging.getLogger("connect.sources")


def _explanation(source_type: str) -> str:
    return (f"source type {source_type!r} is not in this service's catalog (its report card was "
            "removed): the source can be read and deleted, not changed or checked, until the "
            "operator restores the card")


def unavailable_reason(source_type: str) -> dict[str, Any]:
    """The ``setup_error`` of a source whose type has no card."""
    return {"type": TYPE_UNAVAILABLE, "message": _explanation(source_type).capitalize() + "."}


def type_unavailable(source_type: str) -> Invalid:
    """The 422 for a change or a check of a source whose type has no card."""
    return Invalid(_explanation(source_type), type=TYPE_UNAVAILABLE,
                   details=[{"field": "type", "reason": "not in this service's catalog"}])


def sources_without_card(session_factory: sessionmaker[Session], catalog: Catalog) -> dict[str, int]:
    """Live sources by type, for the types the catalog does not have: one grouped COUNT."""
    query = select(Source.type, func.count()).where(Source.deleted_at.is_(None)).group_by(Source.type)
    with session_factory() as session, session.begin():
        rows = session.execute(query).all()
    return {source_type: count for source_type, count in rows if source_type not in catalog}


def log_sources_without_card(session_factory: sessionmaker[Session], catalog: Catalog) -> None:
    """At start-up: say how many sources the loaded catalog leaves without a card (a warning, so an
    operator who removed a card by mistake sees it). A database not migrated yet (``flask connect
    init`` builds the app before it migrates) has no sources to count."""
    try:
        missing = sources_without_card(session_factory, catalog)
    except SQLAlchemyError as error:
        log.info("sources without a report card not counted", extra={"error": type(error).__name__})
        return
    if missing:
        log.warning("sources whose type has no report card", extra={
            "sources": sum(missing.values()), "by_type": dict(sorted(missing.items()))})
