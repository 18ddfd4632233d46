"""``/v4/webhooks``: thin views over app/webhooks/service.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from .. import db
from ..auth import account_only, current_account_id
from ..crypto import get_keyring
from ..schemas import ApiErrorSchema
from ..security_headers import shows_secret_once
from . import get_runtime, service
from .models import WebhookDelivery, WebhookEvent
from .schemas import (
    DeliveryListArgsSchema,
    DeliveryPageSchema,
    DeliverySchema,
    RotateSecretSchema,
    WebhookCreateSchema,
    WebhookSchema,
    WebhookUpdateSchema,
    WebhookWithSecretSchema,
)

blueprint = Blueprint("webhooks", __name__, url_prefix="/v4/webhooks",
                      description="Signed webhooks (Standard Webhooks): endpoints, secrets and deliveries.")


def with_secret(result: service.WithSecret) -> dict[str, Any]:
    endpoint = result.endpoint
    return {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "events": endpoint.events, "created_at": endpoint.created_at, "updated_at": endpoint.updated_at,
            "secrets": endpoint.secrets, "secret": result.secret}


def delivery_json(delivery: WebhookDelivery, event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": delivery.id, "webhook_id": delivery.endpoint_id, "message_id": delivery.message_id,
        "source_id": delivery.source_id,
        "event": {"id": event.id, "type": event.type, "timestamp": event.occurred_at, "data": event.data},
        "status": delivery.status, "attempts": delivery.attempts, "created_at": delivery.created_at,
        "next_attempt_at": delivery.next_attempt_at, "last_attempt_at": delivery.last_attempt_at,
        "last_status": delivery.last_status, "last_error": delivery.last_error,
        "last_response": delivery.last_response, "delivered_at": delivery.delivered_at,
    }


@blueprint.route("")
class Webhooks(MethodView):
    decorators = [account_only]

    @shows_secret_once
    @blueprint.arguments(WebhookCreateSchema())
    @blueprint.response(201, WebhookWithSecretSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Register an endpoint; its signing secret is in this response, once."""
        result = service.create_endpoint(db.session(), get_keyring(), get_runtime(), current_account_id(), body)
        location = url_for("webhooks.WebhookById", webhook_id=result.endpoint.id)
        return with_secret(result), 201, {"Location": location}

    @blueprint.response(200, WebhookSchema(many=True))
    def get(self) -> Any:
        """The account's endpoints, oldest first."""
        return service.list_endpoints(db.session(), current_account_id())


@blueprint.route("/<int:webhook_id>")
class WebhookById(MethodView):
    decorators = [account_only]

    @blueprint.response(200, WebhookSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, webhook_id: int) -> Any:
        """One endpoint (its secrets' dates, never their values)."""
        return service.get_endpoint(db.session(), current_account_id(), webhook_id)

    @blueprint.arguments(WebhookUpdateSchema())
    @blueprint.response(200, WebhookSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def put(self, body: dict[str, Any], webhook_id: int) -> Any:
        """Change the URL, the events or the description; what is not given stays."""
        return service.update_endpoint(db.session(), get_runtime(), current_account_id(), webhook_id, body)

    @blueprint.response(204)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def delete(self, webhook_id: int) -> None:
        """Delete the endpoint, its secrets and its deliveries."""
        service.delete_endpoint(db.session(), current_account_id(), webhook_id)


@blueprint.route("/<int:webhook_id>/rotate-secret")
class RotateSecret(MethodView):
    decorators = [account_only]

    @shows_secret_once
    @blueprint.arguments(RotateSecretSchema())
    @blueprint.response(200, WebhookWithSecretSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], webhook_id: int) -> Any:
        """A new signing secret, shown once; the old one signs beside it for ``overlap_seconds``."""
        result = service.rotate_secret(db.session(), get_keyring(), get_runtime(), current_account_id(),
                                       webhook_id, timedelta(seconds=body["overlap_seconds"]))
        return with_secret(result)


@blueprint.route("/<int:webhook_id>/deliveries")
class Deliveries(MethodView):
    decorators = [account_only]

    @blueprint.arguments(DeliveryListArgsSchema(), location="query", unknown=RAISE)
    @blueprint.response(200, DeliveryPageSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, args: dict[str, Any], webhook_id: int) -> Any:
        """The endpoint's deliveries, newest first: ``?limit=`` (≤100), ``?cursor=``, ``?status=``."""
        rows, next_cursor = service.list_deliveries(db.session(), current_account_id(), webhook_id,
                                                    args["limit"], args["cursor"], args["status"])
        return {"data": [delivery_json(*row) for row in rows], "next_cursor": next_cursor}


@blueprint.route("/<int:webhook_id>/deliveries/<int:delivery_id>")
class DeliveryById(MethodView):
    decorators = [account_only]

    @blueprint.response(200, DeliverySchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, webhook_id: int, delivery_id: int) -> Any:
        """One delivery and the outcome of its last attempt."""
        return delivery_json(*service.get_delivery(db.session(), current_account_id(), webhook_id, delivery_id))


@blueprint.route("/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver")
class Redeliver(MethodView):
    decorators = [account_only]

    @blueprint.response(202, DeliverySchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    def post(self, webhook_id: int, delivery_id: int) -> Any:
        """Send the delivery again (same webhook-id), with a fresh retry window."""
        return delivery_json(*service.redeliver(db.session(), get_runtime(), current_account_id(), webhook_id,
                                                delivery_id))
