"""``documented_only`` drops flask-smorest's wrappers of a view and nothing else."""

from __future__ import annotations

import functools

from flask_smorest import Blueprint

from app.extensions import documented_only
from app.schemas import ApiErrorSchema

blueprint = Blueprint("documented-only-test", __name__)


def test_it_drops_flask_smorest_wrappers_and_keeps_the_documentation() -> None:
    def view() -> str:
        return "view"

    wrapped = documented_only(blueprint.alt_response(404, schema=ApiErrorSchema)(view))
    assert wrapped is view
    assert "404" in str(wrapped._apidoc)


def test_a_wrapper_of_ours_under_it_keeps_running() -> None:
    calls: list[str] = []

    def access_check(function):  # type: ignore[no-untyped-def]
        @functools.wraps(function)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append("checked")
            return function(*args, **kwargs)
        return wrapper

    @documented_only
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @access_check
    def view() -> str:
        return "view"

    assert view() == "view"
    assert calls == ["checked"]
