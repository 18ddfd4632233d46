"""The authorization-code handshake: initiate, callback, and redeeming the ``secret_id``.

1. :func:`initiate` (an account's backend) picks the OAuth app, stores a state row (the PKCE
   verifier and the app's secret sealed in it) and returns the provider's consent URL.
2. :func:`complete_callback` (the user's browser, sent back by the provider) uses the state up,
   exchanges the code with Authlib's OAuth 2 client, keeps the result sealed as a secret and
   answers with where to send the browser: the integrator's ``redirect_url`` with ``secret_id``
   added, or with ``error``/``error_description``. A reconnect applies the result to its source
   at once instead.
3. :func:`redeem_secret` runs inside the transaction of ``POST /v4/sources`` or
   ``PUT /v4/sources/{id}`` (create_app wires it into app/sources/writes.py), so the secret is used
   up only when the source change commits.

Expired states and secrets are deleted by the periodic job :func:`purge_expired_handshakes`
(declared in create_app), not on the request path.

The HTTP call to the provider runs between transactions: no database lock is held while a slow
provider makes the user wait.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .. import redaction
from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..connectors.network import DestinationRefused, network_policy
from ..connectors.urls import UrlValueRefused, refused_property, render_url
from ..crypto import Keyring
from ..crypto import Sealed as SealedValue
from ..db import affected_rows, begin_write, get_db
from ..errors import ApiError, Conflict, Gone, Invalid, NotFound, Problem, problems_message
from ..models import Account, Source, utcnow
from ..sources.credentials import open_credential
from ..sources.events import record_event
from ..sources.queries import SourceView
from ..sources.rules import changes_immutable, schema_reason
from ..sources.writes import SourceChange, SourceHooks, update_source
from ..templating import TemplateProblem
from ..webhooks.outbox import emit
from .apps import ClientCredentials, oauth_card, oauth_section, resolve_app
from .models import OAuthSecret, OAuthState
from .redirect_urls import LOOPBACK_HOSTS, allowlist_problem, redirect_url_problem, with_query

log = logging.getLogger(__name__)

CALLBACK_PATH = "/v4/oauth/callback"
STATE_LIFETIME = timedelta(minutes=10)
# Used-up and expired rows are kept this long (to tell "expired" from "unknown", and for audit).
RETENTION = timedelta(days=1)
SECRET_PREFIX = "sec_"
# An input value lands inside a URL template (``https://{{ properties.shop }}.myshopify.com``). A
# value with '/', '?', '@' or ':' could move the whole URL to another host, and the token request
# (with the operator's client secret) with it, so inputs are restricted to what fits in a host label.
SAFE_INPUT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253}[A-Za-z0-9])?$")
# Parameters the handshake itself sets; a card's authorize_params/token_params cannot replace them.
RESERVED_AUTHORIZE_PARAMS = frozenset({"response_type", "client_id", "redirect_uri", "scope", "state",
                                       "code_challenge", "code_challenge_method"})
RESERVED_TOKEN_PARAMS = frozenset({"grant_type", "code", "redirect_uri", "client_id", "client_secret",
                                   "code_verifier"})
# RFC 6749 §5.2 error codes a token endpoint may answer with; others are reported as server_error.
TOKEN_ERROR_CODES = frozenset({"invalid_request", "invalid_client", "invalid_grant",
                               "unauthorized_client", "unsupported_grant_type", "invalid_scope"})
# Token endpoint statuses that say "not now" rather than "broken": told as temporarily_unavailable.
BUSY_STATUSES = frozenset({429, 502, 503, 504})
# Fields of a token response that grant access.
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


def callback_url(public_url: str) -> str:
    """The redirect URI registered at providers: this service's callback."""
    return public_url.rstrip("/") + CALLBACK_PATH


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _seal_json(keyring: Keyring, value: Mapping[str, Any], associated_data: str) -> SealedValue:
    return keyring.seal(json.dumps(value, separators=(",", ":")), associated_data)


def _open_json(keyring: Keyring, row: OAuthState | OAuthSecret) -> dict[str, Any]:
    opened: dict[str, Any] = json.loads(keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data))
    return opened


def _wipe(keyring: Keyring, row: OAuthState | OAuthSecret) -> None:
    """Re-seal a used row empty: what it held is not needed any more, so it should not linger."""
    sealed = _seal_json(keyring, {}, row.associated_data)
    row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext


