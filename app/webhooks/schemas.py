"""Request and response bodies of ``/v4/webhooks``."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..schemas import Timestamp, display_text
from .events import ALL_EVENTS, EVENT_TYPES
from .models import STATUSES

MAX_OVERLAP_SECONDS = 7 * 24 * 3600
EVENT_NAMES = [*EVENT_TYPES, ALL_EVENTS]

_event_name = fields.String(validate=validate.OneOf(
    EVENT_NAMES, error="unknown event type {input!r}: one of {choices}"))
_events_doc = {"description": "Event types to receive (or \"*\" for every type, including later ones)."}


class WebhookCreateSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048), metadata={
        "description": "https URL of a public host (http on a loopback host only when the operator allows it)."})
    events = fields.List(_event_name, required=True, validate=validate.Length(min=1, max=len(EVENT_NAMES)),
                         metadata=_events_doc)
    description = fields.String(allow_none=True, validate=[validate.Length(max=200), display_text])


class WebhookUpdateSchema(Schema):
    url = fields.String(validate=validate.Length(min=1, max=2048))
    events = fields.List(_event_name, validate=validate.Length(min=1, max=len(EVENT_NAMES)), metadata=_events_doc)
    description = fields.String(allow_none=True, validate=[validate.Length(max=200), display_text])


class RotateSecretSchema(Schema):
    overlap_seconds = fields.Integer(strict=True, load_default=24 * 3600,
                                     validate=validate.Range(min=0, max=MAX_OVERLAP_SECONDS), metadata={
        "description": "How long the current secrets keep signing beside the new one (default 24 h)."})


class SigningSecretSchema(Schema):
    generation = fields.Integer(required=True)
    created_at = Timestamp(required=True)
    expires_at = Timestamp(required=True, allow_none=True, metadata={
        "description": "When it stops signing; null for the newest."})


class WebhookSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    events = fields.List(fields.String(), required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    signing_secrets = fields.List(fields.Nested(SigningSecretSchema), attribute="secrets", required=True,
                                  metadata={"description": "The secrets in use (never their values)."})


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(required=True, metadata={
        "description": "The new signing secret (whsec_…): shown in this response only."})


class DeliveryListArgsSchema(Schema):
    limit = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))


class DeliveryEventSchema(Schema):
    id = fields.Integer(required=True)
    type = fields.String(required=True)
    timestamp = Timestamp(required=True)
    data = fields.Dict(required=True)


class DeliverySchema(Schema):
    id = fields.Integer(required=True)
    webhook_id = fields.Integer(required=True)
    message_id = fields.String(required=True, metadata={"description": "The webhook-id header."})
    source_id = fields.Integer(required=True, allow_none=True)
    event = fields.Nested(DeliveryEventSchema, required=True, metadata={
        "description": "What is sent: the body is {type, timestamp, data}."})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    attempts = fields.Integer(required=True, metadata={"description": "Since created or redelivered."})
    created_at = Timestamp(required=True)
    next_attempt_at = Timestamp(required=True, allow_none=True)
    last_attempt_at = Timestamp(required=True, allow_none=True)
    last_status = fields.Integer(required=True, allow_none=True)
    last_error = fields.Dict(required=True, allow_none=True)
    last_response = fields.String(required=True, allow_none=True, metadata={
        "description": "The first characters of the endpoint's last answer (redacted)."})
    delivered_at = Timestamp(required=True, allow_none=True)


class DeliveryPageSchema(Schema):
    data = fields.List(fields.Nested(DeliverySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
