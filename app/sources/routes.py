"""``/v4/sources``: thin views over the read model (queries.py) and the write use cases (writes.py)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from .. import db
from ..auth import account_only, current_account_id
from ..catalog import get_catalog
from ..crypto import get_keyring
from ..errors import Invalid, Problem
from ..extensions import documented_only
from ..schemas import ApiErrorSchema
from ..wiring import services
from . import queries, writes
from .facts import facts_for
from .presenter import etag, source_json, timestamp
from .schemas import (
    EventSchema,
    ListArgsSchema,
    SourceCreateSchema,
    SourcePageSchema,
    SourceSchema,
    SourceUpdateSchema,
)

blueprint = Blueprint("sources", __name__, url_prefix="/v4/sources",
                      description="Sources and where each stands in its configuration.")


def change_from(body: dict[str, Any]) -> writes.SourceChange:
    return writes.SourceChange(
        display_name=body.get("display_name"),
        name=body.get("name"),
        properties=body.get("properties") or {},
        paused_at=body.get("paused_at"),
        paused_at_given="paused_at" in body,
        secret_id=body.get("secret_id"),
    )


def source_response(source: queries.SourceView, status: int = 200, **headers: str) -> Response:
    session = db.session()
    catalog = get_catalog()
    card = catalog.get(source.type)
    facts = facts_for(session, [source], catalog)[source.id]  # usually no query: see facts.py
    response = Response(source_json(source, card, facts) + "\n", status=status,
                        mimetype="application/json")
    response.headers["ETag"] = etag(source)
    response.headers.update(headers)
    return response


def if_match_header() -> list[str] | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


@blueprint.route("")
class Sources(MethodView):
    decorators = [account_only]

    @blueprint.arguments(SourceCreateSchema())  # one instance: not one built per request
    @blueprint.response(201, SourceSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    @blueprint.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": False,
                                "schema": {"type": "string", "maxLength": 255}}])
    def post(self, body: dict[str, Any]) -> Response:
        """Create a source. The same Idempotency-Key and body return the first result."""
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 255:
            raise Invalid.from_problems([Problem("Idempotency-Key", "longer than 255 characters")])
        source, replayed = writes.create_source(
            db.session(), get_catalog(), get_keyring(), services().source_hooks, current_account_id(), body["type"],
            change_from(body), request.get_json(), key)
        headers = {"Location": url_for("sources.SourceById", source_id=source.id)}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return source_response(source, 201, **headers)

    # An unknown query parameter (a typo such as ?limt=) is refused like an unknown body field.
    @blueprint.arguments(ListArgsSchema(), location="query", unknown=RAISE)
    @blueprint.response(200, SourcePageSchema)
    def get(self, args: dict[str, Any]) -> Response:
        """List live sources, newest first: ``?limit=`` (≤100) and ``?cursor=`` from the last page."""
        session = db.session()
        rows, next_cursor = queries.list_sources(session, current_account_id(), args["limit"],
                                                 args["cursor"])
        catalog = get_catalog()
        facts = facts_for(session, rows, catalog)
        data = ",".join(source_json(row, catalog.get(row.type), facts[row.id]) for row in rows)
        return Response(f'{{"data":[{data}],"next_cursor":{json.dumps(next_cursor)}}}\n',
                        mimetype="application/json")


@blueprint.route("/<int:source_id>")
class SourceById(MethodView):
    decorators = [account_only]

    @documented_only  # it returns a finished Response: the decorators below only document it
    @blueprint.response(200, SourceSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int) -> Response:
        """One source with its report card; poll it to follow the source's progress."""
        return source_response(queries.read_source(db.session(), current_account_id(), source_id))

    @blueprint.arguments(SourceUpdateSchema())
    @blueprint.response(200, SourceSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    @blueprint.doc(parameters=[{"in": "header", "name": "If-Match", "required": False,
                                "schema": {"type": "string"}}])
    def put(self, body: dict[str, Any], source_id: int) -> Response:
        """Update: given properties are set, null clears one, the rest keep their values."""
        source = writes.update_source(
            db.session(), get_catalog(), get_keyring(), services().source_hooks, current_account_id(), source_id,
            change_from(body), if_match_header())
        return source_response(source)

    @blueprint.response(200, SourceSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def delete(self, source_id: int) -> Response:
        """Delete (softly): the source disappears from reads and lists."""
        return source_response(writes.delete_source(db.session(), current_account_id(), source_id,
                                                    services().source_hooks))


@blueprint.route("/<int:source_id>/events")
class SourceEvents(MethodView):
    decorators = [account_only]

    @blueprint.response(200, EventSchema(many=True))
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, source_id: int) -> Response:
        """The audit trail of the source, oldest first. Never holds a secret value."""
        events = queries.list_events(db.session(), current_account_id(), source_id)
        return jsonify([{"type": e.type, "at": timestamp(e.at), "detail": e.detail} for e in events])
