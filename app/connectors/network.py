"""Network safety: the one set of rules every outbound connection made on a user's behalf obeys
(a source's API, its token or login endpoint, a source database).

A user names the host (a ``base_url`` templated from properties, a database ``host``), so the
service must not become their way into places only it can reach:

* **Always refused**, whatever the operator allows: link-local and the cloud metadata services
  (169.254.0.0/16 with AWS/GCP/Azure/OCI's 169.254.169.254, fe80::/10, AWS's fd00:ec2::254,
  Alibaba's 100.100.100.200, Azure's 168.63.129.16), "this network" 0.0.0.0/8, multicast,
  broadcast and the reserved, documentation and relay ranges that common SSRF lists name — and
  **the service's own database**: the same address and port *and* the same database name. Another
  database on that server is allowed on purpose: tests and laptops run the service's database
  and the sources they connect on one PostgreSQL server, and a database user can read only the
  databases they are granted anyway. Loopback addresses count as one host here (a server on
  127.0.0.1 also answers on 127.0.0.2 and usually on ::1).
* **Refused unless the operator allows them** in ``CONNECT_ALLOWED_SOURCE_NETWORKS``
  (comma-separated CIDRs): private ranges (10/8, 172.16/12, 192.168/16), loopback (127/8, ::1),
  carrier-grade NAT (100.64/10), benchmarking (198.18/15), unique-local (fc00::/7) and anything
  else that is not a public address.
* IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
  6to4 ``2002::/16``) are judged by the IPv4 address they carry.

A host name is resolved **once per connection** and the connection is made to the vetted address,
so a name cannot resolve to an allowed address when checked and to a refused one when connected
(DNS rebinding). For HTTP, :meth:`NetworkPolicy.http_session` is a requests session whose
connections resolve, vet and connect to the vetted address while keeping the name for ``Host``,
SNI and the certificate check; redirects open new connections and are vetted the same way; the
environment's proxy settings are ignored (a proxy would resolve the name itself). For databases
the connector calls :meth:`NetworkPolicy.resolve` and gives the driver the address.

Refusals raise :class:`DestinationRefused`, on purpose not an ``OSError``/``RequestException``:
no retry loop or "connection failed" handler mistakes it for a network fault worth retrying.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, current_app
from requests.adapters import HTTPAdapter
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

EXTENSION_KEY = "connect.network_policy"
ALLOW_SETTING = "CONNECT_ALLOWED_SOURCE_NETWORKS"
MAX_HOST_LENGTH = 253  # RFC 1035: a name is at most 253 characters written out


def _networks(entries: Iterable[tuple[str, str]]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in entries)


ALWAYS_REFUSED = _networks([
    ("169.254.169.254/32", "a cloud metadata service"),
    ("169.254.0.0/16", "link-local (cloud metadata services live here)"),
    ("100.100.100.200/32", "a cloud metadata service (Alibaba Cloud)"),
    ("168.63.129.16/32", "a cloud host service (Azure)"),
    ("0.0.0.0/8", "the 'this network' range"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "a documentation range"),
    ("198.51.100.0/24", "a documentation range"),
    ("203.0.113.0/24", "a documentation range"),
    ("192.88.99.0/24", "the 6to4 relay range"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "the unspecified address"),
    ("fd00:ec2::254/128", "a cloud metadata service (AWS)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
    ("100::/64", "the discard range"),
    ("2001::/23", "reserved for IETF protocol assignments"),
    ("2001:db8::/32", "a documentation range"),
    ("5f00::/16", "segment routing"),
])
PRIVATE = _networks([
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("10.0.0.0/8", "a private range"),
    ("172.16.0.0/12", "a private range"),
    ("192.168.0.0/16", "a private range"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("198.18.0.0/15", "the benchmarking range"),
    ("fc00::/7", "unique-local"),
])
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class DestinationRefused(Exception):
    """A connection the network rules refuse; ``message`` is for the end user."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.message = message
        self.host = host


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``CONNECT_ALLOWED_SOURCE_NETWORKS``: comma-separated CIDRs (a bare address is a /32 or /128)."""
    networks = []
    for part in raw.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{ALLOW_SETTING}: {entry!r} is not a network in CIDR form "
                             "(such as 10.0.0.0/8 or ::1/128)") from None
    return tuple(networks)


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells as a literal (``[::1]`` too), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_problem(host: str) -> str | None:
    """What makes ``host`` unusable as a host name or address at all (checked before any lookup)."""
    if len(host) > MAX_HOST_LENGTH:
        return f"is {len(host)} characters long; a host name has at most {MAX_HOST_LENGTH}"
    if literal_address(host) is not None:
        return None
    labels = host.rstrip(".").split(".")
    if not host or any(not label or len(label) > 63 for label in labels):
        return "is not a host name or IP address"
    if not all(ch.isalnum() or ch in "-_" for label in labels for ch in label) or not host.isascii():
        return "is not a host name or IP address (letters, digits, '-', '_' and '.' only)"
    return None


def port_problem(port: Any) -> str | None:
    """Why ``port`` is no TCP port number (1–65535), if it is not one."""
    number = port_number(port)
    return None if number is not None else f"must be a port number from 1 to 65535 (got {str(port)[:40]!r})"


def port_number(port: Any) -> int | None:
    if isinstance(port, bool):
        return None
    if isinstance(port, str):
        if not port.strip().isdigit() or len(port.strip()) > 5:
            return None
        port = int(port.strip())
    return port if isinstance(port, int) and 1 <= port <= 65535 else None


def _carried_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if any(address in network for network in _NAT64):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class OwnDatabase:
    """Where the service's own database is: refused as a source (see the module docstring)."""

    host: str
    port: int
    database: str | None

    @classmethod
    def from_url(cls, url: str | None) -> OwnDatabase | None:
        if not url or url.startswith("sqlite"):
            return None
        try:
            parsed = make_url(url)
        except ArgumentError:
            return None
        default_port = 3306 if parsed.get_backend_name() in ("mysql", "mariadb") else 5432
        return cls(parsed.host or "localhost", parsed.port or default_port, parsed.database)


