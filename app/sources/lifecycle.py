"""What an account's webhooks hear about a source's life, decided in one place.

:func:`~app.sources.events.record_event` is the one way to say something happened to a source;
it notes each event on the session (:func:`note`). Just before that transaction commits,
:func:`announce` (installed on the service's sessionmaker by :func:`watch`, from ``create_app``)
turns what was noted into webhook events, through the outbox (app/webhooks/outbox.py), on the same
connection: they commit with the change or not at all.

Two kinds of event come out:

* one per audit event that integrators hear about (:data:`_TRANSLATIONS`): ``created`` →
  ``source.created``, a finished check → ``connection_check.completed``, and so on;
* the *derived* ones: the source's step and setup state are derived from facts (never stored), so
  the step machine's position and the setup state after the change are compared with what the
  webhooks last said (``announced_step`` and ``announced_state`` on the source's row, which the
  writer holds locked, so two transactions on one source cannot both announce the same move) →
  ``source.step_changed``, ``source.fully_configured``, ``source.setup_state_changed``. A
  transaction that noted only events of :data:`_FACTLESS` (an execute or proxy call's audit
  event, say) changed nothing either derives from, and skips the comparison.

Doing it at commit rather than at each ``record_event`` call means the derived state is read after
everything the use case changed (its ORM changes flushed), whatever order it wrote in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import bindparam, event, update
from sqlalchemy.orm import Session, sessionmaker

from ..catalog import Catalog
from ..models import Source, table_of
from ..webhooks.outbox import emit
from .facts import facts_for
from .presenter import setup_state
from .queries import SourceView, announced_view
from .steps import SourceFacts, derive_step

_NOTED = "connect.lifecycle"
_SETTLED = "connect.lifecycle.settled"
_SOURCES = table_of(Source)
_SET_ANNOUNCED = update(_SOURCES).where(_SOURCES.c.id == bindparam("source_id_"))

# Audit events of use cases that change no fact the step or the setup state derives from (they
# write their event and nothing else); a new event type is compared unless it is listed here.
_FACTLESS = frozenset({"source_executed", "source_proxied", "source_exported", "oauth_failed"})


def _check_completed(detail: Mapping[str, Any], status: str) -> dict[str, Any]:
    return {"check_id": detail.get("check_id"), "status": status, "error": detail.get("error")}


# audit event type → (webhook event type, its data from the audit detail and the source)
_TRANSLATIONS: Mapping[str, tuple[str, Callable[[Mapping[str, Any], SourceView], dict[str, Any]]]] = {
    "created": ("source.created", lambda _detail, source: {"source_type": source.type, "name": source.name}),
    "deleted": ("source.deleted", lambda _detail, _source: {}),
    "oauth_completed": ("oauth.completed", lambda _detail, source: {"source_type": source.type}),
    "refresh_failed": ("token.refresh_failed", lambda detail, _source: {
        "error": detail.get("error"), "transient": not detail.get("permanent", False)}),
    "check_succeeded": ("connection_check.completed", lambda detail, _source: _check_completed(detail, "succeeded")),
    "check_failed": ("connection_check.completed", lambda detail, _source: _check_completed(detail, "failed")),
}


def note(session: Session, source_id: int, type_: str, detail: Mapping[str, Any]) -> None:
    """Remember, until this transaction commits, that ``type_`` happened to the source."""
    session.info.setdefault(_NOTED, {}).setdefault(source_id, []).append((type_, dict(detail)))


def settled(session: Session, source: SourceView) -> None:
    """Say that ``source`` is exactly how this transaction leaves the source's row and credentials,
    so :func:`announce` need not read it again. Only a writer that wrote every change itself, and
    writes nothing more to the source after this call, may say it (the create and update use
    cases of app/sources/writes.py, at their end)."""
    session.info.setdefault(_SETTLED, {})[source.id] = source


def watch(make_session: sessionmaker[Session], catalog: Callable[[], Catalog]) -> None:
    """Announce what each transaction of ``make_session`` noted, just before it commits."""
    event.listen(make_session, "before_commit", lambda session: announce(session, catalog()))
    event.listen(make_session, "after_soft_rollback", lambda session, _previous: _forget(session))


def _forget(session: Session) -> None:
    session.info.pop(_NOTED, None)
    session.info.pop(_SETTLED, None)


def announce(session: Session, catalog: Catalog) -> None:
    noted: dict[int, list[tuple[str, dict[str, Any]]]] | None = session.info.pop(_NOTED, None)
    known: dict[int, SourceView] = session.info.pop(_SETTLED, None) or {}
    if not noted:
        return
    # A source whose events are all audit-only (factless, and no webhook event of their own) is
    # left out: nothing to say or compare, so not even a read.
    telling = {source_id: happened for source_id, happened in noted.items()
               if any(type_ not in _FACTLESS or type_ in _TRANSLATIONS for type_, _ in happened)}
    if not telling:
        return
    session.flush()  # the use case's ORM changes, so the derived state below sees them
    for source_id, happened in telling.items():
        source = known.get(source_id) or announced_view(session, source_id)
        if source is not None:
            _announce_source(session, catalog, source, happened)


def _announce_source(session: Session, catalog: Catalog, source: SourceView,
                     happened: list[tuple[str, dict[str, Any]]]) -> None:
    for type_, detail in happened:
        if type_ in _TRANSLATIONS:
            webhook_type, data_of = _TRANSLATIONS[type_]
            emit(session, source.account_id, webhook_type, data_of(detail, source), source.id)
    if source.deleted_at is not None or all(type_ in _FACTLESS for type_, _ in happened):
        return  # deleted, or what happened (an event integrators hear of) moves neither
    card = catalog.get(source.type)
    step = derive_step(card, facts_for(session, [source], catalog)[source.id]).type if card else None
    state = setup_state(source, card)
    before_step, before_state = source.announced_step, source.announced_state
    if any(type_ == "created" for type_, _ in happened):
        before_step, before_state = (derive_step(card, SourceFacts()).type if card else None), "incomplete"
    elif before_state is None:
        # Nothing announced yet (a source older than announcements): no earlier word to compare
        # with, so where it stands now is where the webhooks start from.
        before_step, before_state = step, state
    if step != before_step:
        emit(session, source.account_id, "source.step_changed", {"from": before_step, "to": step}, source.id)
        if step == "fully_configured":
            emit(session, source.account_id, "source.fully_configured", {}, source.id)
    if state != before_state:
        emit(session, source.account_id, "source.setup_state_changed", {
            "from": before_state, "to": state,
            "reason": source.broken_reason if state == "broken" else None}, source.id)
    if (step, state) != (source.announced_step, source.announced_state):
        session.connection().execute(_SET_ANNOUNCED, {"source_id_": source.id, "announced_step": step,
                                                      "announced_state": state})
