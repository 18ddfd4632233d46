"""The managed OAuth handshake: OAuth apps, initiate, callback, secret_id."""

from flask import Flask

from ..catalog import EXTENSION_KEY as CATALOG_KEY
from ..sources import service as sources
from . import apps, handshake


def init_app(app: Flask) -> None:
    """Load the operator's apps from ``CONNECT_OAUTH_APPS`` and let sources redeem a secret_id.

    Runs after the catalog is loaded: the apps file names source types.
    """
    apps.init_app(app, app.extensions[CATALOG_KEY])
    sources.redeem_secret = handshake.redeem_secret
