"""``POST /v4/sources/{id}/execute`` and ``/v4/sources/{id}/proxy/<path>``: thin views over
service.py and proxy.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from .. import db
from ..auth import account_only, current_account_id
from ..catalog import get_catalog
from ..connectors.registry import get_connectors
from ..crypto import get_keyring
from ..schemas import ApiErrorSchema
from . import proxy, service
from .schemas import ExecuteResultSchema, ExecuteSchema

_AFTER_PROXY = re.compile(r"/v4/sources/[^/]+/proxy/(.*)$")
blueprint = Blueprint("execute", __name__, url_prefix="/v4/sources",
                      description="Using a configured source with its stored credentials: execute and the proxy.")


@blueprint.route("/<int:source_id>/execute")
class Execute(MethodView):
    decorators = [account_only]

    @blueprint.arguments(ExecuteSchema(unknown=RAISE))
    @blueprint.response(200, ExecuteResultSchema)
    @blueprint.alt_response(403, schema=ApiErrorSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    @blueprint.alt_response(424, schema=ApiErrorSchema)
    @blueprint.alt_response(429, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any], source_id: int) -> Any:
        """List a stream's records (a page, then the cursor's) or get one by key: selected fields only."""
        return service.execute_operation(db.session(), current_account_id(), source_id, body)


def _passed_back(view: Callable[..., Response]) -> Callable[..., Response]:
    """The OpenAPI description of a proxied call: whatever the provider answers."""
    anything: dict[str, Any] = {"*/*": {"schema": {}}}
    documented: Callable[..., Response] = blueprint.doc(responses={
        "200": {"description": "The provider's answer, passed back (Connect-Proxied: source).", "content": anything},
        "default": {"description": "The provider's answer with its status (Connect-Proxied: source), or the "
                                   "service's own error in the one error shape.", "content": anything},
    })(view)
    return documented


def _proxied(source_id: int, path: str) -> Response:
    answer = proxy.proxy_call(db.session(), get_catalog(), get_connectors(), get_keyring(), current_account_id(),
                              source_id, proxy.ProxyCall(
                                  method=request.method, raw_path=_raw_path(path),
                                  query=list(request.args.items(multi=True)), headers=dict(request.headers),
                                  body=request.get_data() or None),
                              enabled=bool(current_app.config.get("PROXY_ENABLED", True)))
    return Response(answer.body, status=answer.status, headers=[*answer.headers, ("Connect-Proxied", "source")])


def _raw_path(path: str) -> str:
    """The path after ``/proxy/`` as the client sent it, before decoding (RAW_URI: gunicorn and
    werkzeug both set it); the decoded one when a server does not."""
    raw = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?", 1)[0]
    found = _AFTER_PROXY.search(raw)
    return found.group(1) if found else path


# merge_slashes off: "//" is refused by proxy.py rather than redirected to a path nobody asked for.
@blueprint.route("/<int:source_id>/proxy/<path:path>", merge_slashes=False)
class Proxy(MethodView):
    """Calls to the source's API with its credentials. Any status and content type may come back:
    the provider's answer carries ``Connect-Proxied: source``; without it, the answer is the
    service's own (an error in the one error shape: 403, 404, 409, 413, 422, 424, 429)."""

    decorators = [account_only]

    @_passed_back
    def get(self, source_id: int, path: str) -> Response:
        """GET the source's API at base_url + path."""
        return _proxied(source_id, path)

    @_passed_back
    def post(self, source_id: int, path: str) -> Response:
        """POST to the source's API at base_url + path (the body as sent, any content type)."""
        return _proxied(source_id, path)

    @_passed_back
    def put(self, source_id: int, path: str) -> Response:
        """PUT to the source's API at base_url + path."""
        return _proxied(source_id, path)

    @_passed_back
    def patch(self, source_id: int, path: str) -> Response:
        """PATCH the source's API at base_url + path."""
        return _proxied(source_id, path)

    @_passed_back
    def delete(self, source_id: int, path: str) -> Response:
        """DELETE at the source's API at base_url + path."""
        return _proxied(source_id, path)
