"""Connection checks, discovery on demand, streams and field selection of a source."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from .. import db
from ..auth import account_only, current_account_id
from ..catalog import get_catalog
from ..schemas import ApiErrorSchema
from . import service
from .schemas import (
    ConnectionCheckSchema,
    SelectionSchema,
    SingerCatalogSchema,
    StreamListArgsSchema,
    StreamSchema,
    StreamSummarySchema,
)

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

    @blueprint.arguments(StreamListArgsSchema(), location="query", unknown=RAISE)
    @blueprint.response(200, StreamSummarySchema(many=True))
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, args: dict[str, Any], source_id: int) -> Response:
        """The discovered streams with their effective selection, in discovery order.

        The body stays the JSON array Stitch clients expect; a source with more streams than
        ``?limit=`` (default and maximum 1000) is paged: the response then carries
        ``Link: <…?limit=N&cursor=…>; rel="next"`` for the next page (RFC 8288), and no such header
        on the last page."""
        streams, next_cursor = service.list_streams(db.session(), current_account_id(), source_id,
                                                    args["limit"], args["cursor"])
        response = summaries(streams)
        if next_cursor is not None:
            next_url = url_for("streams.Streams", source_id=source_id, limit=args["limit"], cursor=next_cursor)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response


@blueprint.route("/<int:source_id>/streams/<int:stream_id>")
class StreamById(MethodView):
    decorators = [account_only]

    @blueprint.response(200, StreamSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int, stream_id: int) -> Response:
        """A stream's schema and metadata, with the effective ``selected`` on every breadcrumb."""
        return jsonify(service.stream_body(service.get_stream(db.session(), current_account_id(), source_id,
                                                              stream_id)))


@blueprint.route("/<int:source_id>/catalog")
class HandoffCatalog(MethodView):
    decorators = [account_only]

    @blueprint.response(200, SingerCatalogSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def get(self, source_id: int) -> Response:
        """The source's Singer catalog with the selections written into its metadata (``selected``
        on every breadcrumb, ``replication-method`` / ``replication-key`` where chosen): exactly
        what ``tap --config … --catalog …`` takes, for a pipeline that runs the source's tap.

        409 ``not_ready`` until the source is fully configured (the error names the step it is at);
        422 ``type_unavailable`` when the source's type left the catalog; 404 for a source the
        account does not have."""
        return jsonify(service.handoff_catalog(db.session(), get_catalog(), current_account_id(), source_id))


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
