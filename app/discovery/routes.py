"""Connection checks, discovery on demand, streams and field selection of a source."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from .. import db
from ..auth import account_only, current_account_id
from ..catalog import get_catalog
from ..schemas import ApiErrorSchema
from . import service
from .schemas import ConnectionCheckSchema, SelectionSchema, StreamSchema, StreamSummarySchema

blueprint = Blueprint("streams", __name__, url_prefix="/v4/sources",
                      description="Connection checks, discovered streams and field selection.")


def summaries(streams: list) -> Response:
    return jsonify([service.stream_summary(s) for s in streams])


@blueprint.route("/<int:source_id>/last-connection-check")
class LastConnectionCheck(MethodView):
    decorators = [account_only]

    @blueprint.response(200, ConnectionCheckSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int) -> Any:
        """The latest connection check and discovery of the source (404 before the first)."""
        return service.last_check(db.session(), current_account_id(), source_id)


@blueprint.route("/<int:source_id>/discover")
class Discover(MethodView):
    decorators = [account_only]

    @blueprint.response(202, ConnectionCheckSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def post(self, source_id: int) -> Any:
        """Queue a connection check and discovery now."""
        return service.request_discovery(db.session(), get_catalog(), current_account_id(), source_id)


@blueprint.route("/<int:source_id>/streams")
class Streams(MethodView):
    decorators = [account_only]

    @blueprint.response(200, StreamSummarySchema(many=True))
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int) -> Response:
        """The discovered streams with their effective selection."""
        return summaries(service.list_streams(db.session(), current_account_id(), source_id))


@blueprint.route("/<int:source_id>/streams/<int:stream_id>")
class StreamById(MethodView):
    decorators = [account_only]

    @blueprint.response(200, StreamSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int, stream_id: int) -> Response:
        """A stream's schema and metadata, with the effective ``selected`` on every breadcrumb."""
        return jsonify(service.stream_body(service.get_stream(db.session(), current_account_id(), source_id,
                                                              stream_id)))


@blueprint.route("/<int:source_id>/streams/metadata")
class StreamMetadata(MethodView):
    decorators = [account_only]

    @blueprint.arguments(SelectionSchema)
    @blueprint.response(200, StreamSummarySchema(many=True))
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def put(self, body: dict[str, Any], source_id: int) -> Response:
        """Select streams and fields (and replication settings); all or nothing."""
        return summaries(service.update_selection(db.session(), get_catalog(), current_account_id(), source_id,
                                                  body["streams"]))