def _value_problems(card: ReportCard, values: Mapping[str, Any], prefix: str) -> list[Problem]:
    """Schema problems of values the service sets (no read-only or immutability rules here).
    Reasons never quote a value: they may reach the integrator's redirect_url."""
    problems = []
    for name, value in values.items():
        spec = card.properties.get(name)
        if spec is None:
            problems.append(Problem(f"{prefix}.{name}", f"not a property of {card.type!r}"))
        elif (reason := schema_reason(spec, value, quote_value=False)) is not None:
            problems.append(Problem(f"{prefix}.{name}", reason))
    return problems


def _invalid(message: str, field: str, type_: str = "invalid_body") -> Invalid:
    return Invalid.from_problems([Problem(field, message)], type=type_)


def _provider_url_problem(url: str) -> str | None:
    """A provider endpoint must be https (http only on loopback, for local test providers)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme == "https" and parts.hostname and "@" not in parts.netloc:
        return None
    if parts.scheme == "http" and (parts.hostname or "").lower() in LOOPBACK_HOSTS and "@" not in parts.netloc:
        return None
    return "must be an https URL"


# -- initiate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    consent_url: str
    expires_at: datetime
    # Required oauth-step properties the handshake will not provide (the card's oauth_handshake).
    remaining_inputs: tuple[str, ...] = ()


def _handshake_urls(card: ReportCard, inputs: Mapping[str, Any]) -> tuple[str, str]:
    """The card's authorize and token URLs rendered over the handshake's input values."""
    oauth = oauth_section(card)
    urls = []
    for key, template in (("authorize_url", oauth.authorize_url), ("token_url", oauth.token_url)):
        try:
            url = render_url(template, {"properties": dict(inputs)})
        except TemplateProblem as error:
            raise _invalid(f"a value the {key} needs is missing ({error})",
                           "oauth_input_configuration", "missing_input") from None
        except UrlValueRefused as refused:
            raise _invalid(str(refused), f"oauth_input_configuration.{refused_property(refused, inputs)}",
                           "invalid_input") from None
        problem = _provider_url_problem(url)
        if problem:
            raise _invalid(f"renders to a URL that {problem}", "oauth_input_configuration", "invalid_input")
        urls.append(url)
    return urls[0], urls[1]


def _check_inputs(card: ReportCard, given: Mapping[str, Any]) -> None:
    """The request's ``oauth_input_configuration``: only the handshake's inputs and client properties."""
    client_properties = oauth_section(card).client_properties
    allowed = set(oauth_section(card).input_properties) | set(client_properties.names)
    problems = [Problem(f"oauth_input_configuration.{name}", "not an input of this type's OAuth handshake"
                        + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""))
                for name in given if name not in allowed]
    problems += _value_problems(card, {k: v for k, v in given.items() if k in allowed and v is not None},
                                "oauth_input_configuration")
    secret_name, id_name = client_properties.client_secret, client_properties.client_id
    if secret_name in given and id_name and id_name not in given:
        problems.append(Problem(f"oauth_input_configuration.{id_name}", f"is required with {secret_name}"))
    if problems:
        raise Invalid.from_problems(problems, type="invalid_input")


def _stored_values(keyring: Keyring, source: Source, names: set[str]) -> dict[str, Any]:
    """The source's values of ``names``, credentials opened: only what the handshake needs."""
    values = {k: v for k, v in source.properties.items() if k in names and v is not None}
    for credential in source.credentials:
        if credential.name in names:
            values[credential.name] = open_credential(keyring, credential)
    return values


