"""The Airbyte dialect's use cases: each finds the workspace and the card the request names, then
calls the service the Stitch dialect calls (the handshake, the OAuth apps, the source writes).
No rule of those services is repeated here; what is here is the mapping of app/airbyte/__init__.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..accounts.service import account_by_external_id, visible_account
from ..auth import Principal
from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..crypto import Keyring
from ..errors import ApiError, Invalid, NotFound, Problem
from ..models import Source
from ..oauth import apps, handshake
from ..oauth.models import OPERATOR_SCOPE
from ..schemas import id_from_text
from ..sources.queries import SourceView
from ..sources.writes import SourceChange, SourceHooks, create_source

WORKSPACE_NOT_FOUND = "Workspace not found"
INVALID_SECRET = "Invalid secret_id"


def connector_card(catalog: Catalog, name: str, field: str) -> ReportCard:
    """The card a ``connector_type``/``sourceType`` names (a type, or an alias in any case)."""
    card = catalog.resolve(name)
    if card is None:
        raise Invalid(f"unknown connector type {name!r}", type="invalid_type",
                      details=[Problem(field, "not a known connector type or source type").detail()])
    return card


def connector_name(card: ReportCard) -> str:
    """The name the dialect answers with: the card's shortest alias (``postgres`` rather than
    ``hp-postgres``), or its type when it has none."""
    return min(card.aliases, key=len, default=card.type)


def _not_found(field: str, reason: str) -> NotFound:
    return NotFound(WORKSPACE_NOT_FOUND, type="workspace_not_found", details=[Problem(field, reason).detail()])


# -- workspaces -----------------------------------------------------------------------------------


def existing_workspace(session: Session, principal: Principal, external_user_id: str) -> int:
    """The account of ``external_user_id``, if it exists and the caller may act for it (the operator
    for every account, an account token for itself only)."""
    with session.begin():
        found = account_by_external_id(session, external_user_id, create=False)
    if found is None or (not principal.is_operator and found != principal.account_id):
        raise _not_found("external_user_id", "no workspace with this external_user_id")
    return found


def workspace_for_initiate(session: Session, principal: Principal,
                           external_user_id: str) -> int | Callable[[Session], int]:
    """The operator's first use of an ``external_user_id`` makes its workspace, inside the
    handshake's transaction (so a refused initiate makes none); an account token acts for itself."""
    if not principal.is_operator:
        return existing_workspace(session, principal, external_user_id)

    def found_or_made(transaction: Session) -> int:
        account_id = account_by_external_id(transaction, external_user_id, create=True)
        assert account_id is not None  # just inserted, or there already
        return account_id

    return found_or_made


def public_workspace(session: Session, principal: Principal, workspace_id: str, field: str = "workspaceId") -> int:
    """A public API ``workspaceId`` (an account id) the caller may act for."""
    account_id = id_from_text(workspace_id)
    if account_id is None:
        raise _not_found(field, "no such workspace")
    try:
        with session.begin():
            visible_account(session, principal, account_id)
    except NotFound:
        raise _not_found(field, "no such workspace") from None
    return account_id


def _check_secret_workspace(session: Session, principal: Principal, account_id: int, secret_id: str) -> None:
    """The operator names the workspace with ``external_user_id``: a secret issued to another one
    means the integrator sent another id than at initiate, which Airbyte calls "Workspace not found"."""
    if not principal.is_operator:
        return  # an account's view stops at itself: another's secret is just unknown to it
    with session.begin():
        owner = handshake.secret_owner(session, secret_id)
    if owner is not None and owner != account_id:
        raise _not_found("external_user_id", "not the external_user_id the OAuth handshake was initiated with")


def connector_workspace(session: Session, principal: Principal, source_id: int) -> int:
    """The account a connector call acts for: an account token's own (the use case then finds the
    source in it, or 404s), the operator's the source's workspace (404 when there is no source)."""
    if principal.account_id is not None:
        return principal.account_id
    with session.begin():
        found = session.scalars(select(Source.account_id).where(
            Source.id == source_id, Source.deleted_at.is_(None))).one_or_none()
    if found is None:
        raise NotFound(f"source {source_id} not found", details=[Problem("id", "no such connector").detail()])
    account_id: int = found
    return account_id


# -- use cases ------------------------------------------------------------------------------------


def initiate(session: Session, catalog: Catalog, keyring: Keyring, principal: Principal, workspace: str | None,
             external_user_id: str | None, connector_type: str, redirect_url: str,
             inputs: Mapping[str, Any], public_url: str, field: str) -> handshake.Consent:
    """Start the handshake for a workspace named by ``external_user_id`` (embedded API) or by
    ``workspace`` (public API's workspaceId)."""
    card = connector_card(catalog, connector_type, field)
    account: int | Callable[[Session], int]
    if workspace is not None:
        account = public_workspace(session, principal, workspace)
    else:
        assert external_user_id is not None
        account = workspace_for_initiate(session, principal, external_user_id)
    return handshake.initiate(session, catalog, keyring, account, card.type, redirect_url, None, inputs, public_url)


