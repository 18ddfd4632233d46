"""The token store: access and session tokens cached encrypted in the database, refreshed early,
one refresh at a time per source across every process and machine.

Reading
    A caller first reads the source's token row in a short read-only transaction. A token of the
    source's current ``config_generation`` that is not within the refresh margin of its expiry is
    used at once. The margin is ``TOKEN_REFRESH_MARGIN`` (default 300 s), but at most half the
    token's lifetime, so short-lived tokens are still reused for half their life.

Refreshing (one at a time)
    Otherwise, in one write transaction: lock the source row and then its token row
    (``SELECT … FOR UPDATE`` on PostgreSQL, with ``lock_timeout`` bounding the wait;
    ``BEGIN IMMEDIATE`` on SQLite, which holds the database's write lock — correct for one
    machine, and bounded by the HTTP timeout of the one request made inside it), re-read, and only
    if the token is still stale send ONE request to the token (or login) endpoint, write the new
    token and any new refresh token, record events, commit. Callers queued on the lock find a fresh
    token when they get it. The source row is locked first, in the same order as the sources
    service's updates, so a user who saves a new refresh token mid-refresh is never overwritten by
    the old grant's rotated token.

Rotation
    The refresh token is read from the source's credential row *under the lock*, so no caller can
    send one that another has already exchanged. A refresh token in the answer is sealed into that
    credential row in the same transaction as the access token, and both are committed before the
    access token is returned to anyone. No refresh token in the answer: the stored one is kept.
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
      broken state it caused.
    * Transient — 408, 425, 429, 5xx, timeouts, connection errors, answers without a token: the
      n-th consecutive one schedules the next attempt after ``min(60 s, 0.5 s × 2^(n-1))`` with
      equal jitter (a random point in its upper half), or after ``Retry-After`` if that is longer.
      A caller waits for the schedule and tries again, for at most 4 rounds and 30 seconds (an
      attempt is not started past that), then gets :class:`TokenUnavailable`; the source is not
      marked broken. While the current token has not actually expired it is used instead of
      waiting: refreshing early leaves room for a provider's bad minute.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.cards import ReportCard
from ..catalog.sections import AuthSection
from ..crypto import Keyring
from ..crypto import Sealed as SealedValue
from ..db import begin_write
from ..models import Source, SourceCredential, utcnow
from ..sources.events import record_event
from .authenticators import IssuedToken, OAuth2Grant, SessionLogin
from .context import rendered, template_context
from .errors import AuthConfigurationError, CredentialsRejected, TokenRequestError, TokenUnavailable
from .models import ACCESS_TOKEN, NO_TOKEN, SESSION_TOKEN, SourceToken, token_associated_data

log = logging.getLogger("connect.tokens")

REFRESH_BUDGET_SECONDS = 30.0
MAX_ROUNDS = 4
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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TokenSettings:
        return cls(refresh_margin=float(config.get("TOKEN_REFRESH_MARGIN", 300)),
                   http_timeout=float(config.get("HTTP_TIMEOUT", 20.0)))

    @property
    def lock_wait_ms(self) -> int:
        """How long a refresher waits for another's lock: two request timeouts and some slack."""
        return int((2 * self.http_timeout + 10) * 1000)


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
    """What one locked attempt came to: a token, or when the shared schedule allows the next."""

    token: str | None = None
    wait_until: datetime | None = None
    error: str | None = None


