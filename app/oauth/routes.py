"""``/v4/oauth``: initiate, callback, OAuth app credentials."""

from flask_smorest import Blueprint

blueprint = Blueprint("oauth", __name__, url_prefix="/v4/oauth",
                      description="The managed OAuth handshake and OAuth app credentials.")
