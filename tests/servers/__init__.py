"""Test servers that stand in for real OAuth providers and source APIs.

Each is a plain Flask app run on 127.0.0.1 by :func:`serve`, so the code under test
talks real HTTP to something that behaves (and misbehaves) like a provider.
"""

from .data_api import ApiFault, AuthScheme, DataApi, DataApiSettings, create_data_api, get_data_api
from .oauth_provider import (
    AUTHORIZE_PATH,
    RESOURCE_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    OAuthProvider,
    ProviderSettings,
    TokenFault,
    create_oauth_provider,
    get_provider,
)
from .threaded import ServerThread, serve
from .webhook_receiver import HOOK_PATH, ReceiverFault, WebhookReceiver, create_webhook_receiver, get_receiver

__all__ = [
    "AUTHORIZE_PATH",
    "HOOK_PATH",
    "RESOURCE_PATH",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "ApiFault",
    "AuthScheme",
    "DataApi",
    "DataApiSettings",
    "OAuthProvider",
    "ProviderSettings",
    "ReceiverFault",
    "ServerThread",
    "TokenFault",
    "WebhookReceiver",
    "create_data_api",
    "create_oauth_provider",
    "create_webhook_receiver",
    "get_data_api",
    "get_provider",
    "get_receiver",
    "serve",
]
