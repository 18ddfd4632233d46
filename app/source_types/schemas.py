from marshmallow import Schema, fields


class PropertySchema(Schema):
    name = fields.String(required=True)
    is_required = fields.Boolean(required=True)
    is_credential = fields.Boolean(required=True)
    system_provided = fields.Boolean(required=True)
    property_type = fields.String(required=True)
    json_schema = fields.Raw(required=True, allow_none=True)
    provided = fields.Boolean(required=True)
    tap_mutable = fields.Boolean(required=True)


class StepSchema(Schema):
    type = fields.String(required=True)
    properties = fields.List(fields.Nested(PropertySchema), required=True)


class OAuthHandshakeSchema(Schema):
    fills = fields.List(fields.String(), required=True, metadata={
        "description": "Properties of the oauth step the managed handshake provides."})
    remaining_inputs = fields.List(fields.String(), required=True, metadata={
        "description": "Required properties of the oauth step it does not: set them on the source."})


class AvailabilitySchema(Schema):
    configurable = fields.Boolean(required=True, metadata={
        "description": "Whether this deployment can check and discover sources of the type (its connector "
                       "is here: for a Singer type, its tap is installed)."})
    reason = fields.String(allow_none=True, metadata={"description": "Why not, in plain words (null when it can)."})


class ReportCardSchema(Schema):
    type = fields.String(required=True)
    current_step = fields.Integer(required=True)
    current_step_type = fields.String(required=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    details = fields.Dict()
    upgrade_available = fields.Dict(allow_none=True, metadata={"description": "{type}: the successor type."})
    oauth_handshake = fields.Nested(OAuthHandshakeSchema, metadata={
        "description": "Only for types with a managed OAuth handshake."})
    availability = fields.Nested(AvailabilitySchema, metadata={
        "description": "Only on GET /v4/source-types/{type}: whether this deployment can configure the "
                       "type end to end, as of this request."})


class SourceTypeSummarySchema(Schema):
    type = fields.String(required=True)
    display_name = fields.String(required=True)
    aliases = fields.List(fields.String(), required=True, metadata={
        "description": "Short names the Airbyte dialect accepts for this type (connector_type, sourceType), "
                       "any case."})
    details = fields.Dict(required=True)
    upgrade_available = fields.Dict(required=True, allow_none=True)
    steps = fields.List(fields.String(), required=True)
    managed_oauth = fields.Boolean(required=True)
