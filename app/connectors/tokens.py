"""The token store: access and session tokens cached encrypted in the database, refreshed early,
one refresh at a time per source across every process and machine.

Reading
    A caller first reads the source's token row in a short read-only transaction. A token of the
    source's current ``config_generation`` that is not within the refresh margin of its expiry is
    used at once. The margin is ``TOKEN_REFRESH_MARGIN`` (default 300 s), but at most half the
    token's lifetime, so short-lived tokens are still reused for half their life.

Refreshing (one at a time, with a lease; no network call inside a transaction)
    Otherwise the caller tries to take the source's *refresh lease*, kept on the token row
    (``refresh_holder``, ``refresh_lease_until``), in one short write transaction: lock the source
    row and then its token row (``SELECT … FOR UPDATE`` on PostgreSQL with ``lock_timeout``
    bounding the wait; ``BEGIN IMMEDIATE`` on SQLite), re-read, and only if the token is still
    stale and the lease is free (or expired) write a holder id of its own with an expiry, read the
    credentials the request needs (the refresh token from the credential row), commit. Then it
    sends ONE request to the token (or login) endpoint **outside any transaction**, so a provider
    that hangs holds no lock: on SQLite, where a write transaction holds the database's one write
    lock, every other write of every tenant used to wait for it. Last, in a second short write
    transaction (the same two row locks), it stores what it got and releases the lease. The source
    row is locked first, in the same order as the sources service's updates.

    A caller that finds the lease held does not ask the provider: while the current token has not
    actually expired (refreshes start early) it uses that one; otherwise it polls the token row
    (read-only, 10 ms growing to 250 ms) until the holder's result is there or the lease is free or
    expired, within the same 30-second budget as everything else, then looks again.

    The lease lasts ``2 × CONNECT_HTTP_TIMEOUT + 30 s`` (70 s by default): requests applies the
    timeout to the connection and to each read, so a request normally ends well before. Its expiry
    is written and read on each machine's own clock: keep the clocks in sync (NTP), since a skew
    shortens or lengthens the lease by as much. A holder
    that died is taken over when its lease runs out. A holder whose lease ran out while its request
    was still going (its process stalled, or a provider trickled bytes) may find, when it comes
    back, that another caller took over: then (see ``_settle``)

    * its **access token** (and its failure, back-off or broken mark) is not written: the new
      holder's result is the newer one and must not be overwritten;
    * a **rotated refresh token** in its answer is still written, if the credential row still
      holds the refresh token it sent: the new one is then that one's successor, the newest there
      is, and dropping it could leave the source with a spent token. If the row holds another (the
      user saved new credentials, or the other holder already wrote a successor), it is not
      written: the user's save always wins, and the stored one is not older than ours;
    * a refusal (``invalid_grant``) of a refresh token that has been replaced since is no reason to
      mark the source broken: it is not recorded, and the caller looks again (finding the token
      the other holder stored).

    Only such a stall lets two requests reach the token endpoint at once; a lease that expires
    while its holder is alive is rare by construction, and both results are then handled as above.

    The same rules cover a user who saves a property mid-refresh (their update does not wait for
    the provider now): a new ``config_generation`` means the result is not cached (the token would
    belong to the old configuration; the caller that asked, whose request was built from it, still
    gets it), and a rotated refresh token is written only over the very token that was sent — never
    over the one the user just saved.

Rotation
    The refresh token is read from the source's credential row *when the lease is taken*, so no
    caller can send one that another has already exchanged. A refresh token in the answer is sealed
    into that credential row in the same transaction as the access token, and both are committed
    before the access token is returned to anyone. No refresh token in the answer: the stored one is kept.
    A new refresh token found in an otherwise unusable answer (no access token) is kept too. One
    window remains: if the answer is lost in transit (timeout, dropped connection) the provider may
    have rotated without our knowing; the stored token is then the only one we have, so the next
    attempt sends it, and a provider that did rotate answers ``invalid_grant`` (the source becomes
    broken and says so) — a token we *know* was replaced is never sent again.

    Why that is the best available: the new refresh token exists only in the lost answer, so no
    retry, timing or lock can recover it; the stored token is kept because it is the newest we
    know (never overwritten, never dropped). Sending it once more costs nothing and is the only
    way back where the provider allows it: many honour a replaced refresh token for a grace period
    or when the rotation's answer was never acknowledged, and a provider that did not rotate (the
    answer was lost for another reason) simply answers. A provider that refuses it answers
    ``invalid_grant``, and the source is marked broken at once with a ``broken_reason`` that says the
    earlier answer was lost (``after_lost_answer``), so the user is asked to reconnect rather than
    left with a source failing for no stated reason. Guessing, or not retrying, could only be worse:
    the source would stay stuck without saying why.

Failures (one shared schedule per source, kept on the token row)
    * Permanent — 400, 401, 403 and other 4xx from the token or login endpoint (``invalid_grant``,
      ``invalid_client``…): the source is marked broken (``broken_at``, ``broken_reason`` — shown
      as the report card's ``setup_error``), a ``refresh_failed`` event is recorded, and callers
      get :class:`CredentialsRejected` without contacting the provider until the back-off passes:
      15 minutes, 1 hour, 6 hours, then every 24 hours. Saving new credentials (a new
      ``config_generation``) ends the back-off at once; the next successful refresh clears the
      broken state it caused, and so does a rotated refresh token that arrives late (it replaced
      the refused one, so the next caller tries it at once).
    * Transient — 408, 425, 429, 5xx, timeouts, connection errors, answers without a token: the
      n-th consecutive one schedules the next attempt after ``min(60 s, 0.5 s × 2^(n-1))`` with
      equal jitter (a random point in its upper half), or after ``Retry-After`` if that is longer.
      A caller waits for the schedule and tries again, for at most 4 rounds and 30 seconds (an
      attempt is not started past that; waiting for another caller's lease counts against the 30
      seconds, not the rounds), then gets :class:`TokenUnavailable`; the source is not
      marked broken. While the current token has not actually expired it is used instead of
      waiting: refreshing early leaves room for a provider's bad minute.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.cards import ReportCard
from ..catalog.sections import AuthSection
from ..crypto import Keyring
from ..crypto import Sealed as SealedValue
from ..db import begin_write
from ..models import Source, SourceCredential, utcnow
from ..sources.credentials import open_credential
from ..sources.events import record_event
from .authenticators import IssuedToken, OAuth2Grant, SessionLogin
from .context import rendered, rendered_url, template_context
from .errors import AuthConfigurationError, CredentialsRejected, TokenRequestError, TokenUnavailable
from .models import ACCESS_TOKEN, NO_TOKEN, SESSION_TOKEN, SourceToken, token_associated_data
from .network import NetworkPolicy

log = logging.getLogger("connect.tokens")

REFRESH_BUDGET_SECONDS = 30.0
MAX_ROUNDS = 4
LEASE_SLACK_SECONDS = 30.0
# A token transaction holds no lock over a network call, so a lock it waits for is another short
# transaction's: this bounds only a database in trouble (PostgreSQL ``lock_timeout``).
LOCK_WAIT_MS = 10_000
# Polling the token row while another caller holds the refresh lease.
FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.25
TRANSIENT_BASE_DELAY = 0.5
TRANSIENT_MAX_DELAY = 60.0
PERMANENT_BACKOFF = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
# Transient errors after which the provider may have committed a rotation we never received.
LOST_ANSWER_ERRORS = frozenset({"timeout", "connection_error"})
# broken_reason["type"] of a source broken by a refused refresh: only such a break is cleared by a
# later successful refresh (a break found by another check is not ours to clear).
BROKEN_TYPE = "token_refresh_failed"
_PROPERTY_TEMPLATE = re.compile(r"^\{\{\s*properties\.([A-Za-z_][A-Za-z0-9_$]*)\s*\}\}$")


@dataclass(frozen=True)
class TokenSettings:
    refresh_margin: float = 300.0
    http_timeout: float = 20.0
    # The rules every connection to a token, login or API endpoint obeys (app/connectors/network.py);
    # the default refuses private and loopback addresses.
    network: NetworkPolicy = field(default_factory=NetworkPolicy)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], network: NetworkPolicy | None = None) -> TokenSettings:
        return cls(refresh_margin=float(config.get("TOKEN_REFRESH_MARGIN", 300)),
                   http_timeout=float(config.get("HTTP_TIMEOUT", 20.0)),
                   network=network or NetworkPolicy.from_config(config))

    def http_session(self, session_class: type[requests.Session] = requests.Session) -> requests.Session:
        """A session for calls on a source's behalf: every connection it opens is vetted."""
        return self.network.http_session(session_class)

    @property
    def lease_seconds(self) -> float:
        """How long a refresh lease holds (see the module docstring): longer than a request can
        normally take, since requests applies the timeout to the connection and to each read."""
        return 2 * self.http_timeout + LEASE_SLACK_SECONDS


