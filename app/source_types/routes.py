"""``GET /v4/source-types`` and ``GET /v4/source-types/{type}``.

Type-level report cards never change while the service runs, so each is serialised once (the list
by the catalog at start-up, a blank card by the presenter on first use); these views hand out
those bytes.
"""

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ..catalog import get_catalog
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
        """The blank report card of a source type: where a new source of it starts."""
        card = get_catalog().get(source_type)
        if card is None:
            raise NotFound(f"unknown source type {source_type!r}",
                           details=[{"field": "source_type", "reason": "unknown source type"}])
        return _json(blank_card_json(card))