def _same_host(address: Address, others: Iterable[Address]) -> bool:
    return any(address == other or (address.is_loopback and other.is_loopback) for other in others)


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))


class NetworkPolicy:
    """Which addresses outbound connections may reach (see the module docstring)."""

    def __init__(self, allowed: Sequence[Network] = (), own_database: OwnDatabase | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self.allowed = tuple(allowed)
        self.own_database = own_database
        self._resolve_name = resolver
        self._connections = _vetted_connection_classes(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NetworkPolicy:
        return cls(parse_networks(str(config.get("ALLOWED_SOURCE_NETWORKS") or "")),
                   OwnDatabase.from_url(config.get("DATABASE_URL")))

    # --- judging one address ----------------------------------------------------------------------

    def address_problem(self, address: Address, port: int, database: str | None = None) -> str | None:
        """Why a connection to ``address``:``port`` (and ``database``) is refused, or None."""
        judged = _carried_ipv4(address)
        for network, why in ALWAYS_REFUSED:
            if judged.version == network.version and judged in network:
                return f"{why}, which is never allowed"
        if self._is_own_database(judged, port, database):
            return "the service's own database, which is never allowed"
        if any(judged.version == network.version and judged in network for network in self.allowed):
            return None
        for network, why in PRIVATE:
            if judged.version == network.version and judged in network:
                return f"{why}, not allowed by this deployment ({ALLOW_SETTING})"
        if not judged.is_global:
            return f"not a public address, not allowed by this deployment ({ALLOW_SETTING})"
        return None

    def _is_own_database(self, address: Address, port: int, database: str | None) -> bool:
        own = self.own_database
        if own is None or port != own.port or (database is not None and database != own.database):
            return False
        literal = literal_address(own.host)
        if literal is not None:
            return _same_host(address, [literal])
        try:
            return _same_host(address, [ipaddress.ip_address(a.split("%")[0])
                                        for a in self._resolve_name(own.host, own.port)])
        except (OSError, UnicodeError, ValueError):
            return False

    def literal_problem(self, host: str, port: int, database: str | None = None) -> str | None:
        """For a literal address (known without a lookup): why it is refused, or None. A name is
        None here: it is judged when it is resolved, at connection time."""
        address = literal_address(host)
        return None if address is None else self.address_problem(address, port, database)

    # --- resolving for one connection -------------------------------------------------------------

    def resolve(self, host: str, port: int, database: str | None = None) -> str:
        """The one address to connect to for ``host``: the first it resolves to that the rules
        allow. Raises :class:`DestinationRefused` when there is none, and ``OSError`` when the name
        does not resolve."""
        problem = host_problem(host)
        if problem is not None:
            raise DestinationRefused(f"host {host[:80]!r} {problem}", host=host)
        literal = literal_address(host)
        try:
            candidates = [str(literal)] if literal is not None else self._resolve_name(host, port)
        except UnicodeError:
            raise DestinationRefused(f"host {host[:80]!r} is not a host name or IP address", host=host) from None
        refused: tuple[str, str] | None = None
        for candidate in candidates:
            problem = self.address_problem(ipaddress.ip_address(candidate.split("%")[0]), port, database)
            if problem is None:
                return candidate
            refused = refused or (candidate, problem)
        if refused is None:
            raise OSError(f"host {host[:80]!r} resolves to no address")
        address, problem = refused
        why = problem if literal is not None else f"it resolves to {address}, {problem}"
        raise DestinationRefused(f"connections to {host[:80]} are refused: {why}", host=host)

    def http_session(self, session_class: type[requests.Session] = requests.Session) -> requests.Session:
        """A requests session whose every connection is resolved, vetted and pinned here."""
        return self.guard(session_class())

    def guard(self, session: requests.Session) -> requests.Session:
        """``session`` (a requests session or subclass, such as Authlib's) made to vet every
        connection it opens."""
        session.trust_env = False  # an environment proxy would resolve the name itself
        adapter = _VettedAdapter(self._connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session


def init_app(app: Flask) -> NetworkPolicy:
    """Build the app's policy from its config (a bad CIDR stops start-up, naming the setting)."""
    policy = NetworkPolicy.from_config(app.config)
    app.extensions[EXTENSION_KEY] = policy
    return policy


def network_policy(app: Flask | None = None) -> NetworkPolicy:
    policy: NetworkPolicy = (app or current_app).extensions[EXTENSION_KEY]
    return policy


# --- requests: connections that resolve and vet their host -----------------------------------------

class _VettedConnection(HTTPConnection):
    """Resolves its host through the policy and connects to that one address; ``host`` (used for
    the Host header, SNI and the certificate check) stays the name."""

    policy: NetworkPolicy

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        self._dns_host = self.policy.resolve(name.strip("[]"), self.port)
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


class _VettedHTTPSConnection(_VettedConnection, HTTPSConnection):
    pass


def _vetted_connection_classes(policy: NetworkPolicy) -> dict[str, type[HTTPConnectionPool]]:
    http_connection = type("VettedHTTPConnection", (_VettedConnection,), {"policy": policy})
    https_connection = type("VettedHTTPSConnection", (_VettedHTTPSConnection,), {"policy": policy})
    return {
        "http": type("VettedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_connection}),
        "https": type("VettedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_connection}),
    }


class _VettedAdapter(HTTPAdapter):
    def __init__(self, pools: dict[str, type[HTTPConnectionPool]]) -> None:
        self._pools = pools
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)
