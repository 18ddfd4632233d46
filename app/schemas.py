"""Marshmallow schemas shared by several blueprints (the error shape, pagination)."""

from datetime import datetime

from marshmallow import Schema, fields


class Timestamp(fields.DateTime):
    """UTC timestamps as ``2026-01-31T12:00:00.123456Z``, the one format of every response."""

    def _serialize(self, value: datetime | None, attr, obj, **kwargs):  # type: ignore[no-untyped-def]
        return None if value is None else value.isoformat().replace("+00:00", "Z")


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
