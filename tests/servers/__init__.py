"""Test servers that stand in for real OAuth providers and source APIs.

Each is a plain Flask app run on 127.0.0.1 by :func:`serve`, so the code under test
talks real HTTP to something that behaves (and misbehaves) like a provider.
"""

from .data_api import DataApi, DataApiSettings, create_data_api, get_data_api
from .oauth_provider import OAuthProvider, ProviderSettings, create_oauth_provider, get_provider
from .threaded import ServerThread, serve

__all__ = [
    "DataApi",
    "DataApiSettings",
    "OAuthProvider",
    "ProviderSettings",
    "ServerThread",
    "create_data_api",
    "create_oauth_provider",
    "get_data_api",
    "get_provider",
    "serve",
]