def initiate(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    account_id: int | Callable[[Session], int],
    source_type: str,
    redirect_url: str,
    source_id: int | None,
    given_inputs: Mapping[str, Any],
    public_url: str,
    *,
    own_page: bool = False,
) -> Consent:
    """Start a handshake for the account; returns the consent URL to send the user's browser to.

    ``account_id`` may be a function that finds (or makes) the account inside the handshake's own
    transaction: the Airbyte dialect's workspace made on first use is then made only if the
    handshake starts.

    ``own_page``: the redirect_url is this service's hosted connect page (app/connect), not an
    integrator's, so the account's redirect_url_allowlist (a list of the integrator's URLs) does
    not apply; the page checked the integrator's own redirect_url against it already.
    """
    card = oauth_card(catalog, source_type)
    problem = redirect_url_problem(redirect_url)
    if problem:
        raise _invalid(problem, "redirect_url", "invalid_redirect_url")
    given = {k: v for k, v in given_inputs.items() if v is not None}
    _check_inputs(card, given)
    with begin_write(session):
        if callable(account_id):
            account_id = account_id(session)
        _check_allowlist(session, account_id, redirect_url, own_page)
        own_values = {**_reconnected_values(session, keyring, card, account_id, source_id, given), **given}
        inputs = _handshake_inputs(card, own_values)
        authorize_url, _token_url = _handshake_urls(card, inputs)
        app = resolve_app(session, keyring, card, account_id, own_values, "oauth_input_configuration")
        consent = _start_handshake(session, keyring, card, app, _StateRequest(
            account_id, redirect_url, source_id, inputs, authorize_url, callback_url(public_url)))
    log.info("oauth handshake initiated", extra={
        "account_id": account_id, "source_type": card.type, "app_scope": app.scope,
        "reconnect_source_id": source_id})
    return consent


def _check_allowlist(session: Session, account_id: int, redirect_url: str, own_page: bool) -> None:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    problem = None if own_page else allowlist_problem(redirect_url, account.redirect_url_allowlist)
    if problem:
        raise _invalid(problem, "redirect_url", "invalid_redirect_url")


