"""A card's ``database`` section, parsed once per use into a frozen dataclass, and the connection
settings one source's properties give it.

The section names the dialect and maps each *role* the connector needs onto one of the card's
properties (cards spell them differently: ``dbname`` or ``database``, ``sid``)::

    "connector": "database",
    "database": {"dialect": "postgresql",
                 "properties": {"host": "host", "port": "port", "database": "dbname", "user": "user",
                                "password": "password", "ssl": "ssl", "filter_dbs": "filter_dbs",
                                "ssh": "ssh", "log_based": "use_log_based_replication"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...catalog.cards import ReportCard
from ..base import ConnectorFailure
from ..network import port_number

DIALECTS = ("postgresql", "redshift", "mysql", "mssql", "oracle")
ROLES = ("host", "port", "database", "user", "password", "ssl", "filter_dbs", "filter_schemas", "ssh",
         "log_based", "ssl_client_auth")
REQUIRED_ROLES = ("host", "user")


@dataclass(frozen=True)
class DatabaseSection:
    dialect: str
    properties: Mapping[str, str]  # role -> property name

    @classmethod
    def of(cls, card: ReportCard) -> DatabaseSection:
        """The card's section; a section the card cannot use fails as the operator's to fix."""
        section = card.database or {}
        dialect = section.get("dialect")
        roles = dict(section.get("properties") or {})
        problems = [] if dialect in DIALECTS else [f"dialect {dialect!r} is not one of {', '.join(DIALECTS)}"]
        problems += [f"role {role!r} is unknown" for role in roles if role not in ROLES]
        problems += [f"role {role!r} names no property of the card" for role, name in roles.items()
                     if name not in card.properties]
        problems += [f"role {role!r} is missing" for role in REQUIRED_ROLES if role not in roles]
        if problems:
            raise ConnectorFailure("configuration_error", f"{card.type}: database section: {'; '.join(problems)}",
                                   fixed_by="operator")
        return cls(dialect=str(dialect), properties=roles)

    def value(self, properties: Mapping[str, Any], role: str) -> Any:
        name = self.properties.get(role)
        return None if name is None else properties.get(name)

    def property_of(self, role: str) -> str:
        return self.properties.get(role, role)


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _names(value: Any) -> tuple[str, ...]:
    """A comma-separated list property (``filter_dbs``) as names, blanks dropped."""
    if not isinstance(value, str):
        return ()
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


@dataclass(frozen=True)
class ConnectionSettings:
    """What one source's properties say about reaching its database."""

    host: str
    port: int
    database: str | None
    user: str
    password: str
    ssl: bool
    ssh: bool
    ssl_client_auth: bool
    log_based: bool
    filter_dbs: tuple[str, ...]
    filter_schemas: tuple[str, ...]

    def __repr__(self) -> str:  # never shows the password
        return f"ConnectionSettings(host={self.host!r}, port={self.port}, database={self.database!r})"

    @classmethod
    def of(cls, section: DatabaseSection, properties: Mapping[str, Any], default_port: int) -> ConnectionSettings:
        raw_port = section.value(properties, "port")
        port = default_port if raw_port in (None, "") else port_number(raw_port)
        if port is None:
            raise ConnectorFailure("invalid_port", f"{section.property_of('port')} must be a port number from 1 to "
                                   "65535", fixed_by="user")
        database = section.value(properties, "database")
        return cls(
            host=str(section.value(properties, "host") or ""),
            port=port,
            database=str(database) if database not in (None, "") else None,
            user=str(section.value(properties, "user") or ""),
            password=str(section.value(properties, "password") or ""),
            ssl=_flag(section.value(properties, "ssl")),
            ssh=_flag(section.value(properties, "ssh")),
            ssl_client_auth=_flag(section.value(properties, "ssl_client_auth")),
            log_based=_flag(section.value(properties, "log_based")),
            filter_dbs=_names(section.value(properties, "filter_dbs")),
            filter_schemas=_names(section.value(properties, "filter_schemas")),
        )