def create_connector(session: Session, catalog: Catalog, keyring: Keyring, hooks: SourceHooks,
                     account_id: int, card: ReportCard, name: str | None, properties: Mapping[str, Any],
                     secret_id: str | None, raw_body: Mapping[str, Any]) -> SourceView:
    """Create the source (Airbyte's connector or source); the name is made up when not given."""
    display_name = name or f"{card.display_name} {secrets.token_hex(3)}"
    change = SourceChange(display_name=display_name, properties=dict(properties), secret_id=secret_id)
    try:
        source, _ = create_source(session, catalog, keyring, hooks, account_id, card.type, change, raw_body)
    except ApiError as error:
        if any(detail.get("field") == "secret_id" for detail in error.details):
            raise ApiError(f"{INVALID_SECRET}: {error.message}", details=error.details, type=error.type,
                           status=error.status) from None
        raise
    return source


def create_embedded_connector(session: Session, catalog: Catalog, keyring: Keyring, hooks: SourceHooks,
                              principal: Principal, body: Mapping[str, Any]) -> tuple[SourceView, ReportCard]:
    card = connector_card(catalog, body["connector_type"], "connector_type")
    account_id = existing_workspace(session, principal, body["external_user_id"])
    secret_id = body.get("server_side_oauth_secret_id")
    if secret_id:
        _check_secret_workspace(session, principal, account_id, secret_id)
    source = create_connector(session, catalog, keyring, hooks, account_id, card, body.get("name"),
                              body.get("replication_config") or {}, secret_id, body)
    return source, card


def create_public_source(session: Session, catalog: Catalog, keyring: Keyring, hooks: SourceHooks,
                         principal: Principal, body: Mapping[str, Any]) -> tuple[SourceView, ReportCard]:
    configuration = dict(body["configuration"])
    source_type = configuration.pop("sourceType", None)
    if not isinstance(source_type, str) or not source_type:
        raise Invalid.from_problems([Problem("configuration.sourceType", "is required: the source's type")])
    card = connector_card(catalog, source_type, "configuration.sourceType")
    account_id = public_workspace(session, principal, body["workspaceId"])
    source = create_connector(session, catalog, keyring, hooks, account_id, card, body["name"], configuration,
                              body.get("secretId"), body)
    return source, card


def put_oauth_app(session: Session, keyring: Keyring, catalog: Catalog, principal: Principal,
                  connector_type: str, configuration: Any, field: str) -> tuple[apps.AppView, ReportCard]:
    """An OAuth app override for the caller's scope (the operator's: organization, an account's:
    workspace). The public API's workspace override acts as that workspace."""
    card = connector_card(catalog, connector_type, field)
    return apps.view_of(apps.put_app(session, keyring, catalog, principal, card.type, configuration)), card


def put_workspace_oauth_app(session: Session, keyring: Keyring, catalog: Catalog, principal: Principal,
                            workspace: str, name: str, configuration: Any) -> tuple[apps.AppView, ReportCard]:
    account_id = public_workspace(session, principal, workspace)
    return put_oauth_app(session, keyring, catalog, Principal("account", account_id=account_id), name,
                         configuration, "name")


def credentials_view(view: apps.AppView, card: ReportCard, principal: Principal) -> dict[str, Any]:
    """An OAuth app as the embedded API shows it."""
    organization = view.scope_type == OPERATOR_SCOPE
    return {"id": view.id, "scope_type": "organization" if organization else "workspace",
            "scope_id": None if organization else str(principal.account_id),
            "connector_type": connector_name(card), "created_at": view.created_at, "updated_at": view.updated_at}


def connector_view(source: SourceView, card: ReportCard) -> dict[str, Any]:
    """A source as the embedded API's connector."""
    return {"id": source.id, "name": source.display_name,
            "source_template": {"id": card.type, "name": card.display_name, "connector_type": connector_name(card)},
            "replication_config": dict(source.properties), "created_at": source.created_at,
            "updated_at": source.updated_at}


def public_source_view(source: SourceView, card: ReportCard) -> dict[str, Any]:
    """A source as the public API's SourceResponse (credentials never shown, as everywhere)."""
    return {"sourceId": source.id, "name": source.display_name, "sourceType": connector_name(card),
            "workspaceId": str(source.account_id), "configuration": dict(source.properties),
            "createdAt": source.created_at}
