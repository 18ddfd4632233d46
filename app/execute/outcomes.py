"""What execute and the proxy share: the source they may use, the audit event of every call, and
a connector's failure as the caller hears it.

A source may be used once its current configuration has passed its connection check
(``discovered_generation == config_generation``) and it is not broken; otherwise 409 ``not_ready``
names the step it stands at. A failure of the source's side is 424 (Failed Dependency: the
service worked, the source did not), with the connector's error type; a source that asks to wait
(429, or a 5xx with ``Retry-After``) is 429 ``source_rate_limited`` with ``Retry-After``. None of
them is a 5xx: those are the service's own bugs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..connectors.base import ConnectorFailure, SourceTarget
from ..crypto import Keyring, KeyringError, Sealed
from ..db import begin_write
from ..errors import ApiError, Conflict, Problem
from ..sources.availability import type_unavailable
from ..sources.credentials import opened_properties
from ..sources.events import record_event
from ..sources.facts import facts_for
from ..sources.queries import SourceView, sealed_view
from ..sources.steps import derive_step

SOURCE_DEPENDENCY_FAILED = 424


@dataclass(frozen=True)
class UsableSource:
    """A source execute or the proxy may use: as read, its card, and its credentials still sealed."""

    view: SourceView
    card: ReportCard
    sealed: Mapping[str, Sealed]


def usable_source(session: Session, catalog: Catalog, account_id: int, source_id: int) -> UsableSource:
    """The account's live source and its card, if its configuration passed its check (in the caller's
    read transaction, one query), else 404 / 422 (type gone) / 409 ``not_ready`` naming the step."""
    source, sealed = sealed_view(session, account_id, source_id)
    card = catalog.get(source.type)
    if card is None:
        raise type_unavailable(source.type)
    if source.discovered_generation != source.config_generation or source.broken_at is not None:
        step = derive_step(card, facts_for(session, [source], catalog)[source.id]).type
        why = "it is broken" if source.broken_at is not None else "its configuration has not passed its check"
        raise Conflict(f"source {source_id} cannot be used yet: {why}; it is at step {step}", type="not_ready",
                       details=[Problem("report_card.current_step_type", step).detail()])
    return UsableSource(source, card, sealed)


def target_of(keyring: Keyring, usable: UsableSource) -> SourceTarget:
    source = usable.view
    try:
        properties = opened_properties(keyring, source.id, source.properties, usable.sealed)
    except KeyringError:
        raise Conflict("a stored credential of this source cannot be decrypted: the operator must configure "
                       "its encryption key", type="credentials_unreadable") from None
    return SourceTarget(source_id=source.id, account_id=source.account_id, name=source.name,
                        config_generation=source.config_generation, card=usable.card, properties=properties)


def api_error(failure: ConnectorFailure) -> ApiError:
    """A connector's failure as execute's and the proxy's answer (see the module docstring)."""
    if failure.fixed_by == "time" and failure.retry_after is not None:
        wait = max(1, math.ceil(failure.retry_after))
        return ApiError(f"the source asks to wait {wait} s: {failure.message}", status=429,
                        type="source_rate_limited", headers={"Retry-After": str(wait)})
    return ApiError(failure.message, status=SOURCE_DEPENDENCY_FAILED, type=failure.error_type)


@dataclass
class Audit:
    """The audit event of one call: what was asked (never a body, a header or a parameter value),
    its status and duration. Written after the call, in a transaction of its own."""

    type: str
    detail: dict[str, Any]
    status: int = 200
    started: float = field(default_factory=time.perf_counter)


@contextmanager
def audited(session: Session, source_id: int, audit: Audit) -> Iterator[Audit]:
    """Run the call, then record its event whatever its outcome (an error's status included)."""
    try:
        yield audit
    except ApiError as error:
        audit.status = error.status
        raise
    except Exception:
        audit.status = 500
        raise
    finally:
        detail = {**audit.detail, "status": audit.status,
                  "duration_ms": round((time.perf_counter() - audit.started) * 1000, 1)}
        with begin_write(session):
            record_event(session, _Id(source_id), audit.type, detail)


@dataclass(frozen=True)
class _Id:
    id: int
