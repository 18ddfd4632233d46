"""Use cases of the hosted connect page: sessions, and each thing the page lets a user do.

Every change to a source goes through the services the API uses (app/sources, app/oauth,
app/discovery) with the session's account, so the page obeys the same rules and leaves the same
audit trail. What this module adds is the session: who it belongs to, which one source it reaches
and until when.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..auth import hash_token
from ..catalog import Catalog
from ..catalog.access import access_denied
from ..catalog.cards import ReportCard
from ..crypto import Keyring
from ..db import affected_rows, begin_write, get_db
from ..discovery import service as discovery
from ..discovery.catalog import merged_metadata
from ..discovery.models import ConnectionCheck, Stream
from ..errors import ApiError, Conflict, Gone, Invalid, NotFound, Problem
from ..models import Account, Source, utcnow
from ..oauth import handshake
from ..oauth.redirect_urls import allowlist_problem, redirect_url_problem, with_query
from ..sources import writes
from ..sources.availability import type_unavailable
from ..sources.facts import facts_for
from ..sources.presenter import setup_state
from ..sources.queries import SourceView, read_source
from ..sources.steps import derive_step
from .forms import FormField, form_fields, property_values
from .models import CANCELLED, COMPLETED, CONNECT_MODE, RECONNECT_MODE, ConnectSession

SESSION_LIFETIME = timedelta(minutes=30)
TOKEN_PREFIX = "cs_"
PAGE_PATH = "/connect/"
OAUTH_RETURN_PATH = "/connect/oauth-return/"
# Sessions are kept this long after they expire (to tell "expired" from "unknown"), then deleted.
RETENTION = timedelta(days=1)


class SessionGone(Gone):
    """An expired or finished session: the page says so with 410, the JSON endpoint in the error shape."""

    type = "session_expired"


def page_url(public_url: str, token: str) -> str:
    return public_url.rstrip("/") + PAGE_PATH + token


def oauth_return_url(public_url: str, session_id: int) -> str:
    return f"{public_url.rstrip('/')}{OAUTH_RETURN_PATH}{session_id}"


# -- creating a session (the integrator's backend) ----------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str
    url: str
    row: ConnectSession


def _invalid(field_name: str, reason: str, type_: str = "invalid_body") -> Invalid:
    return Invalid.from_problems([Problem(field_name, reason)], type=type_)


def _types_asked(catalog: Catalog, body: dict[str, Any]) -> list[str] | None:
    """The types the request allows (None: not said; the source's type decides)."""
    if body.get("source_type") is not None and body.get("allowed_types") is not None:
        raise _invalid("allowed_types", "give source_type or allowed_types, not both")
    if body.get("source_type") is not None:
        asked, names = [body["source_type"]], ["source_type"]
    elif body.get("allowed_types") is not None:
        asked = list(dict.fromkeys(body["allowed_types"]))
        names = [f"allowed_types[{i}]" for i in range(len(asked))]
    else:
        return None
    unknown = [Problem(name, f"unknown source type {value!r}")
               for name, value in zip(names, asked, strict=True) if catalog.get(value) is None]
    if unknown:
        raise Invalid.from_problems(unknown, type="invalid_type")
    for name, value in zip(names, asked, strict=True):
        card = catalog.get(value)
        denied = access_denied(card, catalog.access) if card is not None else None
        if denied is not None:  # the page could never create it: say so to the integrator now
            denied.details = [{**detail, "field": name} for detail in denied.details]
            raise denied
    return asked


def _types_and_mode(session: Session, catalog: Catalog, account_id: int, source_id: int | None,
                    asked: list[str] | None) -> tuple[list[str], str]:
    """The types a session allows and its mode: those asked for a new source, else the type of
    ``source_id`` (which must be one of them, if any were asked), reconnecting a broken one."""
    if source_id is None:
        if asked is None:
            raise _invalid("source_type", "give source_type, allowed_types or source_id")
        return asked, CONNECT_MODE
    source = session.scalars(select(Source).where(
        Source.id == source_id, Source.account_id == account_id, Source.deleted_at.is_(None))).one_or_none()
    if source is None:
        raise NotFound(f"source {source_id} not found",
                       details=[Problem("source_id", "no such source in this account").detail()])
    if source.type not in catalog:
        raise type_unavailable(source.type)
    if asked is not None and source.type not in asked:
        raise _invalid("source_id", f"source {source_id} is of type {source.type!r}, which the "
                       "session does not allow", "invalid_type")
    return [source.type], RECONNECT_MODE if source.broken_at is not None else CONNECT_MODE


def create_session(session: Session, catalog: Catalog, account_id: int, body: dict[str, Any],
                   public_url: str) -> NewSession:
    """A session for one source: a new one of ``source_type``/``allowed_types``, or ``source_id``."""
    asked = _types_asked(catalog, body)
    source_id = body.get("source_id")
    if asked is None and source_id is None:
        raise _invalid("source_type", "give source_type, allowed_types or source_id")
    redirect_url = body["redirect_url"]
    problem = redirect_url_problem(redirect_url)
    if problem:
        raise _invalid("redirect_url", problem, "invalid_redirect_url")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with begin_write(session):
        account = session.get(Account, account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found")
        problem = allowlist_problem(redirect_url, account.redirect_url_allowlist)
        if problem:
            raise _invalid("redirect_url", problem, "invalid_redirect_url")
        asked, mode = _types_and_mode(session, catalog, account_id, source_id, asked)
        display = {k: v for k, v in (body.get("display") or {}).items() if v is not None}
        row = ConnectSession(
            token_hash=hash_token(token), account_id=account_id, allowed_types=asked,
            source_type=asked[0] if len(asked) == 1 else None, source_id=source_id, mode=mode,
            redirect_url=redirect_url, display=display, created_at=now, expires_at=now + SESSION_LIFETIME)
        session.add(row)
    return NewSession(token, page_url(public_url, token), row)


def purge_expired_sessions(app: Flask) -> dict[str, Any]:
    """Delete sessions that expired more than :data:`RETENTION` ago (a periodic job)."""
    with get_db(app).Session() as session, begin_write(session):
        deleted = affected_rows(session.execute(delete(ConnectSession).where(
            ConnectSession.expires_at < utcnow() - RETENTION)))
    return {"connect_sessions": deleted}


# -- the page -----------------------------------------------------------------------------------


def open_session(session: Session, token: str) -> ConnectSession:
    """The live session of ``token``: 404 when unknown, 410 when expired or finished."""
    with session.begin():
        row = session.scalars(select(ConnectSession).where(
            ConnectSession.token_hash == hash_token(token))).one_or_none()
        if row is not None:
            # Detached: a rollback later in the request (a refused form) expires the objects of
            # the session, and reading an expired one would quietly open a transaction.
            session.expunge(row)
    if row is None:
        raise NotFound("no such connect session: ask for a new link")
    if row.finished_at is not None:
        raise SessionGone("this connect session has ended: ask for a new link")
    if row.expires_at <= utcnow():
        raise SessionGone("this connect session expired: ask for a new link")
    return row


@dataclass
class PageState:
    """What the page shows: the step of the session's source (or the type choice before it exists)."""

    row: ConnectSession
    card: ReportCard | None
    source: Source | None = None
    step: str = "choose_type"
    setup_state: str | None = None
    setup_error: dict | None = None
    check: ConnectionCheck | None = None
    streams: list[dict[str, Any]] = field(default_factory=list)
    fields: list[FormField] = field(default_factory=list)
    provided: frozenset[str] = frozenset()

    @property
    def reconnect(self) -> bool:
        """Broken, and no check of new credentials under way (which would clear it on success)."""
        checking = self.check is not None and self.check.status in ("queued", "running")
        return self.setup_state == "broken" and not checking


def bound_source(session: Session, row: ConnectSession) -> Source | None:
    if row.source_id is None:
        return None
    with session.begin():
        # Fresh from the database: the page reads it again after its own changes in the request.
        source = session.get(Source, row.source_id, populate_existing=True)
    if source is None or source.deleted_at is not None:
        raise SessionGone("the source of this connect session was deleted: ask for a new link")
    return source


def page_state(session: Session, catalog: Catalog, row: ConnectSession) -> PageState:
    source = bound_source(session, row)
    source_type = source.type if source is not None else row.source_type
    card = catalog.get(source_type) if source_type is not None else None
    if card is None:
        return PageState(row, None)
    state = PageState(row, card, source, fields=form_fields(card))
    if source is None:
        state.step = card.steps[0].type
        return state
    with session.begin():
        facts = facts_for(session, [source], catalog)[source.id]
        state.check = session.scalars(select(ConnectionCheck).where(ConnectionCheck.source_id == source.id)
                                      .order_by(ConnectionCheck.id.desc()).limit(1)).first()
        streams = list(session.scalars(select(Stream).where(Stream.source_id == source.id).order_by(Stream.id)))
    state.provided = facts.provided
    state.step = derive_step(card, facts).type
    state.setup_state = setup_state(source, card)
    state.setup_error = source.broken_reason
    state.streams = [_stream_view(s) for s in streams]
    return state


def _stream_view(stream: Stream) -> dict[str, Any]:
    metadata = merged_metadata(stream.discovered_metadata, stream.selections)
    top = next(e["metadata"] for e in metadata if e["breadcrumb"] == [])
    fields = [{"name": e["breadcrumb"][1], "inclusion": e["metadata"].get("inclusion"),
               "selected": e["metadata"]["selected"]}
              for e in metadata if len(e["breadcrumb"]) == 2 and e["breadcrumb"][0] == "properties"]
    return {"tap_stream_id": stream.tap_stream_id, "name": stream.stream_name,
            "supported": top.get("inclusion") != "unsupported", "selected": stream.selected, "fields": fields}


def status_of(state: PageState) -> dict[str, Any]:
    """The small JSON the page polls while the connection check runs."""
    check = state.check
    return {
        "step": state.step,
        "setup_state": state.setup_state,
        "check": None if check is None else {"status": check.status,
                                             "message": (check.error or {}).get("message")},
    }


def choose_type(session: Session, catalog: Catalog, row: ConnectSession, source_type: str) -> None:
    if row.source_id is not None:
        raise Conflict("this connect session already has its source", type="conflict")
    if source_type not in row.allowed_types or catalog.get(source_type) is None:
        raise _invalid("source_type", "not one of this session's source types", "invalid_type")
    with begin_write(session):
        session.execute(update(ConnectSession).where(ConnectSession.id == row.id,
                                                     ConnectSession.source_id.is_(None))
                        .values(source_type=source_type))
    row.source_type = source_type


def _source_of(session: Session, catalog: Catalog, keyring: Keyring, hooks: writes.SourceHooks,
               row: ConnectSession, properties: dict[str, Any]) -> SourceView:
    """The session's source: created with ``properties`` on first use, else updated with them.

    Two tabs may create at once; the first to bind wins and the other's source is deleted again,
    so a session never reaches two sources.
    """
    if row.source_id is not None:
        if properties:
            return writes.update_source(session, catalog, keyring, hooks, row.account_id, row.source_id,
                                        writes.SourceChange(properties=properties))
        return read_source(session, row.account_id, row.source_id)
    card = catalog.get(row.source_type) if row.source_type is not None else None
    if card is None:
        raise _invalid("source_type", "choose a source type first", "invalid_type")
    created = _create_source(session, catalog, keyring, hooks, row, card, properties)
    with begin_write(session):
        bound = affected_rows(session.execute(update(ConnectSession).where(
            ConnectSession.id == row.id, ConnectSession.source_id.is_(None))
            .values(source_id=created.id, source_type=card.type)))
        winner = None if bound else session.scalar(
            select(ConnectSession.source_id).where(ConnectSession.id == row.id))
    if winner is not None:
        # No hooks, so no revocation: the winner's source holds the same grant, which must live on.
        writes.delete_source(session, row.account_id, created.id)
        row.source_id = winner
        return read_source(session, row.account_id, winner)
    row.source_id = created.id
    return created


def _create_source(session: Session, catalog: Catalog, keyring: Keyring, hooks: writes.SourceHooks,
                   row: ConnectSession, card: ReportCard, properties: dict[str, Any]) -> SourceView:
    """A new source of the card's type, named after the card (with a suffix while the name is taken)."""
    attempts = 5
    for attempt in range(1, attempts + 1):
        display_name = card.display_name if attempt == 1 else f"{card.display_name} {secrets.token_hex(2)}"
        try:
            created, _ = writes.create_source(
                session, catalog, keyring, hooks, row.account_id, card.type,
                writes.SourceChange(display_name=display_name, properties=properties),
                {"connect_session": row.id, "properties": sorted(properties)})
            return created
        except Conflict as clash:  # the card's display name is taken in this account: add a suffix
            if clash.type != "invalid_name" or attempt == attempts:
                raise
    raise Conflict("no free name for the new source", type="invalid_name")


class FormProblems(Exception):
    """The form cannot be saved: messages by field name (and ones about no field)."""

    def __init__(self, by_field: dict[str, str], general: list[str] | None = None) -> None:
        super().__init__("form problems")
        self.by_field = by_field
        self.general = general or []


def save_form(session: Session, catalog: Catalog, keyring: Keyring, hooks: writes.SourceHooks,
              row: ConnectSession, posted: dict[str, str]) -> None:
    state = page_state(session, catalog, row)
    if state.card is None:
        raise FormProblems({}, ["choose a source type first"])
    values, errors = property_values(state.card, state.fields, posted, state.provided)
    if errors:
        raise FormProblems(errors)
    try:
        _source_of(session, catalog, keyring, hooks, row, values)
    except Invalid as error:
        by_field = {d["property"]: d["reason"] for d in error.details if "property" in d}
        general = [f"{d.get('field', '')}: {d['reason']}" for d in error.details if "property" not in d]
        raise FormProblems(by_field, general or ([] if by_field else [error.message])) from None


def start_oauth(session: Session, catalog: Catalog, keyring: Keyring, hooks: writes.SourceHooks,
                row: ConnectSession, public_url: str) -> str:
    """The consent URL for the session's source; the finished handshake updates the source in place
    (the reconnect flow of app/oauth), so no secret_id ever travels through the browser."""
    source = _source_of(session, catalog, keyring, hooks, row, {})
    consent = handshake.initiate(session, catalog, keyring, row.account_id, source.type,
                                 oauth_return_url(public_url, row.id), source.id, {}, public_url,
                                 own_page=True)
    return consent.consent_url


def retry_check(session: Session, catalog: Catalog, row: ConnectSession) -> None:
    if row.source_id is None:
        raise Conflict("nothing to check yet: fill in the form first")
    discovery.request_discovery(session, catalog, row.account_id, row.source_id)


def save_selection(session: Session, catalog: Catalog, row: ConnectSession, chosen_streams: list[str],
                   chosen_fields: dict[str, list[str]]) -> None:
    """Select exactly the chosen streams, and in each the chosen fields among those one may choose."""
    if not chosen_streams:
        raise FormProblems({}, ["choose at least one stream"])
    state = page_state(session, catalog, row)
    if row.source_id is None:
        raise FormProblems({}, ["fill in the form first"])
    writes = []
    for stream in state.streams:
        if not stream["supported"]:
            continue
        selected = stream["tap_stream_id"] in chosen_streams
        metadata = [{"breadcrumb": [], "metadata": {"selected": selected}}]
        if selected:
            wanted = set(chosen_fields.get(stream["tap_stream_id"], ()))
            metadata += [{"breadcrumb": ["properties", f["name"]], "metadata": {"selected": f["name"] in wanted}}
                         for f in stream["fields"] if f["inclusion"] == "available"]
        writes.append({"tap_stream_id": stream["tap_stream_id"], "metadata": metadata})
    known = {s["tap_stream_id"] for s in state.streams if s["supported"]}
    unknown = [name for name in chosen_streams if name not in known]
    if unknown:
        raise FormProblems({}, [f"{name!r} is not a stream you can choose" for name in unknown])
    try:
        discovery.update_selection(session, catalog, row.account_id, row.source_id, writes)
    except ApiError as error:
        raise FormProblems({}, [error.message]) from None


def finish(session: Session, catalog: Catalog, row: ConnectSession, outcome: str) -> str:
    """End the session; returns where to send the browser: the integrator's redirect_url with
    ``source_id`` (and ``error=cancelled`` when the user gave up)."""
    params: dict[str, str] = {}
    if outcome == COMPLETED:
        state = page_state(session, catalog, row)
        if state.step != "fully_configured":
            raise Conflict(f"the source is not fully configured yet (it is at {state.step})", type="not_ready")
    if row.source_id is not None:
        params["source_id"] = str(row.source_id)
    if outcome == CANCELLED:
        params["error"] = "cancelled"
    with begin_write(session):
        ended = affected_rows(session.execute(update(ConnectSession).where(
            ConnectSession.id == row.id, ConnectSession.finished_at.is_(None))
            .values(finished_at=utcnow(), outcome=outcome)))
    if not ended:
        raise SessionGone("this connect session has ended: ask for a new link")
    return with_query(row.redirect_url, params)


def selection_key(tap_stream_id: str) -> str:
    """The form field name of a stream's field checkboxes."""
    return "fields:" + tap_stream_id


def session_for_oauth_return(session: Session, session_id: int, token: str) -> ConnectSession:
    """The session a browser comes back to from the provider: the token from the return cookie
    must be that session's, so a return URL alone (it sits in the handshake's state row) opens nothing."""
    if not token:
        raise Invalid("this browser has lost track of the connection (no return cookie): open the link "
                      "you were given again", type="missing_cookie", status=400)
    row = open_session(session, token)
    if row.id != session_id:
        raise NotFound("no such connect session")
    return row

