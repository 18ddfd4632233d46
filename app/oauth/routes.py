"""``/v4/oauth``: initiate, callback, OAuth app credentials. Thin views over handshake.py and apps.py."""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE
from werkzeug.wrappers import Response  # what redirect() returns; Flask's responses are ones too

from .. import db
from ..auth import account_only, current_account_id, current_principal, public
from ..catalog import get_catalog
from ..crypto import get_keyring
from ..schemas import ApiErrorSchema
from ..security_headers import shows_secret_once
from ..wiring import services
from . import apps, handshake
from .schemas import ConsentSchema, CredentialsPutSchema, CredentialsSchema, InitiateSchema, SpecArgsSchema

blueprint = Blueprint("oauth", __name__, url_prefix="/v4/oauth",
                      description="The managed OAuth handshake and OAuth app credentials.")


@blueprint.route("/initiate")
class Initiate(MethodView):
    decorators = [account_only]

    @blueprint.arguments(InitiateSchema)
    @blueprint.response(200, ConsentSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start the handshake: send the user's browser to ``consent_url`` (valid for 10 minutes)."""
        consent = handshake.initiate(
            db.session(), get_catalog(), get_keyring(), current_account_id(), body["source_type"],
            body["redirect_url"], body.get("source_id"), body["oauth_input_configuration"],
            current_app.config["PUBLIC_URL"])
        return {"consent_url": consent.consent_url, "expires_at": consent.expires_at,
                "remaining_inputs": list(consent.remaining_inputs)}


@blueprint.route("/callback")
@public
class Callback(MethodView):
    @shows_secret_once
    @blueprint.response(302, description="To the integrator's redirect_url, with secret_id (source_id "
                        "for a reconnect) or error and error_description added to its query.")
    @blueprint.alt_response(400, schema=ApiErrorSchema, description="Missing, unknown, used or expired state.")
    @blueprint.doc(security=[], parameters=[
        {"in": "query", "name": name, "required": name == "state", "schema": {"type": "string"}}
        for name in ("code", "state", "error", "error_description")])
    def get(self) -> Response:
        """Where the provider sends the user's browser back to; needs no token."""
        config = current_app.config
        location = handshake.complete_callback(
            db.session(), get_catalog(), get_keyring(), services().source_hooks, request.args, config["PUBLIC_URL"],
            config["HTTP_TIMEOUT"], config["SECRET_TTL"])
        response = redirect(location, 302)
        # The page the browser lands on must not leak this URL (it held the code) in a Referer.
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


@blueprint.route("/credentials")
class Credentials(MethodView):
    @blueprint.arguments(CredentialsPutSchema)
    @blueprint.response(200, CredentialsSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def put(self, body: dict[str, Any]) -> apps.AppView:
        """Set an OAuth app: the operator token sets the operator-wide one, an account token the
        account's own override. The secret is stored encrypted and never returned."""
        row = apps.put_app(db.session(), get_keyring(), get_catalog(), current_principal(),
                           body["source_type"], body["configuration"])
        return apps.view_of(row)

    @blueprint.response(200, CredentialsSchema(many=True))
    def get(self) -> list[apps.AppView]:
        """The caller's OAuth apps (the operator's, or the account's overrides), without secrets."""
        return apps.list_apps(db.session(), current_principal())


@blueprint.route("/credentials/spec")
class CredentialsSpec(MethodView):
    @blueprint.arguments(SpecArgsSchema, location="query", unknown=RAISE)
    @blueprint.response(200)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The JSON Schema of ``configuration`` for a source type, with the redirect URI to register."""
        card = apps.oauth_card(get_catalog(), args["source_type"])
        return apps.configuration_spec(card, handshake.callback_url(current_app.config["PUBLIC_URL"]))


@blueprint.route("/credentials/<source_type:source_type>")
class CredentialsByType(MethodView):
    @blueprint.response(204)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(405, schema=ApiErrorSchema, description="source_type 'spec': that path is "
                            "GET /v4/oauth/credentials/spec")
    def delete(self, source_type: str) -> None:
        """Remove the caller's app for the type (sources keep the credentials they already have)."""
        apps.delete_app(db.session(), current_principal(), source_type)
