"""OAuth apps: the client credentials a handshake (and later a token refresh) runs under.

An app is registered with the provider by the operator (one per source type, for every account)
or by an account that wants its own branding on the consent screen (the white-label override).
Which app a handshake uses is decided by :func:`resolve_app`, in this order:

1. the source's own client properties (given in ``oauth_input_configuration`` at initiate, or
   stored on the source being reconnected) — unless they are just the credentials a managed app
   put there, in which case the managed app's current ones are used;
2. the account's override;
3. the operator's app set over the API;
4. the operator's app from the ``CONNECT_OAUTH_APPS`` file.

Client secrets are sealed at rest and never returned; ``client_id`` is public (every consent URL
carries it) and kept plain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flask import Flask, current_app
from jsonschema import Draft7Validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import redaction
from ..auth import Principal
from ..catalog import Catalog
from ..catalog.cards import ReportCard
from ..catalog.sections import OAuthSection
from ..crypto import Keyring
from ..crypto import Sealed as SealedValue
from ..db import begin_write
from ..errors import Invalid, NotFound, Problem
from ..models import utcnow
from .models import ACCOUNT_SCOPE, OPERATOR_SCOPE, SOURCE_SCOPE, OAuthApp, oauth_app_associated_data

EXTENSION_KEY = "connect.oauth_apps"
CONFIGURATION_KEYS = ("client_id", "client_secret", "scopes")

# The JSON Schema of an app's ``configuration`` (served by GET /v4/oauth/credentials/spec).
CONFIGURATION_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["client_id", "client_secret"],
    "additionalProperties": False,
    "properties": {
        "client_id": {"type": "string", "minLength": 1, "maxLength": 500,
                      "description": "The app's client id at the provider."},
        "client_secret": {"type": "string", "minLength": 1, "maxLength": 4000, "writeOnly": True,
                          "description": "The app's client secret; stored encrypted, never returned."},
        "scopes": {"type": "array", "maxItems": 100,
                   "items": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^\S+$"},
                   "description": "Scopes to request instead of the source type's defaults."},
    },
}
_CONFIGURATION_VALIDATOR = Draft7Validator(CONFIGURATION_SCHEMA)


class OAuthAppsFileError(Exception):
    """The ``CONNECT_OAUTH_APPS`` file cannot be used; start-up stops with this message."""


@dataclass(frozen=True)
class ClientCredentials:
    """The app a handshake runs under, with its secret opened for the one exchange that needs it."""

    scope: str  # operator | account | source
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AppView:
    """An app as the API shows it: never its secret."""

    id: int | None
    scope_type: str
    source_type: str
    client_id: str
    scopes: list[str] | None
    origin: str  # "api" | "config_file"
    created_at: datetime | None
    updated_at: datetime | None


def oauth_card(catalog: Catalog, source_type: str, field_name: str = "source_type") -> ReportCard:
    """The card of a type with a managed OAuth handshake, or 422 saying why there is none."""
    card = catalog.get(source_type)
    if card is None:
        raise Invalid(f"unknown source type {source_type!r}", type="invalid_type",
                      details=[Problem(field_name, "not a known source type").detail()])
    oauth_section(card, field_name)
    return card


def oauth_section(card: ReportCard, field_name: str = "source_type") -> OAuthSection:
    """The card's ``oauth`` section, or 422 saying the type has no managed OAuth handshake."""
    if card.oauth is None:
        raise Invalid(f"source type {card.type!r} has no managed OAuth handshake (no oauth section "
                      "in its report card); give its credentials as properties instead",
                      type="oauth_not_supported",
                      details=[Problem(field_name, "no managed OAuth handshake").detail()])
    return card.oauth


def configuration_spec(card: ReportCard, callback_url: str) -> dict[str, Any]:
    """The JSON Schema of ``configuration`` for one type, annotated with what the provider needs."""
    spec = {
        **CONFIGURATION_SCHEMA,
        "title": f"OAuth app for {card.display_name} ({card.type})",
        "description": f"Register {callback_url} as the app's redirect URI at the provider.",
        "x-redirect-uri": callback_url,
        "x-default-scopes": list(oauth_section(card).scopes),
    }
    if oauth_section(card).docs_url:
        spec["x-docs-url"] = oauth_section(card).docs_url
    return spec


