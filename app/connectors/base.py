"""The connector interface: how the service reaches a source, whatever kind of source it is.

A report card names its connector kind in ``connector`` (``http``, ``database`` or ``singer``),
with that kind's private section beside it (``auth``/``api`` for ``http``, ``database`` for
``database``, ``singer`` for ``singer``). A card in the older format (an ``auth``/``api`` section
and no ``connector``) means ``http``; a card with neither has no connector: this deployment
cannot check it, and says so in plain words.

The check-and-discover job builds a :class:`SourceTarget` for one configuration of one source,
asks the type's connector to :meth:`Connector.check` and then to :meth:`Connector.discover`,
and saves what comes back. Nothing else in the job knows which kind the connector is. A
connector reports failure by raising :class:`ConnectorFailure`, which says who can fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..catalog.cards import ReportCard

CONNECTOR_KINDS = ("http", "database", "singer")

# Who can make a failed check pass:
#   "user"     — the end user must change something (wrong password, revoked grant): the source
#                becomes ``broken`` and its report card says why;
#   "time"     — trying again later may help (timeouts, 5xx, 429, too many connections): the job is
#                retried with back-off, never sooner than ``retry_after``;
#   "operator" — this deployment cannot check the type as it stands (no connector, a connector
#                not installed, a card that cannot produce a request): the check fails at once.
FixedBy = Literal["user", "time", "operator"]


class ConnectorFailure(Exception):
    """A check, discovery (or later call) that did not succeed.

    ``error_type`` is a stable code (``credentials_rejected``, ``unknown_database``,
    ``source_unreachable``, ``connector_not_installed`` …); ``message`` is for the end user and
    never holds a secret value or a full DSN. ``operator_detail`` may hold more for the operator's
    log (already redacted, bounded in size); it is never shown in an API response.
    ``broken_reason``, for a failure the user must fix, is what the source's ``broken_reason`` (its
    report card's ``setup_error``) becomes when the connector has more to say than ``error`` (the
    token store's reason, e.g. ``after_lost_answer``); by default it is ``error``.
    """

    def __init__(self, error_type: str, message: str, *, fixed_by: FixedBy,
                 retry_after: float | None = None, operator_detail: str | None = None,
                 broken_reason: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.fixed_by = fixed_by
        self.retry_after = retry_after
        self.operator_detail = operator_detail
        self.broken_reason = broken_reason

    @property
    def error(self) -> dict[str, str]:
        """What a connection check's ``error`` shows."""
        return {"type": self.error_type, "message": self.message}


@dataclass(frozen=True)
class SourceTarget:
    """One configuration of one source, as a connector sees it for one call.

    ``properties`` holds every provided property with credentials opened: built for the call,
    kept in memory only, never logged (every opened value is known to app.redaction).
    """

    source_id: int
    account_id: int
    name: str
    config_generation: int
    card: ReportCard
    properties: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DiscoveredStream:
    """One stream as discovery found it: a Singer catalog entry (``metadata`` as Singer's list of
    ``{"breadcrumb": [...], "metadata": {...}}``, with ``inclusion``, ``selected-by-default``,
    ``table-key-properties``, ``valid-replication-keys`` …)."""

    tap_stream_id: str
    stream_name: str
    schema: Mapping[str, Any]
    metadata: tuple[Mapping[str, Any], ...]
    # The catalog entry's other keys as the connector found them (a Singer tap's ``table_name``,
    # ``replication_method``, ``is_view`` …): a tap expects them back in the catalog it is given.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    """Whether this deployment can configure a type end to end, and if not, why (plain words)."""

    configurable: bool
    reason: str | None = None


class Connector(Protocol):
    """What every connector kind provides."""

    kind: str

    def availability(self, card: ReportCard) -> Availability:
        """Whether sources of this type can be checked and discovered here (e.g. a tap installed)."""
        ...

    def check(self, target: SourceTarget) -> None:
        """Prove the source's configuration works, or raise :class:`ConnectorFailure`."""
        ...

    def discover(self, target: SourceTarget) -> list[DiscoveredStream]:
        """The source's streams (called after a passed :meth:`check` of the same target)."""
        ...


# --- using a configured source: execute's list and get (app/execute/) ------------------------------

@dataclass(frozen=True)
class RecordQuery:
    """One ``list`` or ``get`` of one discovered stream, as a connector sees it.

    ``fields`` are the fields the user selected, key fields first: a connector may fetch only
    those (the database connector selects only those columns); the caller removes any other.
    ``position`` is where the previous page ended, in the connector's own terms (the execute
    service signs it into an opaque cursor and verifies it before it comes back here).
    """

    tap_stream_id: str
    stream_name: str
    stream_metadata: Mapping[str, Any]
    key_properties: tuple[str, ...]
    fields: tuple[str, ...]
    # Fields a keyless stream's pages can be ordered by (no JSON objects or arrays: PostgreSQL has
    # no ordering for json); empty: all of ``fields``.
    sortable: tuple[str, ...] = ()
    limit: int = 1
    position: Mapping[str, Any] | None = None
    key: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RecordPage:
    records: list[dict[str, Any]]
    next_position: Mapping[str, Any] | None = None


@runtime_checkable
class ReadsRecords(Protocol):
    """A connector that can read a configured source's records on demand."""

    def list_records(self, target: SourceTarget, query: RecordQuery) -> RecordPage:
        ...

    def get_record(self, target: SourceTarget, query: RecordQuery) -> dict[str, Any] | None:
        """The record whose key is ``query.key``, or None when there is none."""
        ...