def _reconnected_values(session: Session, keyring: Keyring, card: ReportCard, account_id: int,
                        source_id: int | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """For a reconnect, the source's stored values the handshake needs (its inputs and its own
    client properties); the request may not change an immutable input it already has."""
    if source_id is None:
        return {}
    source = session.scalars(select(Source).where(
        Source.id == source_id, Source.account_id == account_id, Source.deleted_at.is_(None))).one_or_none()
    if source is None:
        raise NotFound(f"source {source_id} not found", details=[Problem("source_id", "no such source").detail()])
    if source.type != card.type:
        raise _invalid(f"source {source_id} is of type {source.type!r}, not {card.type!r}", "source_id",
                       "invalid_type")
    oauth = oauth_section(card)
    input_names = oauth.input_properties
    stored = _stored_values(keyring, source, {*input_names, *oauth.client_properties.names})
    for name in input_names:
        spec = card.properties.get(name)
        if spec is not None and name in given and changes_immutable(spec, stored, given[name]):
            raise _invalid("immutable: the source already has another value",
                           f"oauth_input_configuration.{name}", "invalid_input")
    return stored


def _handshake_inputs(card: ReportCard, own_values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the card's ``input_properties`` for the URL templates: each required one
    present, each safe to put in a host name."""
    input_names = oauth_section(card).input_properties
    inputs = {name: own_values[name] for name in input_names if name in own_values}
    missing = [name for name in input_names if name not in inputs
               and (name not in card.properties or card.properties[name].is_required)]
    if missing:
        raise Invalid(f"oauth_input_configuration needs {', '.join(missing)} for {card.type}'s "
                      "consent and token URLs", type="missing_input",
                      details=[Problem(f"oauth_input_configuration.{name}", "is required").detail()
                               for name in missing])
    unsafe = [name for name, value in inputs.items() if not SAFE_INPUT.match(str(value))]
    if unsafe:
        raise Invalid(f"{', '.join(unsafe)}: an input of the OAuth handshake may hold only letters, "
                      "digits, '.', '_' and '-'", type="invalid_input",
                      details=[Problem(f"oauth_input_configuration.{name}",
                                       "may hold only letters, digits, '.', '_' and '-'").detail()
                               for name in unsafe])
    return inputs


@dataclass(frozen=True)
class _StateRequest:
    """Where a handshake comes from and goes back to, as its state row keeps it."""

    account_id: int
    redirect_url: str
    source_id: int | None
    inputs: dict[str, Any]
    authorize_url: str
    redirect_uri: str


def _start_handshake(session: Session, keyring: Keyring, card: ReportCard, app: ClientCredentials,
                     request: _StateRequest) -> Consent:
    """Store the handshake's state row (what the browser must not see sealed in it) and build the
    consent URL that carries its ``state``."""
    state = secrets.token_urlsafe(32)
    verifier = generate_token(64) if oauth_section(card).pkce else None
    redaction.remember(verifier)
    consent_url = _consent_url(card, app, request.authorize_url, request.redirect_uri, state, verifier)
    now = utcnow()
    credential_inputs = {k: v for k, v in request.inputs.items()
                         if k in card.properties and card.properties[k].is_credential}
    row = OAuthState(
        state_hash=_digest(state), account_id=request.account_id, source_type=card.type,
        redirect_url=request.redirect_url, source_id=request.source_id,
        input_configuration={k: v for k, v in request.inputs.items() if k not in credential_inputs},
        app_scope=app.scope, client_id=app.client_id, created_at=now, expires_at=now + STATE_LIFETIME)
    sealed = _seal_json(keyring, {"code_verifier": verifier, "client_secret": app.client_secret,
                                  "credential_inputs": credential_inputs,
                                  "scopes": list(_scopes(card, app))}, row.associated_data)
    row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
    session.add(row)
    return Consent(consent_url, row.expires_at, card.oauth_remaining)


def purge_expired_handshakes(app: Flask) -> dict[str, Any]:
    """Delete states and secrets that expired more than :data:`RETENTION` ago (a periodic job)."""
    cutoff = utcnow() - RETENTION
    with get_db(app).Session() as session, begin_write(session):
        states = affected_rows(session.execute(delete(OAuthState).where(OAuthState.expires_at < cutoff)))
        secrets_ = affected_rows(session.execute(delete(OAuthSecret).where(OAuthSecret.expires_at < cutoff)))
    return {"oauth_states": states, "oauth_secrets": secrets_}


def _oauth_session(card: ReportCard, app: ClientCredentials, redirect_uri: str, pkce: bool) -> OAuth2Session:
    return OAuth2Session(
        client_id=app.client_id,
        client_secret=app.client_secret,
        token_endpoint_auth_method=oauth_section(card).client_auth,
        redirect_uri=redirect_uri,
        code_challenge_method="S256" if pkce else None,
    )


def _consent_url(card: ReportCard, app: ClientCredentials, authorize_url: str, redirect_uri: str,
                 state: str, verifier: str | None) -> str:
    oauth = oauth_section(card)
    scopes = _scopes(card, app)
    extra = {k: v for k, v in oauth.authorize_params.items() if k not in RESERVED_AUTHORIZE_PARAMS}
    with _oauth_session(card, app, redirect_uri, verifier is not None) as client:
        url, _ = client.create_authorization_url(
            authorize_url, state=state, code_verifier=verifier,
            scope=oauth.scope_separator.join(scopes) or None, **extra)
    return url


def _scopes(card: ReportCard, app: ClientCredentials) -> tuple[str, ...]:
    """The scopes a handshake asks for: the app's own, else the card's."""
    return app.scopes if app.scopes is not None else oauth_section(card).scopes


# -- callback -----------------------------------------------------------------------------------


class HandshakeFailed(Exception):
    """The handshake cannot finish; the integrator is told with ``error`` and our own description
    (never a provider's response body, which may hold tokens)."""

    def __init__(self, error: str, description: str, **log_fields: Any) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.log_fields = log_fields


@dataclass(frozen=True)
class ClaimedState:
    """What the callback needs from a state row it has used up."""

    id: int
    account_id: int
    source_type: str
    redirect_url: str
    source_id: int | None
    inputs: dict[str, Any]
    app: ClientCredentials
    code_verifier: str | None
    scopes: tuple[str, ...] = ()


class InvalidState(ApiError):
    """A callback whose state is missing, unknown, expired or used: 400, and no redirect, since
    without a good state there is no trustworthy place to send the browser."""

    status, type = 400, "invalid_state"


def _claim_state(session: Session, keyring: Keyring, state: str | None) -> ClaimedState:
    if not state:
        raise InvalidState("the callback has no state parameter",
                           details=[{"field": "state", "reason": "is required"}])
    with begin_write(session):
        row = session.scalars(select(OAuthState).where(OAuthState.state_hash == _digest(state))
                              .with_for_update()).one_or_none()
        if row is None:
            raise InvalidState("unknown state: start the connection again",
                               details=[{"field": "state", "reason": "not issued by this service"}])
        if row.used_at is not None:
            raise InvalidState("this state was already used: start the connection again",
                               details=[{"field": "state", "reason": "already used"}])
        if row.expires_at <= utcnow():
            raise InvalidState("this state expired: start the connection again",
                               details=[{"field": "state", "reason": "expired"}])
        private = _open_json(keyring, row)
        redaction.remember(private["client_secret"])
        row.used_at = utcnow()
        _wipe(keyring, row)
        return ClaimedState(
            id=row.id, account_id=row.account_id, source_type=row.source_type,
            redirect_url=row.redirect_url, source_id=row.source_id,
            inputs={**row.input_configuration, **private["credential_inputs"]},
            app=ClientCredentials(row.app_scope, row.client_id, private["client_secret"]),
            code_verifier=private["code_verifier"], scopes=tuple(private.get("scopes") or ()))


def _require_success(response: requests.Response) -> requests.Response:
    """Authlib compliance hook: a non-2xx token response is a failure whatever its body says."""
    if 200 <= response.status_code < 300:
        return response
    code = None
    try:
        body = response.json()
        code = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        pass
    if code in TOKEN_ERROR_CODES:
        raise HandshakeFailed(code, f"the provider's token endpoint refused the authorization code "
                              f"(HTTP {response.status_code}, {code})", http_status=response.status_code)
    # Rate limited or a gateway in trouble: the integrator may simply start the connection again
    # (the code itself cannot be retried: it may have been used up).
    error = "temporarily_unavailable" if response.status_code in BUSY_STATUSES else "server_error"
    raise HandshakeFailed(error, f"the provider's token endpoint answered HTTP {response.status_code}",
                          http_status=response.status_code)


def exchange_code(card: ReportCard, claimed: ClaimedState, token_url: str, redirect_uri: str,
                  code: str, timeout: float) -> dict[str, Any]:
    """The token response for ``code``, or :class:`HandshakeFailed` saying what went wrong."""
    extra = {k: v for k, v in oauth_section(card).token_params.items() if k not in RESERVED_TOKEN_PARAMS}
    if claimed.code_verifier:
        extra["code_verifier"] = claimed.code_verifier
    with _oauth_session(card, claimed.app, redirect_uri, claimed.code_verifier is not None) as client:
        network_policy().guard(client)  # the token URL may be templated from the user's input
        client.register_compliance_hook("access_token_response", _require_success)
        try:
            token = client.fetch_token(token_url, grant_type="authorization_code", code=code,
                                       timeout=timeout, **extra)
        except OAuthError as error:
            code_ = error.error if error.error in TOKEN_ERROR_CODES else "server_error"
            raise HandshakeFailed(code_, f"the provider's token endpoint answered with error {code_}") from None
        except DestinationRefused as refused:
            raise HandshakeFailed("server_error", f"the provider's token endpoint is refused: {refused.message}") \
                from None
        except requests.Timeout:
            raise HandshakeFailed("temporarily_unavailable",
                                  f"the provider's token endpoint did not answer within {timeout:g} s") from None
        except requests.RequestException as error:
            raise HandshakeFailed("temporarily_unavailable", "could not reach the provider's token endpoint",
                                  exception=error.__class__.__name__) from None
        except ValueError:
            raise HandshakeFailed("server_error",
                                  "the provider's token endpoint answered with something other than JSON") from None
    # The tokens are sealed one by one only when a source takes them; remember them now, so that no
    # log line written before then can carry one. (Not every field: "Bearer" is no secret.)
    for name in TOKEN_FIELDS:
        redaction.remember(token.get(name))
    return dict(token)


def _field(document: Mapping[str, Any], path: str) -> Any:
    """A field of the token response: an exact key first, else a dotted path into nested objects."""
    if path in document:
        return document[path]
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def known_values(card: ReportCard, claimed: ClaimedState, redirect_uri: str) -> dict[str, Any]:
    """What the handshake knows itself, for the card's ``handshake_properties``: the redirect URI
    it used (HubSpot, Asana, Deputy, Eloqua and Outreach keep it to refresh tokens) and the scopes
    it asked for, joined as the consent URL joined them (eBay's refresh needs them)."""
    oauth = oauth_section(card)
    facts = {"redirect_uri": (oauth.handshake_properties.redirect_uri, redirect_uri),
             "scope": (oauth.handshake_properties.scope, oauth.scope_separator.join(claimed.scopes))}
    return {name: value for name, value in facts.values() if name and value}


def handshake_values(card: ReportCard, claimed: ClaimedState, token: Mapping[str, Any],
                     callback_args: Mapping[str, str], redirect_uri: str) -> dict[str, Any]:
    """The property values a finished handshake provides: the handshake's inputs, the app's
    client credentials, what it knows itself, values from the callback, and fields of the token
    response."""
    oauth = oauth_section(card)
    if not token.get("access_token") and not token.get("refresh_token"):
        raise HandshakeFailed("server_error", "the provider's token response has no access_token or refresh_token")
    values: dict[str, Any] = {k: v for k, v in claimed.inputs.items() if k in card.properties}
    values.update(known_values(card, claimed, redirect_uri))
    if oauth.client_properties.client_id:
        values[oauth.client_properties.client_id] = claimed.app.client_id
    if oauth.client_properties.client_secret:
        values[oauth.client_properties.client_secret] = claimed.app.client_secret
    for source, mapping, what in ((callback_args, oauth.callback_properties, "redirect"),
                                  (token, oauth.token_properties, "token response")):
        for path, name in mapping.items():
            value = _field(source, path)
            if value is None or value == "":
                if card.properties[name].is_required:
                    raise HandshakeFailed("server_error", f"the provider's {what} has no {path}")
                continue
            if card.properties[name].is_credential:
                redaction.remember(value)
            values[name] = value
    problems = _value_problems(card, values, "properties")
    if problems:
        raise HandshakeFailed("server_error", "the handshake's values do not fit the source type: "
                              + problems_message(problems))
    return values


def _issue_secret(session: Session, keyring: Keyring, claimed: ClaimedState, values: Mapping[str, Any],
                  secret_ttl: int) -> str:
    secret_id = SECRET_PREFIX + secrets.token_urlsafe(32)
    redaction.remember(secret_id)
    now = utcnow()
    with begin_write(session):
        row = OAuthSecret(secret_hash=_digest(secret_id), account_id=claimed.account_id,
                          source_type=claimed.source_type, app_scope=claimed.app.scope,
                          created_at=now, expires_at=now + timedelta(seconds=secret_ttl))
        sealed = _seal_json(keyring, values, row.associated_data)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
        session.add(row)
        state = session.get(OAuthState, claimed.id)
        if state is not None:
            state.outcome = "completed"
        if claimed.source_id is None:
            # No source to record an event on yet: the webhooks hear of it here (a reconnect's is
            # its source's oauth_completed event, app/sources/lifecycle.py).
            emit(session, claimed.account_id, "oauth.completed", {"source_type": claimed.source_type})
    return secret_id


def _record_failure(session: Session, claimed: ClaimedState, failure: HandshakeFailed) -> None:
    log.warning("oauth handshake failed", extra={
        "account_id": claimed.account_id, "source_type": claimed.source_type, "error": failure.error,
        "error_description": failure.description, "app_scope": claimed.app.scope,
        "reconnect_source_id": claimed.source_id, **failure.log_fields})
    with begin_write(session):
        state = session.get(OAuthState, claimed.id)
        if state is not None:
            state.outcome = failure.error
        if claimed.source_id is not None:
            source = session.get(Source, claimed.source_id)
            if source is not None and source.deleted_at is None:
                record_event(session, source, "oauth_failed", {"error": failure.error})


def complete_callback(
    session: Session,
    catalog: Catalog,
    keyring: Keyring,
    hooks: SourceHooks,
    args: Mapping[str, str],
    public_url: str,
    timeout: float,
    secret_ttl: int,
) -> str:
    """Finish a handshake from the provider's redirect; returns where to send the browser.

    A bad state raises :class:`InvalidState` (400). Everything after a good state ends in a
    redirect to the integrator, with ``secret_id`` (or ``source_id`` for a reconnect) or ``error``.
    """
    claimed = _claim_state(session, keyring, args.get("state"))
    try:
        card = catalog.get(claimed.source_type)
        if card is None or card.oauth is None:
            raise HandshakeFailed("server_error", f"source type {claimed.source_type!r} no longer has "
                                  "a managed OAuth handshake")
        if args.get("error"):
            error = args["error"] if _ERROR_CODE.match(args["error"]) else "server_error"
            raise HandshakeFailed(error, f"the provider answered the authorization request with {error}")
        if not args.get("code"):
            raise HandshakeFailed("invalid_request", "the provider's redirect has no code")
        _authorize_url, token_url = _handshake_urls(card, claimed.inputs)
        token = exchange_code(card, claimed, token_url, callback_url(public_url), args["code"], timeout)
        values = handshake_values(card, claimed, token, args, callback_url(public_url))
        secret_id = _issue_secret(session, keyring, claimed, values, secret_ttl)
        if claimed.source_id is None:
            log.info("oauth handshake completed", extra={
                "account_id": claimed.account_id, "source_type": card.type, "app_scope": claimed.app.scope})
            return with_query(claimed.redirect_url, {"secret_id": secret_id})
        try:
            update_source(session, catalog, keyring, hooks, claimed.account_id, claimed.source_id,
                          SourceChange(secret_id=secret_id))
        except ApiError as error:
            # Our own messages never hold a secret value (app/errors.py), so this one may travel.
            raise HandshakeFailed("invalid_request", f"the source could not take the new credentials: "
                                  f"{error.message}") from None
        log.info("oauth handshake completed", extra={
            "account_id": claimed.account_id, "source_type": card.type, "app_scope": claimed.app.scope,
            "reconnect_source_id": claimed.source_id})
        return with_query(claimed.redirect_url, {"source_id": str(claimed.source_id)})
    except (HandshakeFailed, Invalid) as failure:
        if isinstance(failure, Invalid):  # a card's URL template no longer renders
            failure = HandshakeFailed("server_error", failure.message)
        _record_failure(session, claimed, failure)
        return with_query(claimed.redirect_url, {"error": failure.error,
                                                 "error_description": failure.description})


# -- secret_id ----------------------------------------------------------------------------------


def redeem_secret(session: Session, keyring: Keyring, source: SourceView, card: ReportCard, secret_id: str,
                  requested: Mapping[str, Any]) -> dict[str, Any]:
    """The property values behind ``secret_id``, used up for ``source`` in the caller's transaction.

    404 when unknown or another account's (as if it did not exist), 422 for another source type,
    409 when used, 410 when expired. A value the request also gives must agree with the secret
    (tokens were issued for that shop, that sandbox…), and an immutable property the source
    already has cannot be changed through a secret either. Writes with statements, like the
    source change it runs in (app/sources/writes.py).
    """
    row = _redeemable(session.scalars(select(OAuthSecret).where(OAuthSecret.secret_hash == _digest(secret_id))
                                      .with_for_update()).one_or_none(), source, card)
    # A property the card has dropped since the handshake (the operator changed the card) is skipped.
    values = {k: v for k, v in _open_json(keyring, row).items() if k in card.properties}
    stored = {k: v for k, v in source.properties.items() if v is not None}
    problems = []
    for name, value in values.items():
        if name in requested and requested[name] != value:
            problems.append(Problem.of_property(name, "differs from the value the OAuth handshake used or obtained"))
        elif changes_immutable(card.properties[name], stored, value):
            problems.append(Problem.of_property(name, "immutable: the OAuth handshake ran with another value"))
    if problems:
        raise Invalid.from_problems(problems, type="invalid_properties")
    emptied = _seal_json(keyring, {}, row.associated_data)  # what it held must not linger
    session.execute(update(OAuthSecret).where(OAuthSecret.id == row.id).values(
        used_at=utcnow(), used_by_source_id=source.id, key_id=emptied.key_id, ciphertext=emptied.ciphertext))
    record_event(session, source, "oauth_completed", {"app_scope": row.app_scope, "names": sorted(values)})
    return values


def _redeemable(row: OAuthSecret | None, source: SourceView, card: ReportCard) -> OAuthSecret:
    """The secret's row, if the source may use it up now; else the error that says why not."""
    if row is None or row.account_id != source.account_id:
        raise NotFound("secret_id not found", type="not_found",
                       details=[Problem("secret_id", "no such secret_id in this account").detail()])
    if row.source_type != card.type:
        raise Invalid(f"secret_id is for source type {row.source_type!r}, not {card.type!r}",
                      type="secret_id_type_mismatch",
                      details=[Problem("secret_id", f"issued for {row.source_type}").detail()])
    if row.used_at is not None:
        raise Conflict("secret_id was already used; run the OAuth handshake again",
                       type="secret_id_used", details=[Problem("secret_id", "already used").detail()])
    if row.expires_at <= utcnow():
        raise Gone("secret_id expired; run the OAuth handshake again", type="secret_id_expired",
                   details=[Problem("secret_id", "expired").detail()])
    return row


def secret_owner(session: Session, secret_id: str) -> int | None:
    """The account a secret_id was issued to (None: not issued by this service), read in the
    caller's transaction: the Airbyte dialect tells "another workspace's secret" apart."""
    owner: int | None = session.scalars(
        select(OAuthSecret.account_id).where(OAuthSecret.secret_hash == _digest(secret_id))).one_or_none()
    return owner
