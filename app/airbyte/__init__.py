"""The Airbyte dialect: Airbyte's embedded API (``/api/v1``) and public API (``/v1``) as routes
and schemas over the services the Stitch dialect (``/v4``) uses, so that code written against
Airbyte works here by changing the base URL and the token.

The mapping: Airbyte's organization is this deployment's operator, a workspace is an account
(``external_user_id`` is the account's ``external_id``, made on first use when the operator token
calls), a scoped token is an account token, a connector or source is a source, and a
``connector_type``/``sourceType`` is a card's type or alias (``hubspot``). Errors on these paths take
Airbyte's shape (:mod:`app.airbyte.errors`).
"""

from flask import Flask

from ..errors import register_error_shape
from ..paths import AIRBYTE_PREFIXES
from .errors import airbyte_error_body


def init_app(app: Flask) -> None:
    register_error_shape(app, AIRBYTE_PREFIXES, airbyte_error_body)