def transient_delay(failures: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt after ``failures`` consecutive transient failures."""
    ceiling = min(TRANSIENT_MAX_DELAY, TRANSIENT_BASE_DELAY * 2 ** (max(failures, 1) - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def permanent_delay(failures: int) -> timedelta:
    return PERMANENT_BACKOFF[min(max(failures, 1), len(PERMANENT_BACKOFF)) - 1]


def refresh_token_property(auth: AuthSection) -> str | None:
    """The property a rotated refresh token is written back to: ``refresh_token_property``, or the
    one ``refresh_token`` names when it is exactly ``{{ properties.NAME }}``."""
    if auth.refresh_token_property:
        return auth.refresh_token_property
    match = _PROPERTY_TEMPLATE.match(auth.refresh_token.strip())
    return match.group(1) if match else None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _Outcome:
    """What one attempt came to: a token; or when the shared schedule allows the next attempt; or
    (``lease_until``) that another caller is refreshing, and until when its lease holds."""

    token: str | None = None
    wait_until: datetime | None = None
    error: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class _Claim:
    """What a caller that took the refresh lease read in the same transaction."""

    holder: str
    generation: int
    context: dict[str, Any] = field(repr=False)
    # The stored value of the property a rotated refresh token goes to, when the lease was taken.
    refresh_value: str | None = field(repr=False)


_Answer = IssuedToken | TokenRequestError


class TokenStore:
    """The tokens of one source, as its card's ``auth`` section obtains them.

    Build one per call (it is cheap); the state lives in the database, so every process shares it.
    """

    def __init__(self, session_factory: sessionmaker[Session], keyring: Keyring, card: ReportCard,
                 source_id: int, settings: TokenSettings | None = None, auth: AuthSection | None = None) -> None:
        """``auth``: how to obtain the tokens, when not the card's own ``auth`` section (keep-alive
        refreshes a managed-OAuth card's grant from its ``oauth`` section: app/discovery/keepalive.py)."""
        auth = auth or card.auth
        if not auth.uses_tokens:
            raise AuthConfigurationError(f"{card.type}: auth.type has no tokens to store")
        self.session_factory = session_factory
        self.keyring = keyring
        self.card = card
        self.auth = auth
        self.source_id = source_id
        self.settings = settings or TokenSettings()
        self.rotation_property: str | None = None
        if self.auth.type == "oauth2" and self.auth.grant_type == "refresh_token":
            self.rotation_property = refresh_token_property(self.auth)
            if self.rotation_property not in card.properties:
                # Refusing up front beats receiving a rotated refresh token there is no place for.
                raise AuthConfigurationError(
                    f"{card.type}: auth.refresh_token must be '{{{{ properties.NAME }}}}' of a property "
                    "of the card, or auth.refresh_token_property must name one")

    # --- public -----------------------------------------------------------------------------------

    def access_token(self, replacing: str | None = None) -> str:
        """The OAuth 2 access token; with ``replacing``, one other than that (refused) token."""
        return self._token(ACCESS_TOKEN, replacing)

    def session_token(self, replacing: str | None = None) -> str:
        """The session token: cached until its ``expiration``, or from a login per call."""
        if not self.auth.expiration:
            return self._log_in_uncached()
        return self._token(SESSION_TOKEN, replacing)

    def cached_token(self, kind: str) -> str | None:
        """The stored token if it is fresh, from one short read (no lock, no request)."""
        with self.session_factory() as session, session.begin():
            row = self._row(session, kind)
            generation = session.scalar(select(Source.config_generation).where(Source.id == self.source_id))
            if row is None or generation is None or not self._is_fresh(row, generation, utcnow()):
                return None
            return self._open(row)

    def refresh_now(self) -> str:
        """Refresh the access token now, whatever its expiry (keep-alive: the refresh token is used
        before it lapses from disuse). Single flight like every refresh: a caller that finds another
        refresh under way, or done since it looked, takes that one's token instead of asking again."""
        return self.refresh_if_stale(ACCESS_TOKEN, replacing=self.cached_token(ACCESS_TOKEN) or "")

    def refresh_if_stale(self, kind: str, replacing: str | None = None) -> str:
        """Refresh unless another caller already has (or is: then wait for its result); retries
        transient failures on the shared schedule (see the module docstring)."""
        deadline = time.monotonic() + REFRESH_BUDGET_SECONDS
        outcome = _Outcome()
        rounds = 0
        while rounds < MAX_ROUNDS:
            outcome = self._attempt(kind, replacing)
            if outcome.token is not None:
                return outcome.token
            if outcome.lease_until is not None:
                token = self._await_refresh(kind, replacing, outcome.lease_until, deadline)
                if token is not None:
                    return token
                if time.monotonic() >= deadline:
                    break
                continue  # the lease is free or expired: look again (waiting is not a round)
            rounds += 1
            wait = max(0.0, ((outcome.wait_until or utcnow()) - utcnow()).total_seconds())
            if rounds == MAX_ROUNDS or time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        raise TokenUnavailable(
            f"no {kind.replace('_', ' ')} for source {self.source_id} yet ({outcome.error}); "
            f"next attempt at {_iso(outcome.wait_until or outcome.lease_until)}",
            error=outcome.error or "unavailable", retry_at=outcome.wait_until or outcome.lease_until)

    # --- one attempt: claim the lease, ask the provider, settle -----------------------------------

    def _token(self, kind: str, replacing: str | None) -> str:
        if replacing is None:
            token = self.cached_token(kind)
            if token is not None:
                return token
        return self.refresh_if_stale(kind, replacing)

    def _attempt(self, kind: str, replacing: str | None) -> _Outcome:
        """One attempt in three steps, of which only the middle one (no transaction) talks to the
        provider."""
        claimed = self._claim(kind, replacing)
        if isinstance(claimed, CredentialsRejected):
            raise claimed
        if isinstance(claimed, _Outcome):
            return claimed
        try:
            answer, sent_refresh_token = self._ask_provider(claimed, kind)
        except BaseException:
            self._release(claimed, kind)  # the card cannot produce the request, or we are stopping
            raise
        return self._settle(claimed, kind, answer, sent_refresh_token, replacing)

    def _claim(self, kind: str, replacing: str | None) -> _Claim | _Outcome | CredentialsRejected:
        """In one short write transaction: a fresh token, a wait, a rejection, or the lease."""
        try:
            with self.session_factory() as session, begin_write(session):
                source = self._locked_source(session)
                if source is None or source.deleted_at is not None:
                    raise AuthConfigurationError(f"source {self.source_id} does not exist")
                row = self._locked_row(session, kind)
                now = utcnow()
                if self._is_fresh(row, source.config_generation, now):
                    current = self._open(row)
                    if current != replacing:
                        return _Outcome(token=current)
                if self._backing_off(row, source, now):
                    if row.last_error_permanent:
                        return self._rejection(source, row)
                    return self._while_waiting(row, source, now, replacing)
                if self._lease_held(row, now):
                    return self._while_refreshing(row, source, now, replacing)
                return self._take_lease(row, source, now)
        except OperationalError as error:
            return self._lock_not_obtained(kind, error)

    def _take_lease(self, row: SourceToken, source: Source, now: datetime) -> _Claim:
        holder = uuid.uuid4().hex
        row.refresh_holder = holder
        row.refresh_lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        return _Claim(holder, source.config_generation, template_context(self.keyring, source, self.card),
                      self._refresh_value(source))

    def _ask_provider(self, claim: _Claim, kind: str) -> tuple[_Answer, str | None]:
        """ONE request to the token or login endpoint, outside any transaction: its answer (a
        token or the classified failure) and the refresh token it sent, if any."""
        where = f"{self.card.type}: auth"
        auth = rendered(self.auth, claim.context, where)
        sent_refresh_token: str | None = None
        with self.settings.http_session() as http:
            try:
                if kind == ACCESS_TOKEN:
                    grant = OAuth2Grant.from_spec(auth, where)
                    sent_refresh_token = grant.refresh_token or None
                    return grant.request_token(http, self.settings.http_timeout, utcnow), sent_refresh_token
                login = SessionLogin.from_spec(auth, self._base_url(claim.context), where)
                return login.log_in(http, self.settings.http_timeout, utcnow), None
            except TokenRequestError as failure:
                return failure, sent_refresh_token

    def _settle(self, claim: _Claim, kind: str, answer: _Answer, sent_refresh_token: str | None,
                replacing: str | None) -> _Outcome:
        """Store what the provider said, as far as it is still ours to store (see the module
        docstring), and release the lease. Tried twice: the answer may hold a rotated refresh token."""
        for attempt in (1, 2):
            try:
                settled = self._settle_once(claim, kind, answer, sent_refresh_token, replacing)
            except OperationalError as error:
                log.error("token refresh result not saved", extra={
                    "source_id": self.source_id, "kind": kind, "error": type(error.orig).__name__,
                    "attempt": attempt, "refresh_token_in_answer": bool(answer.refresh_token)})
                continue
            if isinstance(settled, CredentialsRejected):
                raise settled  # after the commit, so the failure state and broken mark are kept
            return settled
        if isinstance(answer, IssuedToken):
            return _Outcome(token=answer.value)  # valid, though not cached; the lease runs out
        return _Outcome(wait_until=utcnow(), error="lock_timeout")

    def _settle_once(self, claim: _Claim, kind: str, answer: _Answer, sent_refresh_token: str | None,
                     replacing: str | None) -> _Outcome | CredentialsRejected:
        with self.session_factory() as session, begin_write(session):
            source = self._locked_source(session)
            row = self._row(session, kind, lock=True)
            held = row is not None and row.refresh_holder == claim.holder
            if row is not None and held:
                row.refresh_holder, row.refresh_lease_until = None, None
            if source is None or source.deleted_at is not None or row is None:
                return _Outcome(token=answer.value) if isinstance(answer, IssuedToken) else \
                    _Outcome(wait_until=utcnow(), error="source_deleted")
            same_generation = source.config_generation == claim.generation
            # The credential row still holds what was sent: a refresh token in the answer is its
            # successor. Anything else there (the user's new one, another holder's successor) wins.
            same_refresh_token = self._refresh_value(source) == claim.refresh_value
            rotated = same_refresh_token and self._keep_refresh_token(
                session, source, answer.refresh_token, sent_refresh_token)
            cached = held and same_generation and isinstance(answer, IssuedToken)
            if rotated and not cached:
                self._forget_refusal_of_predecessor(session, source, row)
            if isinstance(answer, IssuedToken):
                if cached:
                    self._store(session, source, row, kind, answer, sent_refresh_token, rotated)
                else:
                    self._log_superseded(kind, held, same_generation, same_refresh_token, rotated)
                return _Outcome(token=answer.value)
            if not (held and same_generation and same_refresh_token):
                self._log_superseded(kind, held, same_generation, same_refresh_token, rotated)
                return _Outcome(wait_until=utcnow(), error="superseded")
            now = utcnow()
            self._record_failure(session, source, row, kind, answer, now)
            if answer.permanent:
                return self._rejection(source, row)
            return self._while_waiting(row, source, now, replacing)

    def _forget_refusal_of_predecessor(self, session: Session, source: Source, row: SourceToken) -> None:
        """A rotated refresh token was written without its access token (a late holder, or a
        configuration changed meanwhile): a failure recorded since, and a break it caused, were
        about the token it replaced. Clear them, so the next caller tries the new one at once."""
        row.consecutive_failures, row.next_attempt_at = 0, None
        row.last_error, row.last_error_permanent = None, False
        if source.broken_at is not None and (source.broken_reason or {}).get("type") == BROKEN_TYPE:
            source.broken_at, source.broken_reason = None, None
            source.version += 1
            source.updated_at = utcnow()
            log.info("broken state cleared: the refused refresh token was replaced by a rotated one",
                     extra={"source_id": source.id})

    def _release(self, claim: _Claim, kind: str) -> None:
        """Give the lease back without a result (nothing was asked, or the caller is stopping)."""
        try:
            with self.session_factory() as session, begin_write(session):
                session.execute(update(SourceToken).where(
                    SourceToken.source_id == self.source_id, SourceToken.kind == kind,
                    SourceToken.refresh_holder == claim.holder).values(
                    refresh_holder=None, refresh_lease_until=None, updated_at=utcnow()))
        except OperationalError:
            log.warning("refresh lease not released; it runs out by itself",
                        extra={"source_id": self.source_id, "kind": kind})

    def _await_refresh(self, kind: str, replacing: str | None, lease_until: datetime,
                       deadline: float) -> str | None:
        """While another caller holds the lease: poll the token row (read-only) until its token is
        there (returned), or the lease is free or expired, or ``deadline`` passes (None)."""
        pause = FIRST_POLL_SECONDS
        while True:
            remaining = min(deadline - time.monotonic(), (lease_until - utcnow()).total_seconds())
            if remaining <= 0:
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, MAX_POLL_SECONDS)
            with self.session_factory() as session, session.begin():
                row = self._row(session, kind)
                generation = session.scalar(select(Source.config_generation).where(Source.id == self.source_id))
                if row is None or generation is None:
                    return None
                now = utcnow()
                if self._is_fresh(row, generation, now):
                    token = self._open(row)
                    if token != replacing:
                        return token
                if not self._lease_held(row, now) or row.refresh_lease_until is None:
                    return None
                lease_until = row.refresh_lease_until

    def _lock_not_obtained(self, kind: str, error: OperationalError) -> _Outcome:
        # Lock wait exceeded (PostgreSQL lock_timeout, SQLite busy timeout): another transaction
        # held a lock for long; another round will look again.
        log.warning("token lock not obtained in time",
                    extra={"source_id": self.source_id, "kind": kind, "error": type(error.orig).__name__})
        return _Outcome(wait_until=utcnow(), error="lock_timeout")

    def _log_superseded(self, kind: str, held: bool, same_generation: bool, same_refresh_token: bool,
                        rotated: bool) -> None:
        log.info("token refresh result superseded; not cached", extra={
            "source_id": self.source_id, "kind": kind, "lease_taken_over": not held,
            "configuration_changed": not same_generation, "refresh_token_replaced": not same_refresh_token,
            "refresh_token_rotated": rotated})

    # --- rows -------------------------------------------------------------------------------------

    def _locked_source(self, session: Session) -> Source | None:
        """The source row, locked (first, as the sources service's updates lock it)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}"))
        return session.scalars(select(Source).where(Source.id == self.source_id).with_for_update()).one_or_none()

    def _refresh_value(self, source: Source) -> str | None:
        """The stored value of the property a rotated refresh token goes to (None: no such property,
        or not provided)."""
        name = self.rotation_property
        if name is None:
            return None
        if self.card.properties[name].is_credential:
            credential = next((c for c in source.credentials if c.name == name), None)
            return None if credential is None else str(open_credential(self.keyring, credential))
        value = source.properties.get(name)
        return None if value is None else str(value)

    @staticmethod
    def _lease_held(row: SourceToken, now: datetime) -> bool:
        return row.refresh_holder is not None and row.refresh_lease_until is not None \
            and now < row.refresh_lease_until

    def _row(self, session: Session, kind: str, *, lock: bool = False) -> SourceToken | None:
        query = select(SourceToken).where(SourceToken.source_id == self.source_id, SourceToken.kind == kind)
        return session.scalars(query.with_for_update() if lock else query).one_or_none()

    def _locked_row(self, session: Session, kind: str) -> SourceToken:
        """The token row, locked; created (holding no token) on first use. Concurrent creators on
        PostgreSQL meet in ON CONFLICT DO NOTHING, the loser waiting for the winner's lock."""
        row = self._row(session, kind, lock=True)
        if row is not None:
            return row
        sealed = self.keyring.seal(NO_TOKEN, token_associated_data(self.source_id, kind))
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(SourceToken).values(
            source_id=self.source_id, kind=kind, key_id=sealed.key_id, ciphertext=sealed.ciphertext,
            config_generation=0, consecutive_failures=0, last_error_permanent=False, updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["source_id", "kind"]))
        # The row exists now (inserted above, or by the concurrent creator this insert met).
        return session.scalars(select(SourceToken).where(
            SourceToken.source_id == self.source_id, SourceToken.kind == kind).with_for_update()).one()

    def _open(self, row: SourceToken) -> str:
        return self.keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)

    def _is_fresh(self, row: SourceToken, generation: int, now: datetime) -> bool:
        if not row.holds_token or row.config_generation != generation:
            return False
        if row.expires_at is None:  # a row holding a token has its expiry; none means not usable
            return False
        lifetime = (row.expires_at - row.refreshed_at).total_seconds() if row.refreshed_at else 0.0
        margin = min(self.settings.refresh_margin, max(lifetime, 0.0) / 2)
        return now < row.expires_at - timedelta(seconds=margin)

    def _backing_off(self, row: SourceToken, source: Source, now: datetime) -> bool:
        return (row.next_attempt_at is not None and row.config_generation == source.config_generation
                and now < row.next_attempt_at)

    def _unexpired(self, row: SourceToken, source: Source, now: datetime, replacing: str | None) -> str | None:
        """The current token while it has not actually expired (and is not the refused one)."""
        if row.holds_token and row.config_generation == source.config_generation \
                and row.expires_at is not None and now < row.expires_at:
            current = self._open(row)
            if current != replacing:
                return current
        return None

    def _while_waiting(self, row: SourceToken, source: Source, now: datetime, replacing: str | None) -> _Outcome:
        """During transient back-off: the current token while it has not expired, else a wait."""
        current = self._unexpired(row, source, now, replacing)
        if current is not None:
            return _Outcome(token=current)
        return _Outcome(wait_until=row.next_attempt_at, error=row.last_error)

    def _while_refreshing(self, row: SourceToken, source: Source, now: datetime,
                          replacing: str | None) -> _Outcome:
        """Another caller holds the lease: the current token while it has not expired, else wait
        for the holder's result."""
        current = self._unexpired(row, source, now, replacing)
        if current is not None:
            return _Outcome(token=current)
        return _Outcome(lease_until=row.refresh_lease_until, error="refresh_in_progress")

    def _clear_token_of_other_generation(self, row: SourceToken, source: Source) -> None:
        if row.config_generation != source.config_generation and row.holds_token:
            sealed = self.keyring.seal(NO_TOKEN, row.associated_data)
            row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
            row.expires_at = row.refreshed_at = None
        row.config_generation = source.config_generation

    def _store(self, session: Session, source: Source, row: SourceToken, kind: str, issued: IssuedToken,
               sent_refresh_token: str | None, rotated: bool) -> None:
        """Cache the issued token (the caller holds the lease; a rotated refresh token is written
        already) and end the failure state and a break this store caused."""
        now = utcnow()
        sealed = self.keyring.seal(issued.value, row.associated_data)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
        row.expires_at = issued.expires_at or now
        row.refreshed_at = now
        row.expiry_stated = issued.expiry_stated
        row.config_generation = source.config_generation
        row.consecutive_failures, row.next_attempt_at = 0, None
        row.last_error, row.last_error_permanent = None, False
        if sent_refresh_token and not issued.refresh_token and self.auth.rotate_refresh_token:
            log.info("the card declares rotation but the answer holds no refresh token; the stored one is kept",
                     extra={"source_id": source.id})
        detail: dict[str, Any] = {"kind": kind, "expires_at": _iso(row.expires_at)}
        if kind == ACCESS_TOKEN:
            detail["grant_type"] = self.auth.grant_type
        if source.broken_at is not None and (source.broken_reason or {}).get("type") == BROKEN_TYPE:
            source.broken_at, source.broken_reason = None, None
            source.version += 1
            source.updated_at = now
            detail["cleared_broken_state"] = True
        record_event(session, source, "token_refreshed", detail)
        log.info("token refreshed", extra={"source_id": source.id, "kind": kind,
                                            "expires_at": _iso(row.expires_at), "refresh_token_rotated": rotated})

    def _keep_refresh_token(self, session: Session, source: Source, new: str | None, sent: str | None) -> bool:
        """Seal a newly issued refresh token into the source's property (in this transaction)."""
        if sent is None or not new or new == sent:
            return False
        name = self.rotation_property
        if name is None:  # __init__ refused a refresh_token grant without one: not reached
            raise AuthConfigurationError(f"{self.card.type}: no property to keep a rotated refresh token in")
        if self.card.properties[name].is_credential:
            credential = next((c for c in source.credentials if c.name == name), None)
            if credential is None:
                credential = SourceCredential(source_id=source.id, name=name)
                source.credentials.append(credential)
            sealed = self.keyring.seal(new, credential.associated_data)
            credential.key_id, credential.ciphertext, credential.updated_at = sealed.key_id, sealed.ciphertext, utcnow()
        else:
            source.properties = {**source.properties, name: new}
        record_event(session, source, "refresh_token_rotated", {"property": name})
        return True

    def _record_failure(self, session: Session, source: Source, row: SourceToken, kind: str,
                        failure: TokenRequestError, now: datetime) -> None:
        same_run = (row.consecutive_failures > 0 and row.last_error_permanent == failure.permanent
                    and row.config_generation == source.config_generation)
        # A refusal right after a lost answer, of a grant that hands out refresh tokens: most likely
        # the provider rotated then, and the new token was in the answer that never came.
        after_lost_answer = (failure.permanent and self.rotation_property is not None
                             and row.consecutive_failures > 0 and not row.last_error_permanent
                             and row.last_error in LOST_ANSWER_ERRORS
                             and row.config_generation == source.config_generation)
        self._clear_token_of_other_generation(row, source)
        row.consecutive_failures = row.consecutive_failures + 1 if same_run else 1
        row.last_error, row.last_error_permanent = failure.error[:60], failure.permanent
        if failure.permanent:
            row.next_attempt_at = now + permanent_delay(row.consecutive_failures)
        else:
            row.next_attempt_at = now + timedelta(
                seconds=transient_delay(row.consecutive_failures, failure.retry_after))
        detail = {"kind": kind, "error": row.last_error, "status": failure.status, "permanent": failure.permanent,
                  "consecutive_failures": row.consecutive_failures, "next_attempt_at": _iso(row.next_attempt_at)}
        if after_lost_answer:
            detail["after_lost_answer"] = True
        record_event(session, source, "refresh_failed", detail)
        log.warning("token refresh failed", extra={
            "source_id": source.id, "kind": kind, "error": row.last_error, "status": failure.status,
            "permanent": failure.permanent, "next_attempt_at": _iso(row.next_attempt_at),
            "after_lost_answer": after_lost_answer})
        if failure.permanent:
            self._mark_broken(source, kind, failure, now, after_lost_answer=after_lost_answer)

    def _mark_broken(self, source: Source, kind: str, failure: TokenRequestError, now: datetime,
                     *, after_lost_answer: bool = False) -> None:
        what = "refresh token" if self.auth.grant_type == "refresh_token" else "credentials"
        if kind == SESSION_TOKEN:
            what = "login credentials"
        reason = {
            "type": BROKEN_TYPE,
            "error": failure.error,
            "status": failure.status,
            "message": f"The provider refused the source's {what} ({failure}). "
                       "Reconnect the source or update its credentials.",
            "at": _iso(now),
        }
        if after_lost_answer:
            reason["after_lost_answer"] = True
            reason["message"] = (
                f"The provider refused the source's {what} ({failure}) right after an answer of its "
                "token endpoint was lost in transit: it most likely replaced the refresh token in that "
                "answer. Reconnect the source.")
        source.broken_reason = reason
        if source.broken_at is None:
            source.broken_at = now
        source.version += 1
        source.updated_at = now

    def _rejection(self, source: Source, row: SourceToken) -> CredentialsRejected:
        stored = source.broken_reason
        reason: dict[str, Any] = stored if stored is not None and stored.get("type") == BROKEN_TYPE else {
            "type": BROKEN_TYPE, "error": row.last_error,
            "message": "The provider refused the source's credentials. Reconnect the source."}
        return CredentialsRejected(
            f"source {source.id}: {reason.get('message')} (next attempt at {_iso(row.next_attempt_at)})", reason)

    # --- login per call ---------------------------------------------------------------------------

    def _base_url(self, context: Mapping[str, Any]) -> str | None:
        if self.card.api is None:
            return None
        return rendered_url(self.card.api.base_url, context, f"{self.card.type}: api.base_url")

    def _log_in_uncached(self) -> str:
        """A session token for this call only (no ``expiration``): nothing is cached or locked, and
        transient failures are retried locally on the same schedule."""
        with self.session_factory() as session, session.begin():
            source = session.get(Source, self.source_id)
            if source is None or source.deleted_at is not None:
                raise AuthConfigurationError(f"source {self.source_id} does not exist")
            context = template_context(self.keyring, source, self.card)
        auth = rendered(self.auth, context, f"{self.card.type}: auth")
        login = SessionLogin.from_spec(auth, self._base_url(context), f"{self.card.type}: auth")
        deadline = time.monotonic() + REFRESH_BUDGET_SECONDS
        with self.settings.http_session() as http:
            for failures in range(1, MAX_ROUNDS + 1):
                try:
                    return login.log_in(http, self.settings.http_timeout, utcnow).value
                except TokenRequestError as failure:
                    if failure.permanent:
                        raise self._broken_by_login(failure) from None
                    wait = transient_delay(failures, failure.retry_after)
                    if failures == MAX_ROUNDS or time.monotonic() + wait > deadline:
                        raise TokenUnavailable(f"login for source {self.source_id} failed ({failure.error})",
                                               error=failure.error) from None
                    time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _broken_by_login(self, failure: TokenRequestError) -> CredentialsRejected:
        now = utcnow()
        with self.session_factory() as session, begin_write(session):
            source = session.scalars(select(Source).where(Source.id == self.source_id).with_for_update()).one()
            self._mark_broken(source, SESSION_TOKEN, failure, now)
            record_event(session, source, "refresh_failed", {
                "kind": SESSION_TOKEN, "error": failure.error, "status": failure.status, "permanent": True})
            log.warning("login refused", extra={"source_id": source.id, "error": failure.error,
                                                 "status": failure.status})
            reason = dict(source.broken_reason or {})
        return CredentialsRejected(f"source {self.source_id}: {reason['message']}", reason)
