"""The Swagger UI assets for ``/docs``, served from the swagger-ui-bundle package (works offline)."""

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from .auth import public

blueprint = Blueprint("docs_assets", __name__)


@blueprint.get("/docs-assets/<path:filename>")
@public
def swagger_asset(filename: str):  # type: ignore[no-untyped-def]
    return send_from_directory(swagger_ui_path, filename, max_age=3600)
