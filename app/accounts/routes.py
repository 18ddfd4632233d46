"""Accounts (operator token) and account tokens (operator, or the account itself)."""

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema

from .. import db
from ..auth import current_principal, operator_only
from ..schemas import ApiErrorSchema
from ..security_headers import shows_secret_once
from . import service
from .schemas import (
    AccountCreatedSchema,
    AccountCreateSchema,
    AccountDetailSchema,
    AccountSchema,
    AccountSettingsSchema,
    TokenCreatedSchema,
    TokenSchema,
)


def vars_of(row: object, schema: type[Schema]) -> dict[str, Any]:
    """The row's attributes that the schema shows, for adding a one-time ``token`` beside them."""
    return {name: getattr(row, name) for name in schema._declared_fields}


blueprint = Blueprint("accounts", __name__, url_prefix="/v4/accounts",
                      description="Accounts and their API tokens.")


@blueprint.route("")
class Accounts(MethodView):
    decorators = [operator_only]

    @shows_secret_once
    @blueprint.arguments(AccountCreateSchema)
    @blueprint.response(201, AccountCreatedSchema)
    @blueprint.alt_response(403, schema=ApiErrorSchema)
    @blueprint.alt_response(409, schema=ApiErrorSchema)
    def post(self, body):  # type: ignore[no-untyped-def]
        """Create an account; its first token is in the response, once."""
        account, token = service.create_account(db.session(), body["name"], body["external_id"])
        return {**vars_of(account, AccountSchema), "token": token}

    @blueprint.response(200, AccountSchema(many=True))
    @blueprint.alt_response(403, schema=ApiErrorSchema)
    def get(self):  # type: ignore[no-untyped-def]
        """List accounts."""
        return service.list_accounts(db.session())


@blueprint.route("/<int:account_id>")
class AccountById(MethodView):
    @blueprint.response(200, AccountDetailSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, account_id: int):  # type: ignore[no-untyped-def]
        """One account (the operator sees every account; an account token only its own)."""
        return service.get_account(db.session(), current_principal(), account_id)

    @blueprint.arguments(AccountSettingsSchema)
    @blueprint.response(200, AccountDetailSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    @blueprint.alt_response(422, schema=ApiErrorSchema)
    def put(self, body, account_id: int):  # type: ignore[no-untyped-def]
        """Set the account's settings (the operator, or the account itself)."""
        return service.update_account(db.session(), current_principal(), account_id,
                                      body["redirect_url_allowlist"])


@blueprint.route("/<int:account_id>/tokens")
class AccountTokens(MethodView):
    @shows_secret_once
    @blueprint.response(201, TokenCreatedSchema)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def post(self, account_id: int):  # type: ignore[no-untyped-def]
        """Issue a new token for the account; shown once."""
        issued = service.create_token(db.session(), current_principal(), account_id)
        return {**vars_of(issued.row, TokenSchema), "token": issued.token}

    @blueprint.response(200, TokenSchema(many=True))
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def get(self, account_id: int):  # type: ignore[no-untyped-def]
        """List the account's tokens (hints only)."""
        return service.list_tokens(db.session(), current_principal(), account_id)


@blueprint.route("/<int:account_id>/tokens/<int:token_id>")
class AccountToken(MethodView):
    @blueprint.response(204)
    @blueprint.alt_response(404, schema=ApiErrorSchema)
    def delete(self, account_id: int, token_id: int):  # type: ignore[no-untyped-def]
        """Revoke a token: it stops working at once."""
        service.revoke_token(db.session(), current_principal(), account_id, token_id)