def parse_configuration(configuration: Any, prefix: str = "configuration") -> tuple[str, str, dict[str, Any]]:
    """(client_id, client_secret, the non-secret rest) of a configuration, or 422 naming each
    broken field. Reasons are written here, never taken from jsonschema: its messages quote values."""
    problems: list[Problem] = []
    if isinstance(configuration, dict):
        problems.extend(Problem(f"{prefix}.{name}", "is required")
                        for name in CONFIGURATION_SCHEMA["required"] if name not in configuration)
        problems.extend(Problem(f"{prefix}.{name}", f"unknown key; allowed: {', '.join(CONFIGURATION_KEYS)}")
                        for name in sorted(set(configuration) - set(CONFIGURATION_KEYS)))
    for error in sorted(_CONFIGURATION_VALIDATOR.iter_errors(configuration), key=lambda e: list(e.path)):
        if error.validator in ("required", "additionalProperties"):
            continue  # reported above, one entry per key
        path = ".".join(str(p) for p in error.absolute_path)
        problems.append(Problem(f"{prefix}.{path}" if path else prefix,
                                f"fails the {error.validator!r} rule ({json.dumps(error.validator_value)})"))
    if problems:
        raise Invalid.from_problems(problems, type="invalid_configuration")
    redaction.remember(configuration["client_secret"])
    extra = {"scopes": list(configuration["scopes"])} if "scopes" in configuration else {}
    return configuration["client_id"], configuration["client_secret"], extra


def _scope_of(principal: Principal) -> tuple[str, int | None]:
    return (OPERATOR_SCOPE, None) if principal.is_operator else (ACCOUNT_SCOPE, principal.account_id)


def _app_row(session: Session, scope: str, account_id: int | None, source_type: str,
             *, lock: bool = False) -> OAuthApp | None:
    query = select(OAuthApp).where(OAuthApp.scope == scope, OAuthApp.source_type == source_type)
    query = query.where(OAuthApp.account_id.is_(None) if account_id is None else OAuthApp.account_id == account_id)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def put_app(session: Session, keyring: Keyring, catalog: Catalog, principal: Principal,
            source_type: str, configuration: Any) -> OAuthApp:
    """Set (create or replace) the caller's app for a type: the operator's, or the account's override."""
    card = oauth_card(catalog, source_type)
    client_id, client_secret, extra = parse_configuration(configuration)
    scope, account_id = _scope_of(principal)
    sealed = keyring.seal(client_secret, oauth_app_associated_data(scope, account_id, card.type))

    def upsert() -> OAuthApp:
        with begin_write(session):
            row = _app_row(session, scope, account_id, card.type, lock=True)
            now = utcnow()
            if row is None:
                row = OAuthApp(scope=scope, account_id=account_id, source_type=card.type, created_at=now)
                session.add(row)
            row.client_id, row.extra, row.updated_at = client_id, extra, now
            row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
            session.flush()
        return row

    try:
        return upsert()
    except IntegrityError:
        # Two first PUTs raced (PostgreSQL: neither saw the other's row); now the winner's row
        # exists, and this one replaces it, as if it had come second.
        session.rollback()
        return upsert()


def view_of(row: OAuthApp) -> AppView:
    return AppView(row.id, row.scope, row.source_type, row.client_id, row.extra.get("scopes"), "api",
                   row.created_at, row.updated_at)


def list_apps(session: Session, principal: Principal) -> list[AppView]:
    """The caller's apps: the operator's (API and config file), or the account's overrides."""
    scope, account_id = _scope_of(principal)
    with session.begin():
        query = select(OAuthApp).where(OAuthApp.scope == scope).order_by(OAuthApp.source_type)
        if account_id is not None:
            query = query.where(OAuthApp.account_id == account_id)
        views = {row.source_type: view_of(row) for row in session.scalars(query)}
    if principal.is_operator:
        for app in configured_apps().values():
            views.setdefault(app.source_type, AppView(
                None, OPERATOR_SCOPE, app.source_type, app.client_id,
                list(app.scopes) if app.scopes is not None else None, "config_file", None, None))
    return [views[name] for name in sorted(views)]


def delete_app(session: Session, principal: Principal, source_type: str) -> None:
    scope, account_id = _scope_of(principal)
    with begin_write(session):
        row = _app_row(session, scope, account_id, source_type, lock=True)
        if row is None:
            how = " (apps from CONNECT_OAUTH_APPS are changed in that file)" \
                if principal.is_operator and source_type in configured_apps() else ""
            raise NotFound(f"no {scope} OAuth app for source type {source_type!r}{how}",
                           details=[{"field": "source_type", "reason": "no such OAuth app"}])
        session.delete(row)