class TokenStore:
    """The tokens of one source, as its card's ``auth`` section obtains them.

    Build one per call (it is cheap); the state lives in the database, so every process shares it.
    """

    def __init__(self, session_factory: sessionmaker[Session], keyring: Keyring, card: ReportCard,
                 source_id: int, settings: TokenSettings | None = None) -> None:
        if not card.auth.uses_tokens:
            raise AuthConfigurationError(f"{card.type}: auth.type has no tokens to store")
        self.session_factory = session_factory
        self.keyring = keyring
        self.card = card
        self.auth = card.auth
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

    def refresh_if_stale(self, kind: str, replacing: str | None = None) -> str:
        """Take the lock, and refresh unless another caller already has; retries transient
        failures on the shared schedule (see the module docstring)."""
        deadline = time.monotonic() + REFRESH_BUDGET_SECONDS
        outcome = _Outcome()
        for round_number in range(1, MAX_ROUNDS + 1):
            outcome = self._attempt(kind, replacing)
            if outcome.token is not None:
                return outcome.token
            wait = max(0.0, ((outcome.wait_until or utcnow()) - utcnow()).total_seconds())
            if round_number == MAX_ROUNDS or time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        raise TokenUnavailable(
            f"no {kind.replace('_', ' ')} for source {self.source_id} yet ({outcome.error}); "
            f"next attempt at {_iso(outcome.wait_until)}",
            error=outcome.error or "unavailable", retry_at=outcome.wait_until)

    # --- one locked attempt -----------------------------------------------------------------------

    def _token(self, kind: str, replacing: str | None) -> str:
        if replacing is None:
            token = self.cached_token(kind)
            if token is not None:
                return token
        return self.refresh_if_stale(kind, replacing)

    def _attempt(self, kind: str, replacing: str | None) -> _Outcome:
        rejected: CredentialsRejected | None = None
        try:
            with self.session_factory() as session, begin_write(session), requests.Session() as http:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text(f"SET LOCAL lock_timeout = {self.settings.lock_wait_ms}"))
                source = session.scalars(
                    select(Source).where(Source.id == self.source_id).with_for_update()).one_or_none()
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
                        rejected = self._rejection(source, row)
                    else:
                        return self._while_waiting(row, source, now, replacing)
                else:
                    outcome, rejected = self._refresh(session, http, source, row, kind, replacing)
                    if rejected is None:
                        return outcome
        except OperationalError as error:
            # Lock wait exceeded (PostgreSQL lock_timeout, SQLite busy timeout): someone holds the
            # lock for long; another round will look again.
            log.warning("token lock not obtained in time",
                        extra={"source_id": self.source_id, "kind": kind, "error": type(error.orig).__name__})
            return _Outcome(wait_until=utcnow(), error="lock_timeout")
        assert rejected is not None  # every other path returned inside the transaction
        raise rejected  # after the commit, so the failure state and broken mark are kept

    def _refresh(self, session: Session, http: requests.Session, source: Source, row: SourceToken,
                 kind: str, replacing: str | None) -> tuple[_Outcome, CredentialsRejected | None]:
        context = template_context(self.keyring, source)
        auth = rendered(self.auth, context, f"{self.card.type}: auth")
        sent_refresh_token: str | None = None
        try:
            if kind == ACCESS_TOKEN:
                grant = OAuth2Grant.from_spec(auth, f"{self.card.type}: auth")
                sent_refresh_token = grant.refresh_token or None
                issued = grant.request_token(http, self.settings.http_timeout, utcnow)
            else:
                login = SessionLogin.from_spec(auth, self._base_url(context), f"{self.card.type}: auth")
                issued = login.log_in(http, self.settings.http_timeout, utcnow)
        except TokenRequestError as failure:
            now = utcnow()
            self._keep_refresh_token(session, source, failure.refresh_token, sent_refresh_token)
            self._record_failure(session, source, row, kind, failure, now)
            if failure.permanent:
                return _Outcome(error=failure.error), self._rejection(source, row)
            outcome = self._while_waiting(row, source, now, replacing)
            return outcome, None
        self._store(session, source, row, kind, issued, sent_refresh_token)
        return _Outcome(token=issued.value), None

    # --- rows -------------------------------------------------------------------------------------

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
        row = self._row(session, kind, lock=True)
        assert row is not None
        return row

    def _open(self, row: SourceToken) -> str:
        return self.keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)

    def _is_fresh(self, row: SourceToken, generation: int, now: datetime) -> bool:
        if not row.holds_token or row.config_generation != generation:
            return False
        assert row.expires_at is not None
        lifetime = (row.expires_at - row.refreshed_at).total_seconds() if row.refreshed_at else 0.0
        margin = min(self.settings.refresh_margin, max(lifetime, 0.0) / 2)
        return now < row.expires_at - timedelta(seconds=margin)

    def _backing_off(self, row: SourceToken, source: Source, now: datetime) -> bool:
        return (row.next_attempt_at is not None and row.config_generation == source.config_generation
                and now < row.next_attempt_at)

    def _while_waiting(self, row: SourceToken, source: Source, now: datetime, replacing: str | None) -> _Outcome:
        """During transient back-off: the current token while it has not expired, else a wait."""
        if row.holds_token and row.config_generation == source.config_generation \
                and row.expires_at is not None and now < row.expires_at:
            current = self._open(row)
            if current != replacing:
                return _Outcome(token=current)
        return _Outcome(wait_until=row.next_attempt_at, error=row.last_error)

    def _clear_token_of_other_generation(self, row: SourceToken, source: Source) -> None:
        if row.config_generation != source.config_generation and row.holds_token:
            sealed = self.keyring.seal(NO_TOKEN, row.associated_data)
            row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
            row.expires_at = row.refreshed_at = None
        row.config_generation = source.config_generation

    def _store(self, session: Session, source: Source, row: SourceToken, kind: str, issued: IssuedToken,
               sent_refresh_token: str | None) -> None:
        now = utcnow()
        sealed = self.keyring.seal(issued.value, row.associated_data)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
        row.expires_at = issued.expires_at or now
        row.refreshed_at = now
        row.config_generation = source.config_generation
        row.consecutive_failures, row.next_attempt_at = 0, None
        row.last_error, row.last_error_permanent = None, False
        rotated = self._keep_refresh_token(session, source, issued.refresh_token, sent_refresh_token)
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
        assert name is not None  # checked in __init__ for the refresh_token grant
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
        reason = source.broken_reason if (source.broken_reason or {}).get("type") == BROKEN_TYPE else {
            "type": BROKEN_TYPE, "error": row.last_error,
            "message": "The provider refused the source's credentials. Reconnect the source."}
        return CredentialsRejected(
            f"source {source.id}: {reason.get('message')} (next attempt at {_iso(row.next_attempt_at)})", reason)

    # --- login per call ---------------------------------------------------------------------------

    def _base_url(self, context: Mapping[str, Any]) -> str | None:
        if self.card.api is None:
            return None
        return rendered(self.card.api.base_url, context, f"{self.card.type}: api.base_url")

    def _log_in_uncached(self) -> str:
        """A session token for this call only (no ``expiration``): nothing is cached or locked, and
        transient failures are retried locally on the same schedule."""
        with self.session_factory() as session, session.begin():
            source = session.get(Source, self.source_id)
            if source is None or source.deleted_at is not None:
                raise AuthConfigurationError(f"source {self.source_id} does not exist")
            context = template_context(self.keyring, source)
        auth = rendered(self.auth, context, f"{self.card.type}: auth")
        login = SessionLogin.from_spec(auth, self._base_url(context), f"{self.card.type}: auth")
        deadline = time.monotonic() + REFRESH_BUDGET_SECONDS
        with requests.Session() as http:
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
