"""Revoking a deleted source's tokens at the provider (RFC 7009).

A card whose ``oauth`` section declares a ``revocation_url`` (a template, like its ``token_url``)
has the source's refresh token revoked there when the source is deleted (RFC 7009 §2.1: revoking
a refresh token also ends the access tokens of its grant), else its access token. The request is
Authlib's ``OAuth2Session.revoke_token``, authenticated as the card's token requests are
(``client_auth``, the client id and secret from the properties ``client_properties`` names), and
every connection goes through the network policy.

:func:`revoke_source_tokens` is a source hook (wired in ``create_app``): the delete use case calls
it *before* its write transaction, so no lock is held while the provider answers. It never fails
the delete: a provider that is down or refuses is logged (by error type, never a token) and the
source is deleted anyway; its credentials are erased from the database either way, so nothing of
the grant is left here to revoke later.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from sqlalchemy.orm import Session

from ..catalog import get_catalog
from ..catalog.sections import OAuthSection
from ..connectors.network import DestinationRefused, network_policy
from ..connectors.urls import UrlValueRefused, render_url
from ..crypto import get_keyring
from ..models import Source
from ..sources.credentials import decrypted_properties
from ..sources.queries import SourceView
from ..templating import TemplateProblem

log = logging.getLogger(__name__)

REVOCATION_TIMEOUT = 10.0  # seconds: the user waits for this answer in DELETE


def revoke_source_tokens(session: Session, source: SourceView) -> bool:
    """Revoke the source's token at the provider its card names; True when the provider accepted.
    Outside any transaction of the caller (the session is used for one short read)."""
    card = get_catalog().get(source.type)
    oauth = card.oauth if card is not None else None
    if oauth is None or not oauth.revocation_url:
        return False
    with session.begin():
        row = session.get(Source, source.id)
        properties = decrypted_properties(get_keyring(), row) if row is not None else {}
    token, hint = _token_to_revoke(oauth, properties)
    if token is None:
        return False
    try:
        # Each value escaped for its place in the URL (app/connectors/urls.py): the token goes
        # only where the card says.
        url = render_url(oauth.revocation_url, {"properties": properties})
        return _send(oauth, url, token, hint, properties, source.id)
    except (TemplateProblem, UrlValueRefused):
        log.warning("revocation URL cannot be rendered", extra={"source_id": source.id, "source_type": source.type})
        return False


def _token_to_revoke(oauth: OAuthSection, properties: dict[str, Any]) -> tuple[str | None, str]:
    by_field = dict(oauth.token_properties)
    for hint in ("refresh_token", "access_token"):
        value = properties.get(by_field.get(hint, hint))
        if isinstance(value, str) and value:
            return value, hint
    return None, ""


def _send(oauth: OAuthSection, url: str, token: str, hint: str, properties: dict[str, Any], source_id: int) -> bool:
    client_id = properties.get(oauth.client_properties.client_id or "client_id")
    client_secret = properties.get(oauth.client_properties.client_secret or "client_secret")
    client = OAuth2Session(client_id=client_id, client_secret=client_secret,
                           revocation_endpoint_auth_method=oauth.client_auth)
    network_policy(current_app).guard(client)
    try:
        with client:
            response = client.revoke_token(url, token, token_type_hint=hint, timeout=REVOCATION_TIMEOUT)
    except DestinationRefused as refused:
        log.warning("revocation refused by the network rules", extra={"source_id": source_id, "reason": str(refused)})
        return False
    except requests.RequestException as error:
        log.warning("revocation request failed", extra={"source_id": source_id, "error": type(error).__name__})
        return False
    accepted = bool(response.status_code == 200)
    log.info("token revoked at the provider" if accepted else "revocation refused by the provider",
             extra={"source_id": source_id, "token_type_hint": hint, "http_status": response.status_code})
    return accepted
