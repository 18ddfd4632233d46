"""The baseline: the stack's own ceiling, served by gunicorn with the service's settings.

A bare Flask app, no extensions, no auth, no logging:

(a) ``GET /v4/source-types/<type>`` returns the exact bytes the service served for that report card,
    held in memory (read once from ``BENCH_CARD_FILE``);
(b) ``GET /v4/sources/<id>`` reads the source row with one SQLAlchemy Core query on an engine built
    by the service's own ``app.db._make_engine`` (same pool, same SQLite pragmas) and serialises it
    with ``json``.

The service should approach these numbers: whatever it does beyond them (auth, routing through
flask-smorest, the ORM, facts, the report card, logging) is its overhead.

Run: ``BENCH_DATABASE_URL=… BENCH_CARD_FILE=… gunicorn bench.baseline:app``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from flask import Flask, Response
from sqlalchemy import select

from app.db import _make_engine
from app.models import Source

app = Flask(__name__)
_CARD_TYPE = os.environ.get("BENCH_CARD_TYPE", "platform.google-analytics")
_CARD = Path(os.environ["BENCH_CARD_FILE"]).read_bytes()
_ENGINE = _make_engine(os.environ["BENCH_DATABASE_URL"])
_SOURCES = Source.__table__


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@app.get("/health")
def health() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")


@app.get("/v4/source-types/<source_type>")
def report_card(source_type: str) -> Response:
    if source_type != _CARD_TYPE:
        return Response(b'{"error":"not found"}', status=404, mimetype="application/json")
    return Response(_CARD, mimetype="application/json")


@app.get("/v4/sources/<int:source_id>")
def source(source_id: int) -> Response:
    with _ENGINE.connect() as connection:
        row = connection.execute(select(_SOURCES).where(_SOURCES.c.id == source_id)).mappings().first()
    if row is None:
        return Response(b'{"error":"not found"}', status=404, mimetype="application/json")
    return Response(json.dumps(dict(row), default=_default), mimetype="application/json")
