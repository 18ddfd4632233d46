from marshmallow import Schema, fields, validate

from ..schemas import TextInteger, display_text, utc_representable
from ..source_types.schemas import StepSchema


class SourceCreateSchema(Schema):
    type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    display_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), display_text])
    name = fields.String(validate=validate.Length(min=1, max=49),
                         metadata={"description": "Default: derived from display_name."})
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    secret_id = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "From the OAuth callback: provides the oauth step's credentials (once)."})
    paused_at = fields.AwareDateTime(allow_none=True, validate=utc_representable)


class SourceUpdateSchema(Schema):
    display_name = fields.String(validate=[validate.Length(min=1, max=255), display_text])
    properties = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    secret_id = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "From the OAuth callback: provides the oauth step's credentials (once)."})
    paused_at = fields.AwareDateTime(allow_none=True, validate=utc_representable)


class SourceReportCardSchema(Schema):
    """A source's report card: the type's card without ``details``, with its own position.

    When the source's type has no card any more (the operator removed it), ``current_step`` and
    ``current_step_type`` are null, ``steps`` is empty and ``unavailable`` is true."""

    type = fields.String(required=True)
    current_step = fields.Integer(required=True, allow_none=True)
    current_step_type = fields.String(required=True, allow_none=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    unavailable = fields.Boolean(metadata={
        "description": "Present (true) only when the type's report card is not in the catalog: the "
                       "source can be read and deleted, not changed or checked."})
    setup_error = fields.Dict(metadata={"description": "Why the source is broken (only then); "
                                                       "type_unavailable when the type has no card."})


class ScheduleSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["interval", "cron"]))
    unit = fields.String(validate=validate.OneOf(["minute"]))
    interval = fields.Float()
    cron_expression = fields.String()
    next_fire_time = fields.String(required=True, allow_none=True, metadata={
        "description": "Always null: this service runs no replication itself."})


class SourceSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    display_name = fields.String(required=True)
    type = fields.String(required=True)
    properties = fields.Dict(required=True)
    report_card = fields.Nested(SourceReportCardSchema, required=True)
    schedule = fields.Nested(ScheduleSchema, required=True, allow_none=True, metadata={
        "description": "From cron_expression, else frequency_in_minutes, else the type's default "
                       "interval; null while paused or deleted, and for types without scheduling."})
    stitch_client_id = fields.Integer(required=True, metadata={"description": "The account's id."})
    setup_state = fields.String(required=True, validate=validate.OneOf(["incomplete", "connected", "broken"]))
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    paused_at = fields.String(required=True, allow_none=True)
    system_paused_at = fields.String(required=True, allow_none=True)
    deleted_at = fields.String(required=True, allow_none=True)


class SourcePageSchema(Schema):
    data = fields.List(fields.Nested(SourceSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ListArgsSchema(Schema):
    limit = TextInteger(load_default=25, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class EventSchema(Schema):
    type = fields.String(required=True)
    at = fields.String(required=True)
    detail = fields.Dict(required=True)
