"""The flask-smorest Api: routes, schemas and the generated OpenAPI document.

**Every operation lists the statuses it really answers, and no catch-all ``default``.** The
statuses every route shares come from one rule, :class:`CommonResponses`, applied to each operation
as it enters the document, from what the route declares:

* 400 ``malformed_request``: every operation (a NUL or a non-ASCII id in the path or query, a body
  that is not JSON);
* 401: an operation that needs a token (all but those documented with ``security=[]``, see
  app/auth.py ``public``);
* 403: a view guarded by ``operator_only`` / ``account_only`` (app/auth.py marks them);
* 404: an operation with a path parameter;
* 413 and 415: an operation with a request body; 422: one with a body or query parameters;
* 429: an operation of the APIs (app/paths.py) that needs a token (``CONNECT_RATE_LIMIT``,
  app/ratelimit.py).

Anything else a route can answer (a 409 of its rule, a 403 it raises itself, a 202, a 302) it
declares with flask-smorest's ``@blp.alt_response(409, schema=ApiErrorSchema, description=…)``
(or ``@blp.response``). The shared statuses take the shape of the first error the route declares
(the Airbyte dialect's problem document there), else the service's one error shape. A route that
passes another server's answers back (the proxy) declares ``default`` itself and gets nothing
added. A new route gets the common statuses by being a route; the fuzz test
(tests/test_fuzz_openapi.py) fails on any status an operation answers but does not list.
"""

import inspect
import os
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from apispec import BasePlugin
from flask import Flask
from flask_smorest import Api

from .paths import is_api_path
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


# The attribute app/auth.py sets on a view that refuses a kind of caller (403).
REFUSES_SOME_CALLERS = "connect_refuses_some_callers"
NUL_FREE = "^[^\\x00]*$"


class ConnectApi(Api):
    # Errors flask-smorest documents on its own (422 from arguments) use our shape.
    ERROR_SCHEMA = ApiErrorSchema
    # No catch-all: an operation lists what it answers (see the module docstring).
    DEFAULT_ERROR_RESPONSE_NAME = None


class CommonResponses(BasePlugin):
    """Adds to each operation the error statuses it shares with others (the module docstring), and
    to every string of its request the NUL the service refuses (:func:`text_without_nul`)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None,
                         **kwargs: Any) -> None:
        rule = kwargs.get("rule")
        view = self.app.view_functions.get(rule.endpoint) if rule is not None else None
        for method, operation in (operations or {}).items():
            for parameter in operation.get("parameters", []):
                if isinstance(parameter, dict) and isinstance(parameter.get("schema"), dict):
                    text_without_nul(parameter["schema"])
            self._request_schemas_without_nul(operation)
            responses = operation.setdefault("responses", {})
            if "default" in responses:
                continue  # a pass-through (the proxy): the route says anything may come back
            shape = _declared_error(responses)
            declared = {str(status) for status in responses}  # the route's own keys may be ints
            for status in common_statuses(path or "", method, operation, view):
                if str(status) not in declared:
                    phrase = HTTPStatus(status)
                    responses[str(status)] = {**shape, "description": phrase.phrase} if shape else phrase.name

    def init_spec(self, spec: Any) -> None:
        super().init_spec(spec)
        self.spec = spec

    def _request_schemas_without_nul(self, operation: Mapping[str, Any]) -> None:
        """The request's schemas (bodies, and the components they name) refuse NUL; a response
        schema is left as it is: an error quotes what was sent, NUL included."""
        components = self.spec.components.schemas
        for content in (operation.get("requestBody") or {}).get("content", {}).values():
            text_without_nul(content.get("schema") or {}, components)


def text_without_nul(schema: dict[str, Any], components: Mapping[str, Any] | None = None,
                     seen: set[str] | None = None) -> dict[str, Any]:
    """Every string of a request schema refuses NUL, as app/request_checks.py does for every
    request (a 400): ``pattern: ^[^\\x00]*$`` unless it already has an enum, pattern or format.
    Components it names (``$ref``) are followed once each."""
    seen = set() if seen is None else seen
    reference = schema.get("$ref")
    if isinstance(reference, str) and components is not None:
        name = reference.rsplit("/", 1)[-1]
        if name not in seen and isinstance(components.get(name), dict):
            seen.add(name)
            text_without_nul(components[name], components, seen)
        return schema
    if schema.get("type") == "string" and not {"enum", "pattern", "format"} & set(schema):
        schema["pattern"] = NUL_FREE
    children = [*(schema.get("properties") or {}).values(), schema.get("items"), schema.get("additionalProperties"),
                *schema.get("allOf", []), *schema.get("anyOf", []), *schema.get("oneOf", [])]
    for child in children:
        if isinstance(child, dict):
            text_without_nul(child, components, seen)
    return schema


def common_statuses(path: str, method: str, operation: Mapping[str, Any], view: Any) -> list[int]:
    parameters = operation.get("parameters", [])
    in_query = any(isinstance(p, Mapping) and p.get("in") == "query" for p in parameters)
    has_body = "requestBody" in operation
    secured = operation.get("security") != []
    statuses = [400]
    if secured:
        statuses.append(401)
    if secured and _refuses_some_callers(view, method):
        statuses.append(403)
    if "{" in path:
        statuses.append(404)
    if has_body:
        statuses += [413, 415]
    if has_body or in_query:
        statuses.append(422)
    if secured and is_api_path(path):
        statuses.append(429)
    return statuses


def _declared_error(responses: Mapping[str, Any]) -> dict[str, Any] | None:
    """The error a route documents itself (its first 4xx with content): the shared statuses take
    that shape, so a dialect with its own error document (app/airbyte) keeps it."""
    # flask-smorest keys a route's own responses by int, doc(responses=…) by str.
    return next((dict(response) for status, response in sorted(responses.items(), key=lambda item: str(item[0]))
                 if str(status).startswith("4") and isinstance(response, Mapping) and "content" in response), None)


def _refuses_some_callers(view: Any, method: str) -> bool:
    handler = getattr(getattr(view, "view_class", None), method, None)
    return any(getattr(f, REFUSES_SOME_CALLERS, False) for f in (view, handler) if f is not None)


def create_api(app: Flask) -> Api:
    """One Api per app, so tests can build as many apps as they like. A URL converter of the app
    with an ``openapi_schema`` method documents its path parameters with it."""
    api = ConnectApi(app, spec_kwargs={"extra_plugins": [CommonResponses(app)]})
    for converter in set(app.url_map.converters.values()):
        document = getattr(converter, "openapi_schema", None)
        if callable(document):
            api.register_converter(converter, document)
    return api


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
