"""The registry of planted secret values: what the suite-wide secrets scan (tests/conftest.py)
looks for in every response of the service and every log line.

The test servers register every credential they issue or accept (tokens, codes, client secrets,
session tokens); tests register the values they plant with :func:`new_secret` (or :func:`plant`).
Values shorter than :data:`MIN_LENGTH` are not registered: a short or common value ("pass",
"test-secret") would turn up in ordinary text and make the scan cry wolf.
"""

from __future__ import annotations

import secrets
import threading

MIN_LENGTH = 16

_lock = threading.Lock()
_values: dict[str, str] = {}


def plant(value: object, origin: str) -> None:
    """Register ``value`` (a secret the service must never show or log) under ``origin``."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    with _lock:
        _values.setdefault(value, origin)


def new_secret(prefix: str = "planted") -> str:
    """A distinctive secret value (prefix + 24 random hex digits), registered at once."""
    value = f"{prefix}-{secrets.token_hex(12)}"
    plant(value, f"test:{prefix}")
    return value


def planted_values() -> dict[str, str]:
    """Every registered value with where it came from."""
    with _lock:
        return dict(_values)
