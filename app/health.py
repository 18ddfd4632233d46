"""``GET /health``: the service answers and its database does."""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from . import db
from .auth import public

blueprint = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/health")
@public
def health():  # type: ignore[no-untyped-def]
    try:
        with db.get_db().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # the point of a health check is to report any failure
        log.warning("health check: database unavailable", extra={"error_class": type(error).__name__})
        return jsonify(status="degraded", database="unavailable"), 503
    return jsonify(status="ok", database="ok")
