"""``GET /v4/source-types`` and ``GET /v4/source-types/{type}``.

Type-level report cards never change while the service runs, so each is serialised once (the list
by the catalog at start-up, a blank card by the presenter on first use); these views hand out
those bytes.
"""

import json

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ..catalog import get_catalog
from ..connectors.registry import get_connectors
from ..errors import NotFound
from ..extensions import documented_only
from ..schemas import ApiErrorSchema
from ..sources.presenter import blank_card_json
from .schemas import ReportCardSchema, SourceTypeSummarySchema

blueprint = Blueprint(
    "source-types", __name__, url_prefix="/v4/source-types",
    description="The catalog: one report card per source type.",
)


def _json(body: bytes) -> Response:
    return Response(body, mimetype="application/json")


@blueprint.route("")
class SourceTypes(MethodView):
    @documented_only
    @blueprint.response(200, SourceTypeSummarySchema(many=True))
    @blueprint.alt_response(401, schema=ApiErrorSchema)
    def get(self):  # type: ignore[no-untyped-def]
        """List the source types."""
        return _json(get_catalog().list_json)


@blueprint.route("/<string:source_type>")
class SourceType(MethodView):
    @documented_only
    @blueprint.response(200, ReportCardSchema)
    @blueprint.alt_response(401, schema=ApiErrorSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_type: str):  # type: ignore[no-untyped-def]
        """The blank report card of a source type: where a new source of it starts, with whether this
        deployment can configure it end to end (``availability``)."""
        card = get_catalog().get(source_type)
        if card is None:
            raise NotFound(f"unknown source type {source_type!r}",
                           details=[{"field": "source_type", "reason": "unknown source type"}])
        # Availability changes at run time (an operator installs a tap), so it is added per request.
        # The card's bytes are serialised once at load; the small per-request part is spliced in
        # before their closing brace rather than parsing and re-encoding the whole card each time.
        found = get_connectors().availability(card)
        availability = json.dumps({"configurable": found.configurable, "reason": found.reason}).encode()
        card_bytes = blank_card_json(card)
        return _json(card_bytes[:-1] + b',"availability":' + availability + b"}")
