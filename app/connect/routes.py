"""``POST /v4/connect/sessions`` and the hosted connect page, thin over app/connect/service.py.

The page's routes sit outside ``/v4`` and need no bearer token: the session token in the path is
the credential. No state is kept in cookies (the one exception is the short OAuth return cookie,
see :func:`oauth_return`), so a forged cross-site request would need the token itself and there
is nothing for CSRF to ride on. The token is remembered for redaction, so log lines (which record
the path) never show it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint as PageBlueprint
from flask import current_app, jsonify, make_response, redirect, render_template, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.wrappers import Response  # what redirect() returns; Flask's responses are ones too

from .. import db, redaction
from ..auth import account_only, current_account_id
from ..catalog import get_catalog
from ..crypto import get_keyring
from ..errors import ApiError, error_response
from ..schemas import ApiErrorSchema
from ..security_headers import shows_secret_once
from ..wiring import services
from . import service
from .forms import availability, docs_url, form_groups, shown_value
from .models import CANCELLED, COMPLETED, ConnectSession
from .schemas import SessionCreateSchema, SessionSchema
from .theme import theme_css

blueprint = Blueprint("connect", __name__, url_prefix="/v4/connect",
                      description="Sessions of the hosted connect page.")
page = PageBlueprint("connect_page", __name__, template_folder="templates", static_folder="static",
                     static_url_path="/connect-static")

RETURN_COOKIE = "connect_oauth_return"
# Assets from this service only; logos may also come from an https URL. No form-action: the page's
# own forms answer with redirects to the provider and to the integrator's redirect_url, which
# Chromium checks against form-action too.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; "
                           "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")
POLLED_STEPS = ("discover_schema",)
STEP_TITLES = {"form": "Settings", "oauth": "Sign in", "discover_schema": "Connection check",
               "field_selection": "Choose data"}


@blueprint.route("/sessions")
class Sessions(MethodView):
    decorators = [account_only]

    @shows_secret_once
    @blueprint.arguments(SessionCreateSchema)
    @blueprint.response(201, SessionSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A session of the hosted connect page for one source, valid for 30 minutes."""
        created = service.create_session(db.session(), get_catalog(), current_account_id(), body,
                                         current_app.config["PUBLIC_URL"])
        return {"token": created.token, "url": created.url, "expires_at": created.row.expires_at}


# -- the page -----------------------------------------------------------------------------------


