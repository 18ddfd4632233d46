"""The flask-smorest Api: routes, schemas and the generated OpenAPI document."""

import inspect
import os
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_smorest import Api

from .schemas import ApiErrorSchema

API_SETTINGS = {
    "API_TITLE": "connect",
    "API_VERSION": "v4",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # Served by this service from the swagger-ui-bundle package (see app/docs.py): no CDN.
    "OPENAPI_SWAGGER_UI_URL": "/docs-assets/",
    "API_SPEC_OPTIONS": {
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "info": {
            "description": "Create data sources for your users and walk each through its "
            "configuration. Every error has the shape {\"error\": {\"type\", \"message\", \"details\"}}.",
        },
    },
}


class ConnectApi(Api):
    # Errors flask-smorest documents on its own (422 from arguments, the default) use our shape.
    ERROR_SCHEMA = ApiErrorSchema


def create_api(app: Flask) -> Api:
    """One Api per app, so tests can build as many apps as they like."""
    return ConnectApi(app)


def documented_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """For a view that returns a finished ``Response``: keep what flask-smorest's ``response`` /
    ``alt_response`` / ``doc`` decorators put in the OpenAPI document, and drop their wrappers,
    which for such a view only add calls to every request. Apply it last (outermost), and only
    over those decorators (``arguments`` parses the request: it must stay)."""
    # Only flask-smorest's own wrappers are dropped: a wrapper of ours (an access check, say)
    # under this decorator must keep running, so unwrapping stops at the first one that is not.
    inner: Callable[..., Any] = inspect.unwrap(view, stop=lambda wrapper: not _is_flask_smorest(wrapper))
    # What flask-smorest reads at registration.
    inner._apidoc = view._apidoc  # type: ignore[attr-defined]
    return inner


def _is_flask_smorest(function: Callable[..., Any]) -> bool:
    # functools.wraps copies __module__ from the wrapped view, so ask where the code lives.
    code = getattr(function, "__code__", None)
    return code is not None and f"{os.sep}flask_smorest{os.sep}" in code.co_filename