def _opened(keyring: Keyring, row: OAuthApp) -> ClientCredentials:
    secret = keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)
    scopes = row.extra.get("scopes")
    return ClientCredentials(row.scope, row.client_id, secret, tuple(scopes) if scopes is not None else None)


def resolve_app(session: Session, keyring: Keyring, card: ReportCard, account_id: int,
                own_values: Mapping[str, Any], own_field_prefix: str) -> ClientCredentials:
    """The app a handshake of ``card`` for the account runs under (see the module docstring).

    ``own_values`` are the source's own property values (the initiate request's input, over the
    stored values of a source being reconnected). Runs inside the caller's transaction.
    """
    client_properties = oauth_section(card).client_properties
    id_property = client_properties.client_id
    secret_property = client_properties.client_secret
    managed: list[OAuthApp | ConfiguredApp] = [app for app in (
        _app_row(session, ACCOUNT_SCOPE, account_id, card.type),
        _app_row(session, OPERATOR_SCOPE, None, card.type),
        configured_apps().get(card.type),
    ) if app is not None]

    own_id = own_values.get(id_property) if id_property else None
    if own_id and own_id not in {app.client_id for app in managed}:
        own_secret = own_values.get(secret_property) if secret_property else None
        if not own_secret:
            name = secret_property or "client_secret"
            raise Invalid(f"{own_field_prefix}.{name} is missing: a source's own OAuth app "
                          f"({id_property}) needs its secret too", type="invalid_configuration",
                          details=[{"field": f"{own_field_prefix}.{name}", "reason": "is required"}])
        return ClientCredentials(SOURCE_SCOPE, str(own_id), str(own_secret))
    if managed:
        winner = managed[0]  # only the winner's secret is opened
        return _opened(keyring, winner) if isinstance(winner, OAuthApp) else winner.credentials
    raise Invalid(
        f"no OAuth app for source type {card.type!r}: the operator sets one with "
        "PUT /v4/oauth/credentials (operator token) or CONNECT_OAUTH_APPS, the account its own "
        "with PUT /v4/oauth/credentials (account token)"
        + (f", or give {id_property} and {secret_property} in oauth_input_configuration"
           if id_property and secret_property else ""),
        type="oauth_app_missing",
        details=[{"field": "configuration",
                  "reason": f"no OAuth app (client_id, client_secret) configured for {card.type}"}])


# -- apps from the CONNECT_OAUTH_APPS file ------------------------------------------------------


@dataclass(frozen=True)
class ConfiguredApp:
    source_type: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] | None = None

    @property
    def credentials(self) -> ClientCredentials:
        return ClientCredentials(OPERATOR_SCOPE, self.client_id, self.client_secret, self.scopes)


def load_configured_apps(path: str, catalog: Catalog) -> dict[str, ConfiguredApp]:
    """Read and check the file; every problem is reported at once, never with a secret's value."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise OAuthAppsFileError(f"CONNECT_OAUTH_APPS: cannot read {path}: {error.__class__.__name__}") from None
    except ValueError as error:
        raise OAuthAppsFileError(f"CONNECT_OAUTH_APPS: {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise OAuthAppsFileError(f"CONNECT_OAUTH_APPS: {path} must hold an object keyed by source type")
    apps: dict[str, ConfiguredApp] = {}
    problems: list[str] = []
    for source_type, configuration in document.items():
        try:
            card = oauth_card(catalog, source_type)
            client_id, client_secret, extra = parse_configuration(configuration, prefix=source_type)
        except Invalid as error:
            problems.append(error.message)
            continue
        scopes = extra.get("scopes")
        apps[card.type] = ConfiguredApp(card.type, client_id, client_secret,
                                        tuple(scopes) if scopes is not None else None)
    if problems:
        raise OAuthAppsFileError(f"CONNECT_OAUTH_APPS: {path}: " + "; ".join(problems))
    return apps


def init_app(app: Flask, catalog: Catalog) -> None:
    path = app.config.get("OAUTH_APPS")
    apps = load_configured_apps(path, catalog) if path else {}
    app.extensions[EXTENSION_KEY] = MappingProxyType(apps)
    if apps:
        app.logger.info("operator OAuth apps loaded from CONNECT_OAUTH_APPS",
                        extra={"source_types": sorted(apps)})


def configured_apps(app: Flask | None = None) -> Mapping[str, ConfiguredApp]:
    apps: Mapping[str, ConfiguredApp] = (app or current_app).extensions[EXTENSION_KEY]
    return apps
