"""Which URLs a webhook endpoint may have: the default ``url_problem`` of app/webhooks.

``https`` to a host that is not a literal private, link-local or cloud-metadata address; ``http``
and loopback hosts only when the operator allows loopback (``CONNECT_WEBHOOK_ALLOW_LOOPBACK``, for a
developer's machine and the tests). No user-info (``https://good@evil``), fragment, whitespace or
backslash (parsers disagree about such URLs), and no numeric host in a form other than dotted
decimal: ``127.1`` and ``0x7f000001`` reach 127.0.0.1 through the C resolver, so they are refused
rather than interpreted here differently from the resolver.

Host *names* are not resolved here: a name's address can change after registration, so the check
that counts is made when connecting (app/connectors/network.py's policy, through the HTTP session
factory webhooks are given). This check refuses what is wrong on its face, at once, with a 422.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

MAX_LENGTH = 2048
PRIVATE_ADDRESS = "is a private or reserved address"
LOOPBACK_NAMES = frozenset({"localhost"})
# Names of cloud metadata services (their addresses are link-local, refused as literals below).
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "metadata.azure.internal"})
# Metadata addresses outside the link-local ranges: Alibaba Cloud, and AWS's IPv6 endpoint.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})
# Printable ASCII without space and backslash.
_ALLOWED_CHARACTERS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def url_problem(url: str, *, allow_loopback: bool = False,
                address_allowed: Callable[[Address, int], bool] | None = None) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None when it can. ``address_allowed`` is the
    operator's network policy (``CONNECT_ALLOWED_SOURCE_NETWORKS``): a literal private or loopback
    address it allows is allowed here too (metadata and link-local addresses it never allows)."""
    if len(url) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    if not _ALLOWED_CHARACTERS.match(url):
        return "has whitespace, a backslash or characters that are not printable ASCII"
    if "#" in url:
        return "has a fragment ('#')"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return "is not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return "must be an https URL"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry user information ('user@host')"
    port = parts.port or (443 if scheme == "https" else 80)
    allowed = (lambda address: address_allowed(address, port)) if address_allowed else (lambda address: False)
    return _host_problem(parts.hostname.lower().rstrip("."), scheme, allow_loopback, allowed)


def _host_problem(host: str, scheme: str, allow_loopback: bool, allowed: Callable[[Address], bool]) -> str | None:
    address = _literal_address(host)
    if isinstance(address, str):
        return address
    loopback = address.is_loopback if address is not None else _is_loopback_name(host)
    if loopback:
        if not (allow_loopback or allowed(address or ipaddress.ip_address("127.0.0.1"))):
            return "is on a loopback host, which this service does not deliver to"
        return None  # http allowed here: the traffic never leaves the machine
    if address is not None:
        problem = _address_problem(address)
        if problem and not (problem == PRIVATE_ADDRESS and allowed(address)):
            return problem
    elif host in METADATA_NAMES:
        return "is a cloud metadata service"
    if scheme != "https":
        return "must use https (http only on a loopback host, when the operator allows it)"
    return None


def _literal_address(host: str) -> Address | str | None:
    """The address a numeric host names, None for a name, or why a numeric host is refused."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        address = None
    if address is None:
        try:
            socket.inet_aton(host)
        except OSError:
            return None  # a name
        return "has a numeric host that is not a dotted-decimal IPv4 address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback_name(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.endswith(".localhost")


def _address_problem(address: Address) -> str | None:
    if address in METADATA_ADDRESSES or address.is_link_local:
        return "is a link-local or cloud metadata address"
    # is_global is False for private, shared (100.64/10), documentation and reserved ranges alike.
    if not address.is_global or address.is_multicast:
        return PRIVATE_ADDRESS
    return None
