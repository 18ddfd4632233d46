"""Marshmallow schemas shared by several blueprints (the error shape, pagination)."""

from marshmallow import Schema, fields


class ErrorDetailSchema(Schema):
    field = fields.String()
    property = fields.String()
    reason = fields.String(required=True)


class ErrorBodySchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.List(fields.Dict(), required=True)


class ApiErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
