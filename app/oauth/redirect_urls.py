"""The integrator's ``redirect_url``: which URLs the service will send a browser (and a secret_id) to.

Pure functions. The callback hands a ``secret_id`` to whatever URL was given at initiate, so the
URL must be one an attacker cannot bend: ``https``, or ``http`` only on this machine's loopback
(a developer's local integrator); no fragment (it would swallow the parameters added after it);
no user-info (``https://good.example@evil.example`` goes to evil.example); no backslashes or
whitespace (browsers rewrite ``\\`` to ``/`` and would see another host than this parser). When an
account has a ``redirect_url_allowlist``, the URL must be one of its entries, character for
character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_LENGTH = 2048
# Printable ASCII without space and backslash: anything else is percent-encoded by a careful client.
_ALLOWED_CHARACTERS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+$")


def redirect_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a redirect_url, or None when it can."""
    if len(url) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    if not _ALLOWED_CHARACTERS.match(url):
        return "has whitespace, a backslash or characters that are not printable ASCII"
    if "#" in url:
        return "has a fragment ('#')"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    del port
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "must be an https URL (or http on a loopback host)"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry user information ('user@host')"
    if scheme == "http" and parts.hostname.lower() not in LOOPBACK_HOSTS:
        return "must use https unless the host is 127.0.0.1, ::1 or localhost"
    return None


def allowlist_problem(url: str, allowlist: Sequence[str] | None) -> str | None:
    """Why ``url`` is refused by the account's allow-list (exact match), or None."""
    if allowlist and url not in allowlist:
        return "is not in the account's redirect_url_allowlist"
    return None


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to its query; the URL's own parameters are kept, except
    ones with the same names as ours, which would make the result ambiguous."""
    parts = urlsplit(url)
    own = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*own, *params.items()])))
