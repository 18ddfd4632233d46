"""The Airbyte dialect's routes: the embedded API under ``/api/v1`` and the public API under
``/v1``. Thin views over app/airbyte/service.py; errors in Airbyte's shape (app/airbyte/errors.py)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from .. import db
from ..auth import current_principal
from ..catalog import get_catalog
from ..crypto import get_keyring
from ..execute.schemas import ExecuteResultSchema, ExecuteSchema
from ..execute.service import execute_operation
from ..oauth import apps, handshake
from ..wiring import services
from . import service
from .errors import fields_named
from .schemas import (
    AirbyteErrorSchema,
    ConnectorCreateSchema,
    ConnectorSchema,
    EmbeddedConsentSchema,
    EmbeddedCredentialsPutSchema,
    EmbeddedCredentialsSchema,
    EmbeddedInitiateSchema,
    EmbeddedSpecArgsSchema,
    PublicConsentSchema,
    PublicInitiateSchema,
    PublicSourceCreateSchema,
    PublicSourceSchema,
    WorkspaceOAuthSchema,
)

embedded = Blueprint("airbyte_embedded", __name__, url_prefix="/api/v1",
                     description="The Airbyte dialect: Airbyte's embedded API (snake_case), over the same "
                                 "services and data as /v4.")
public = Blueprint("airbyte_public", __name__, url_prefix="/v1",
                   description="The Airbyte dialect: Airbyte's public API (camelCase), over the same "
                               "services and data as /v4.")

# How each dialect names the fields the services name.
EMBEDDED_NAMES = {"source_type": "connector_type", "type": "connector_type",
                  "secret_id": "server_side_oauth_secret_id", "properties": "replication_config",
                  "display_name": "name"}
PUBLIC_NAMES = {"source_type": "sourceType", "type": "configuration.sourceType", "redirect_url": "redirectUrl",
                "oauth_input_configuration": "oAuthInputConfiguration", "properties": "configuration",
                "secret_id": "secretId", "display_name": "name"}
PUBLIC_OAUTH_APP_NAMES = {"source_type": "name"}


def airbyte_errors(*statuses: int) -> dict[str, Any]:
    """The OpenAPI responses of the errors a view answers with, in Airbyte's shape (this also
    replaces flask-smorest's own 422, which documents the Stitch dialect's). The statuses every
    route shares are added in this shape by app/extensions.py; there is no catch-all ``default``."""
    error = {"description": "An error, in Airbyte's shape.",
             "content": {"application/json": {"schema": AirbyteErrorSchema}}}
    return {"responses": {str(status): error for status in (*statuses, 422)}}


# -- embedded API ---------------------------------------------------------------------------------


@embedded.route("/oauth/credentials")
class Credentials(MethodView):
    @fields_named(EMBEDDED_NAMES)
    @embedded.arguments(EmbeddedCredentialsPutSchema)
    @embedded.response(200, EmbeddedCredentialsSchema)
    @embedded.doc(**airbyte_errors(401))
    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set an OAuth app override: the operator token the organization's, a scoped (account)
        token its workspace's."""
        principal = current_principal()
        view, card = service.put_oauth_app(db.session(), get_keyring(), get_catalog(), principal,
                                           body["connector_type"], body["configuration"], "connector_type")
        return service.credentials_view(view, card, principal)


