"""Where the APIs live: the Stitch dialect under ``/v4/``, the Airbyte dialect's embedded API under
``/api/v1/`` and its public API under ``/v1/``. A path under one needs a token (unless its view is
public), is rate limited and takes JSON bodies; the rest (health, the connect page, the docs) not."""

from __future__ import annotations

STITCH_PREFIX = "/v4/"
AIRBYTE_PREFIXES = ("/api/v1/", "/v1/")
API_PREFIXES = (STITCH_PREFIX, *AIRBYTE_PREFIXES)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def is_airbyte_path(path: str) -> bool:
    return path.startswith(AIRBYTE_PREFIXES)