@page.url_value_preprocessor
def _remember_token(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values and "token" in values:
        redaction.remember(values["token"])


@page.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    # The token is in the URL: never send it on in a Referer, never keep a page in a cache.
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "connect_page.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@page.errorhandler(ApiError)
def _page_error(error: ApiError) -> Response | tuple[str, int]:
    if request.endpoint == "connect_page.status":
        return error_response(error.status, error.type, error.message, error.details)
    return render_template("connect/ended.html", message=error.message, status=error.status,
                           display={}), error.status


def _open(token: str) -> ConnectSession:
    return service.open_session(db.session(), token)


def _to_page(token: str, **params: str) -> Response:
    url = url_for("connect_page.show", token=token)
    return redirect(url + ("?" + urlencode(params) if params else ""), 303)


def _render(token: str, row: ConnectSession, status: int = 200, errors: dict[str, str] | None = None,
            general: list[str] | None = None, posted: dict[str, str] | None = None) -> tuple[str, int]:
    state = service.page_state(db.session(), get_catalog(), row)
    editing = request.args.get("edit") == "form" or bool(errors) or (
        state.reconnect and state.card is not None and not state.card.managed_oauth)
    oauth_error = request.args.get("oauth_error")
    return render_template(
        "connect/page.html", token=token, state=state, display=row.display, errors=errors or {},
        general=general or [], posted=posted or {}, editing=editing, oauth_error=oauth_error,
        poll=state.step in POLLED_STEPS and not editing and not _check_failed(state),
        selection_key=service.selection_key, shown_value=_shown,
        card_names={t: c.display_name for t in row.allowed_types if (c := get_catalog().get(t))},
        field_labels={f.name: f.label for f in state.fields}, step_titles=STEP_TITLES,
        groups=form_groups(state.card, state.fields) if state.card is not None else [],
        docs_url=docs_url(state.card) if state.card is not None else None,
        availability=availability(state.card) if state.card is not None else None), status


def _check_failed(state: service.PageState) -> bool:
    return state.check is not None and state.check.status == "failed"


def _shown(state: service.PageState, name: str, posted: dict[str, str]) -> str:
    """The text of a field's input: what was just posted, else the stored value."""
    if name in posted:
        return posted[name]
    return shown_value(state.source.properties.get(name)) if state.source is not None else ""


@page.get("/connect/<token>")
def show(token: str) -> tuple[str, int]:
    return _render(token, _open(token))


@page.get("/connect/<token>/status")
def status(token: str) -> Response:
    row = _open(token)
    return jsonify(service.status_of(service.page_state(db.session(), get_catalog(), row)))


@page.get("/connect/<token>/theme.css")
def theme(token: str) -> Response:
    row = _open(token)
    response = make_response(theme_css(row.display.get("primary_color")))
    response.mimetype = "text/css"
    return response


@page.post("/connect/<token>/type")
def choose_type(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    try:
        service.choose_type(db.session(), get_catalog(), row, request.form.get("source_type", ""))
    except ApiError as error:
        return _render(token, row, error.status, general=[error.message])
    return _to_page(token)


@page.post("/connect/<token>/form")
def save_form(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    posted = request.form.to_dict()
    try:
        service.save_form(db.session(), get_catalog(), get_keyring(), services().source_hooks, row, posted)
    except service.FormProblems as problems:
        # Credentials are never echoed back into the page.
        kept = {k: v for k, v in posted.items() if not _is_credential(row, k)}
        return _render(token, row, 422, problems.by_field, problems.general, kept)
    return _to_page(token)


def _is_credential(row: ConnectSession, name: str) -> bool:
    card = get_catalog().get(row.source_type) if row.source_type else None
    spec = card.properties.get(name) if card else None
    return spec is None or spec.is_credential


@page.post("/connect/<token>/oauth")
def start_oauth(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    public_url = current_app.config["PUBLIC_URL"]
    try:
        consent_url = service.start_oauth(db.session(), get_catalog(), get_keyring(), services().source_hooks,
                                          row, public_url)
    except ApiError as error:
        return _render(token, row, error.status, general=[error.message])
    response = redirect(consent_url, 303)
    # The provider sends the browser back to a URL without the token (that URL is stored in the
    # handshake's state row); this cookie carries the token back to the page instead.
    response.set_cookie(RETURN_COOKIE, token, max_age=int(service.SESSION_LIFETIME.total_seconds()),
                        path=urlsplit(service.oauth_return_url(public_url, row.id)).path,
                        secure=public_url.startswith("https://"), httponly=True, samesite="Lax")
    return response


@page.get("/connect/oauth-return/<int:session_id>")
def oauth_return(session_id: int) -> Response:
    token = request.cookies.get(RETURN_COOKIE) or ""  # none: refused as a missing cookie
    redaction.remember(token)
    service.session_for_oauth_return(db.session(), session_id, token)
    error = request.args.get("error")
    response = _to_page(token, **({"oauth_error": error[:50]} if error else {}))
    response.delete_cookie(RETURN_COOKIE, path=request.path)
    return response


@page.post("/connect/<token>/check")
def retry_check(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    try:
        service.retry_check(db.session(), get_catalog(), row)
    except ApiError as error:
        return _render(token, row, error.status, general=[error.message])
    return _to_page(token)


@page.post("/connect/<token>/streams")
def save_selection(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    chosen = request.form.getlist("stream")
    fields = {name.removeprefix("fields:"): request.form.getlist(name)
              for name in request.form if name.startswith("fields:")}
    try:
        service.save_selection(db.session(), get_catalog(), row, chosen, fields)
        return redirect(service.finish(db.session(), get_catalog(), row, COMPLETED), 303)
    except service.FormProblems as problems:
        return _render(token, row, 422, general=problems.general)
    except service.SessionGone:
        raise
    except ApiError as error:
        return _render(token, row, error.status, general=[error.message])


@page.post("/connect/<token>/finish")
def finish(token: str) -> Response | tuple[str, int]:
    row = _open(token)
    try:
        return redirect(service.finish(db.session(), get_catalog(), row, COMPLETED), 303)
    except service.SessionGone:
        raise
    except ApiError as error:
        return _render(token, row, error.status, general=[error.message])


@page.post("/connect/<token>/cancel")
def cancel(token: str) -> Response:
    row = _open(token)
    return redirect(service.finish(db.session(), get_catalog(), row, CANCELLED), 303)
