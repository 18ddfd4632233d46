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


class ReportCardSchema(Schema):
    type = fields.String(required=True)
    current_step = fields.Integer(required=True)
    current_step_type = fields.String(required=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    details = fields.Dict()


class SourceTypeSummarySchema(Schema):
    type = fields.String(required=True)
    display_name = fields.String(required=True)
    details = fields.Dict(required=True)
    steps = fields.List(fields.String(), required=True)
    managed_oauth = fields.Boolean(required=True)
