from marshmallow import Schema, fields, validate

from ..schemas import Timestamp, display_text


class AccountCreateSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), display_text])
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))


class AccountSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    external_id = fields.String(allow_none=True, required=True)
    created_at = Timestamp(required=True)


class AccountSettingsSchema(Schema):
    redirect_url_allowlist = fields.List(
        fields.String(validate=validate.Length(min=1, max=2048)), required=True, allow_none=True,
        validate=validate.Length(max=100), metadata={
            "description": "The only redirect_url values POST /v4/oauth/initiate accepts for this "
                           "account (exact match); null or [] accepts any https (or loopback http) URL."})


class AccountDetailSchema(AccountSchema):
    redirect_url_allowlist = fields.List(fields.String(), required=True, allow_none=True)


class AccountCreatedSchema(AccountSchema):
    token = fields.String(required=True, metadata={"description": "Shown once; store it now."})


class TokenSchema(Schema):
    id = fields.Integer(required=True)
    hint = fields.String(required=True, metadata={"description": "Last four characters."})
    created_at = Timestamp(required=True)
    revoked_at = Timestamp(allow_none=True, required=True)


class TokenCreatedSchema(TokenSchema):
    token = fields.String(required=True, metadata={"description": "Shown once; store it now."})
