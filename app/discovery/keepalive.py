"""Keep-alive refresh: a periodic job that uses idle refresh tokens before they lapse.

Some providers end a refresh token that goes unused (Google's after 6 months, Adobe Sign's after
60 days); a source nobody reads from would die silently. :func:`keep_tokens_alive` refreshes,
through the token store (one refresh at a time per source, rotation-safe: app/connectors/tokens.py),
the access token of every live, unbroken source whose card refreshes with a refresh token (its
``auth`` section, or the grant of its managed-OAuth ``oauth`` section: :func:`keepalive_auth`) and
whose last refresh (or, never refreshed, its creation) is older than
``CONNECT_TOKEN_KEEPALIVE_HOURS`` (24; 0 turns it off). A card's
``auth.min_refresh_interval_seconds`` (a provider's cap on refreshes) raises that age for its
sources. A refused refresh token marks the source broken as any refresh does, and the webhooks
announce it (``token.refresh_failed``, ``source.setup_state_changed``).

A token answer without ``expires_in`` is not trusted to live for the lifetime the service assumes:
the new token is probed at once with the card's check request (a 401 there refreshes once more,
app/connectors/http.py); a probe the credentials fail queues the ordinary connection check, which
marks the source broken and says why.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import and_, exists, func, or_, select

from ..catalog import get_catalog
from ..catalog.cards import ReportCard
from ..catalog.sections import AuthSection
from ..connectors.base import ConnectorFailure, SourceTarget
from ..connectors.errors import AuthConfigurationError, CredentialsRejected, TokenUnavailable
from ..connectors.models import ACCESS_TOKEN, SourceToken
from ..connectors.network import network_policy
from ..connectors.registry import get_connectors
from ..connectors.tokens import TokenSettings, TokenStore, refresh_token_property
from ..crypto import get_keyring
from ..db import begin_write, get_db
from ..models import Source, SourceCredential, utcnow
from ..sources.credentials import decrypted_properties
from .service import queue_check

log = logging.getLogger(__name__)

RUN_EVERY = timedelta(minutes=15)
BATCH = 50  # sources refreshed per run, the longest idle first (one at a time)


def keepalive_auth(card: ReportCard) -> AuthSection | None:
    """How keep-alive refreshes a source of ``card``: its ``auth`` section when that refreshes with
    a refresh token; else, for a managed-OAuth card (a Singer tap that refreshes by itself when it
    runs, which may be months away), the refresh grant its ``oauth`` section describes — the token
    URL, the client credentials and the refresh token in the properties the handshake filled. None
    when neither applies."""
    if card.auth.type == "oauth2" and card.auth.grant_type == "refresh_token":
        return card.auth
    oauth = card.oauth
    if oauth is None or card.auth.uses_tokens:
        return None
    refresh = dict(oauth.token_properties).get("refresh_token")
    client_id = oauth.client_properties.client_id or "client_id"
    client_secret = oauth.client_properties.client_secret or "client_secret"
    if refresh not in card.properties or client_id not in card.properties:
        return None
    secret = f"{{{{ properties.{client_secret} }}}}" if client_secret in card.properties else ""
    return AuthSection(type="oauth2", grant_type="refresh_token", token_url=oauth.token_url,
                       client_id=f"{{{{ properties.{client_id} }}}}", client_secret=secret,
                       refresh_token=f"{{{{ properties.{refresh} }}}}", client_auth=oauth.client_auth,
                       token_params=oauth.token_params)


def keep_tokens_alive(app: Flask) -> dict[str, Any]:
    """Refresh the idle refresh tokens that are due (a periodic job); returns counts."""
    hours = float(app.config.get("TOKEN_KEEPALIVE_HOURS") or 0)
    if hours <= 0:
        return {"off": True}
    auths = {card.type: (card, auth) for card in get_catalog().cards.values()
             if (auth := keepalive_auth(card)) is not None}
    counts = {"refreshed": 0, "failed": 0, "probed": 0, "skipped_min_interval": 0}
    now = utcnow()
    refresh_names = {source_type: refresh_token_property(auth) for source_type, (_card, auth) in auths.items()}
    for source_id, source_type, last_used in _idle_sources(app, refresh_names, now - timedelta(hours=hours)):
        card, auth = auths[source_type]
        if now - last_used < timedelta(seconds=auth.min_refresh_interval_seconds):
            counts["skipped_min_interval"] += 1
            continue
        outcome = _refresh(app, card, auth, source_id)
        counts[outcome] += 1
        if outcome == "refreshed" and not _expiry_stated(app, source_id):
            counts["probed"] += 1
            _probe(app, card, source_id)
    return counts


def _idle_sources(app: Flask, refresh_names: dict[str, str | None],
                  idle_since: datetime) -> list[tuple[int, str, datetime]]:
    """Sources of these types idle since ``idle_since`` that hold their refresh token (a source
    still being set up has none to keep alive), the longest idle first."""
    holding = [(Source.type == source_type) & exists().where(SourceCredential.source_id == Source.id,
                                                             SourceCredential.name == name)
               for source_type, name in refresh_names.items() if name]
    if not holding:
        return []
    holds_refresh_token = or_(*holding)
    last_used = func.coalesce(SourceToken.refreshed_at, Source.created_at)
    with get_db(app).Session() as session, session.begin():
        rows = session.execute(
            select(Source.id, Source.type, last_used)
            .outerjoin(SourceToken, and_(SourceToken.source_id == Source.id, SourceToken.kind == ACCESS_TOKEN))
            .where(holds_refresh_token, Source.deleted_at.is_(None), Source.broken_at.is_(None),
                   last_used < idle_since)
            .order_by(last_used, Source.id).limit(BATCH)).all()
    return [(row[0], row[1], row[2]) for row in rows]


def _refresh(app: Flask, card: ReportCard, auth: AuthSection, source_id: int) -> str:
    settings = TokenSettings.from_config(app.config, network=network_policy(app))
    try:
        TokenStore(get_db(app).Session, get_keyring(app), card, source_id, settings, auth=auth).refresh_now()
    except (CredentialsRejected, TokenUnavailable, AuthConfigurationError) as failure:
        # The store has recorded it (and marked the source broken when the token was refused).
        log.info("keep-alive refresh failed", extra={"source_id": source_id, "error": type(failure).__name__})
        return "failed"
    return "refreshed"


def _expiry_stated(app: Flask, source_id: int) -> bool:
    with get_db(app).Session() as session, session.begin():
        stated = session.scalar(select(SourceToken.expiry_stated).where(
            SourceToken.source_id == source_id, SourceToken.kind == ACCESS_TOKEN))
    return stated is not False


def _probe(app: Flask, card: ReportCard, source_id: int) -> None:
    """The card's check request with the new token; if the credentials fail it, the ordinary check."""
    connector = get_connectors(app).for_card(card)
    if connector is None:
        return
    with get_db(app).Session() as session, session.begin():
        source = session.get_one(Source, source_id)
        target = SourceTarget(source_id=source.id, account_id=source.account_id, name=source.name,
                              config_generation=source.config_generation, card=card,
                              properties=decrypted_properties(get_keyring(app), source))
    try:
        connector.check(target)
    except ConnectorFailure as failure:
        log.info("keep-alive probe failed", extra={"source_id": source_id, "error_type": failure.error_type})
        if failure.fixed_by == "user":
            with get_db(app).Session() as session, begin_write(session):
                queue_check(session, session.scalars(select(Source).where(Source.id == source_id)
                                                     .with_for_update()).one())
