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
  webhooks last said (the ``webhook_source_states`` row, locked, so two transactions on one
  source cannot both announce the same move) → ``source.step_changed``,
  ``source.fully_configured``, ``source.setup_state_changed``.

Doing it at commit rather than at each ``record_event`` call means the derived state is read after
everything the use case changed (its ORM changes flushed), whatever order it wrote in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from ..catalog import Catalog
from ..models import table_of
from ..webhooks.models import WebhookSourceState
from ..webhooks.outbox import emit
from .facts import facts_for
from .presenter import setup_state
from .queries import SourceView, view_of
from .steps import SourceFacts, derive_step

_NOTED = "connect.lifecycle"
_STATES = table_of(WebhookSourceState)


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


def watch(make_session: sessionmaker[Session], catalog: Callable[[], Catalog]) -> None:
    """Announce what each transaction of ``make_session`` noted, just before it commits."""
    event.listen(make_session, "before_commit", lambda session: announce(session, catalog()))
    event.listen(make_session, "after_soft_rollback",
                 lambda session, _previous: session.info.pop(_NOTED, None))


def announce(session: Session, catalog: Catalog) -> None:
    noted: dict[int, list[tuple[str, dict[str, Any]]]] | None = session.info.pop(_NOTED, None)
    if not noted:
        return
    session.flush()  # the use case's ORM changes, so the derived state below sees them
    for source_id, happened in noted.items():
        source = view_of(session, source_id)
        if source is not None:
            _announce_source(session, catalog, source, happened)


def _announce_source(session: Session, catalog: Catalog, source: SourceView,
                     happened: list[tuple[str, dict[str, Any]]]) -> None:
    for type_, detail in happened:
        if type_ in _TRANSLATIONS:
            webhook_type, data_of = _TRANSLATIONS[type_]
            emit(session, source.account_id, webhook_type, data_of(detail, source), source.id)
    if source.deleted_at is not None:
        return
    card = catalog.get(source.type)
    step = derive_step(card, facts_for(session, [source], catalog)[source.id]).type if card else None
    state = setup_state(source, card)
    created_now = any(type_ == "created" for type_, _ in happened)
    start = derive_step(card, SourceFacts()).type if card and created_now else step
    before = _locked_state(session, source.id, start, "incomplete" if created_now else state)
    if step != before.step_type:
        emit(session, source.account_id, "source.step_changed", {"from": before.step_type, "to": step}, source.id)
        if step == "fully_configured":
            emit(session, source.account_id, "source.fully_configured", {}, source.id)
    if state != before.setup_state:
        emit(session, source.account_id, "source.setup_state_changed", {
            "from": before.setup_state, "to": state,
            "reason": source.broken_reason if state == "broken" else None}, source.id)
    if (step, state) != (before.step_type, before.setup_state):
        session.execute(update(_STATES).where(_STATES.c.source_id == source.id).values(
            step_type=step, setup_state=state))


def _locked_state(session: Session, source_id: int, step: str | None, state: str) -> Any:
    """What the webhooks last said about the source, locked; a source without a row yet starts
    from ``step`` and ``state`` (where a new source starts, or for one older than this table,
    where it stands now: there is no earlier announcement to compare with)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(_STATES).values(source_id=source_id, step_type=step, setup_state=state)
                    .on_conflict_do_nothing(index_elements=["source_id"]))
    return session.execute(select(_STATES).where(_STATES.c.source_id == source_id).with_for_update()).one()