@embedded.route("/oauth/credentials/spec")
class CredentialsSpec(MethodView):
    @fields_named(EMBEDDED_NAMES)
    @embedded.arguments(EmbeddedSpecArgsSchema, location="query", unknown=RAISE)
    @embedded.response(200)
    @embedded.doc(**airbyte_errors(401))
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The JSON Schema of ``configuration`` for a connector type, with the redirect URI to register."""
        card = service.connector_card(get_catalog(), args["connector_type"], "connector_type")
        return apps.configuration_spec(apps.oauth_card(get_catalog(), card.type),
                                       handshake.callback_url(current_app.config["PUBLIC_URL"]))


@embedded.route("/integrations/connectors/oauth/initiate")
class Initiate(MethodView):
    @fields_named(EMBEDDED_NAMES)
    @embedded.arguments(EmbeddedInitiateSchema)
    @embedded.response(200, EmbeddedConsentSchema)
    @embedded.doc(**airbyte_errors(401, 404))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start the handshake for your user's workspace; the callback adds ``secret_id`` to redirect_url."""
        consent = service.initiate(
            db.session(), get_catalog(), get_keyring(), current_principal(), None, body["external_user_id"],
            body["connector_type"], body["redirect_url"], body["oauth_input_configuration"],
            current_app.config["PUBLIC_URL"], "connector_type")
        return {"consent_url": consent.consent_url}


@embedded.route("/integrations/connectors")
class Connectors(MethodView):
    @fields_named(EMBEDDED_NAMES)
    @embedded.arguments(ConnectorCreateSchema)
    @embedded.response(200, ConnectorSchema)
    @embedded.doc(**airbyte_errors(401, 404, 409, 410))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a connector (a source) in your user's workspace with the handshake's secret_id."""
        source, card = service.create_embedded_connector(
            db.session(), get_catalog(), get_keyring(), services().source_hooks, current_principal(), body)
        return service.connector_view(source, card)


@embedded.route("/connectors/sources/<int:source_id>/execute")
class Execute(MethodView):
    @fields_named(EMBEDDED_NAMES)
    @embedded.arguments(ExecuteSchema(unknown=RAISE))
    @embedded.response(200, ExecuteResultSchema)
    @embedded.doc(**airbyte_errors(401, 403, 404, 409, 424, 429))
    def post(self, body: dict[str, Any], source_id: int) -> Any:
        """Run an operation (list a stream's records, get one by key) on the connector: the execute
        of /v4/sources/{id}/execute. The operator token acts for the connector's workspace."""
        account_id = service.connector_workspace(db.session(), current_principal(), source_id)
        return execute_operation(db.session(), account_id, source_id, body)


# -- public API -----------------------------------------------------------------------------------


@public.route("/sources/initiateOAuth")
class PublicInitiate(MethodView):
    @fields_named(PUBLIC_NAMES)
    @public.arguments(PublicInitiateSchema)
    @public.response(200, PublicConsentSchema)
    @public.doc(**airbyte_errors(401, 404))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start the handshake for a workspace; the callback adds ``secret_id`` to redirectUrl."""
        consent = service.initiate(
            db.session(), get_catalog(), get_keyring(), current_principal(), body["workspace_id"], None,
            body["source_type"], body["redirect_url"], body["oauth_input_configuration"],
            current_app.config["PUBLIC_URL"], "sourceType")
        return {"consent_url": consent.consent_url}


@public.route("/sources")
class PublicSources(MethodView):
    @fields_named(PUBLIC_NAMES)
    @public.arguments(PublicSourceCreateSchema)
    @public.response(200, PublicSourceSchema)
    @public.doc(**airbyte_errors(401, 404, 409, 410))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a source; with ``secretId`` the handshake's values fill its OAuth properties."""
        source, card = service.create_public_source(
            db.session(), get_catalog(), get_keyring(), services().source_hooks, current_principal(), body)
        return service.public_source_view(source, card)


@public.route("/workspaces/<string:workspaceId>/oauthCredentials")
class WorkspaceOAuthCredentials(MethodView):
    @fields_named(PUBLIC_OAUTH_APP_NAMES)
    @public.arguments(WorkspaceOAuthSchema)
    @public.response(200)
    @public.doc(**airbyte_errors(401, 404))
    def put(self, body: dict[str, Any], workspaceId: str) -> dict[str, Any]:  # noqa: N803 (Airbyte's name)
        """Set the workspace's OAuth app override (precedence: source > workspace > organization)."""
        service.put_workspace_oauth_app(db.session(), get_keyring(), get_catalog(), current_principal(),
                                        workspaceId, body["name"], body["configuration"])
        return {}
