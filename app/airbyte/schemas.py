"""Request and response bodies of the Airbyte dialect: snake_case on the embedded API
(``/api/v1``), camelCase on the public API (``/v1``), as Airbyte has them."""

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, validate

from ..schemas import ErrorDetailSchema, Timestamp, display_text

_NAME = validate.Length(min=1, max=100)
_URL = validate.Length(min=1, max=2048)
_EXTERNAL_ID: list[Callable[[Any], Any]] = [validate.Length(min=1, max=200), display_text]
_CONNECTOR_TYPE = {"description": "A source type (platform.hubspot) or one of its aliases (hubspot), in any case."}


class AirbyteErrorSchema(Schema):
    """Airbyte's problem document; ``errors`` names each field and why."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.List(fields.Nested(ErrorDetailSchema), required=True)


# -- embedded API ---------------------------------------------------------------------------------


class EmbeddedCredentialsPutSchema(Schema):
    connector_type = fields.String(required=True, validate=_NAME, metadata=_CONNECTOR_TYPE)
    configuration = fields.Dict(required=True, metadata={
        "description": "{client_id, client_secret, scopes?}: see GET /api/v1/oauth/credentials/spec."})


class EmbeddedCredentialsSchema(Schema):
    id = fields.Integer(required=True, allow_none=True)
    scope_type = fields.String(required=True, validate=validate.OneOf(["organization", "workspace"]))
    scope_id = fields.String(required=True, allow_none=True)
    connector_type = fields.String(required=True)
    created_at = Timestamp(required=True, allow_none=True)
    updated_at = Timestamp(required=True, allow_none=True)


class EmbeddedSpecArgsSchema(Schema):
    connector_type = fields.String(required=True, validate=_NAME, metadata=_CONNECTOR_TYPE)


class EmbeddedInitiateSchema(Schema):
    external_user_id = fields.String(required=True, validate=_EXTERNAL_ID, metadata={
        "description": "Your id of the user: the workspace, made on first use by the operator token."})
    connector_type = fields.String(required=True, validate=_NAME, metadata=_CONNECTOR_TYPE)
    redirect_url = fields.String(required=True, validate=_URL)
    oauth_input_configuration = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                                            load_default=dict)


class EmbeddedConsentSchema(Schema):
    consent_url = fields.String(required=True)


class ConnectorCreateSchema(Schema):
    external_user_id = fields.String(required=True, validate=_EXTERNAL_ID)
    connector_type = fields.String(required=True, validate=_NAME, metadata=_CONNECTOR_TYPE)
    name = fields.String(validate=[validate.Length(min=1, max=255), display_text], metadata={
        "description": "Made up from the connector's name when not given."})
    server_side_oauth_secret_id = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "The secret_id the OAuth callback added to your redirect_url."})
    replication_config = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), metadata={
        "description": "Further properties of the source type (its report card's), e.g. start_date."})


class SourceTemplateSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    connector_type = fields.String(required=True)


class ConnectorSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    source_template = fields.Nested(SourceTemplateSchema, required=True)
    replication_config = fields.Dict(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)


# -- public API -----------------------------------------------------------------------------------


class PublicInitiateSchema(Schema):
    redirect_url = fields.String(required=True, data_key="redirectUrl", validate=_URL)
    source_type = fields.String(required=True, data_key="sourceType", validate=_NAME, metadata=_CONNECTOR_TYPE)
    workspace_id = fields.String(required=True, data_key="workspaceId", validate=_NAME)
    oauth_input_configuration = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                                            load_default=dict, data_key="oAuthInputConfiguration")


class PublicConsentSchema(Schema):
    consent_url = fields.String(required=True, data_key="consentUrl")


class PublicSourceCreateSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), display_text])
    workspaceId = fields.String(required=True, validate=_NAME)
    configuration = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), required=True,
                                metadata={"description": "sourceType (a type or an alias) and the source's "
                                                         "properties; with secretId the OAuth ones are filled in."})
    secretId = fields.String(validate=validate.Length(min=1, max=200))


class PublicSourceSchema(Schema):
    sourceId = fields.Integer(required=True)
    name = fields.String(required=True)
    sourceType = fields.String(required=True)
    workspaceId = fields.String(required=True)
    configuration = fields.Dict(required=True)
    createdAt = Timestamp(required=True)


class WorkspaceOAuthSchema(Schema):
    actorType = fields.String(required=True, validate=validate.OneOf(["source"]))
    name = fields.String(required=True, validate=_NAME, metadata=_CONNECTOR_TYPE)
    configuration = fields.Dict(required=True, metadata={"description": "{client_id, client_secret, scopes?}"})
