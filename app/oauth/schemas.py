"""Request and response bodies of ``/v4/oauth``."""

from marshmallow import Schema, fields, validate

from ..schemas import Timestamp, id_field


class InitiateSchema(Schema):
    source_type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    redirect_url = fields.String(required=True, validate=validate.Length(min=1, max=2048), metadata={
        "description": "Where the user's browser goes when the handshake ends: https, or http on a "
                       "loopback host; no fragment; one of the account's redirect_url_allowlist when set."})
    source_id = id_field(allow_none=True, metadata={
        "description": "Reconnect: the finished handshake re-authorises this source in place."})
    oauth_input_configuration = fields.Dict(
        keys=fields.String(), values=fields.Raw(allow_none=True), load_default=dict, metadata={
            "description": "Values the consent and token URLs need (the type's input_properties), and "
                           "optionally the source's own client_id/client_secret properties."})


class ConsentSchema(Schema):
    consent_url = fields.String(required=True)
    expires_at = Timestamp(required=True)
    remaining_inputs = fields.List(fields.String(), required=True, metadata={
        "description": "Required properties of the type's oauth step that the handshake does not "
                       "provide: set them on the source yourself (e.g. Google Analytics' view_id)."})


class CredentialsPutSchema(Schema):
    source_type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    configuration = fields.Dict(required=True, metadata={
        "description": "{client_id, client_secret, scopes?}: see GET /v4/oauth/credentials/spec."})


class CredentialsSchema(Schema):
    id = fields.Integer(required=True, allow_none=True,
                        metadata={"description": "Null for an app from the CONNECT_OAUTH_APPS file."})
    scope_type = fields.String(required=True, validate=validate.OneOf(["operator", "account"]))
    source_type = fields.String(required=True)
    client_id = fields.String(required=True)
    scopes = fields.List(fields.String(), allow_none=True)
    origin = fields.String(required=True, validate=validate.OneOf(["api", "config_file"]))
    created_at = Timestamp(required=True, allow_none=True)
    updated_at = Timestamp(required=True, allow_none=True)


class SpecArgsSchema(Schema):
    source_type = fields.String(required=True, validate=validate.Length(min=1, max=100))
