"""The ``database`` connector: sources that are databases, checked and discovered for real.

For each call an SQLAlchemy engine is made (``NullPool``: nothing stays open after the call) whose
connections are opened by the dialect's driver to the address the network rules vetted, with a
connect timeout (``CONNECT_HTTP_TIMEOUT``), read-only sessions and a statement timeout
(:data:`STATEMENT_TIMEOUT`). Only bound parameters reach SQL: names the user gives (``dbname``,
``filter_dbs``, schema filters) are connection parameters or compared as values, never pasted
into a statement.

Dialects: PostgreSQL protocol through psycopg (postgresql, redshift), MySQL protocol through
PyMySQL (mysql), and SQL Server / Oracle through the optional extras ``connect[mssql]``
(pymssql) and ``connect[oracle]`` (oracledb): without them a check fails at once as the
operator's to fix (``driver_not_installed``, naming the extra) and ``availability`` says so.

SSH tunnels (``ssh: true``) are not supported by this deployment: such a source's check fails at
once as the operator's to fix, saying so (no permissively licensed SSH client and real SSH server
to test it against are part of this project yet); so does one with SSL client certificates
(``ssl_client_auth_enabled: true``). ``ssl: true`` asks for an encrypted connection (libpq's
``sslmode=require``; on MySQL, TLS without certificate verification), refused when the server
offers none.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ...catalog.cards import ReportCard
from ...errors import Problem
from ..base import Availability, ConnectorFailure, DiscoveredStream, RecordPage, RecordQuery, SourceTarget
from ..network import DestinationRefused, NetworkPolicy, host_problem, port_problem
from . import generic, mysql, postgres, records
from .section import ConnectionSettings, DatabaseSection
from .streams import Table, discovered_stream

STATEMENT_TIMEOUT = 60.0  # seconds one catalog query may take


@dataclass(frozen=True)
class Dialect:
    name: str
    url: str  # the SQLAlchemy dialect; connections come from ``connect``, never from a URL
    driver: str  # the module that must be importable
    extra: str | None  # the optional dependency group that installs it
    default_port: int
    connect: Callable[..., Any]
    failure: Callable[[BaseException], ConnectorFailure | None]
    discover: Callable[[Connection, ConnectionSettings, Any], list[Table]]
    databases: Callable[[ConnectionSettings], Iterable[str | None]]
    probe: str = "SELECT 1"


def _one_connection(settings: ConnectionSettings) -> tuple[str | None]:
    return (settings.database,)


DIALECTS = {
    "postgresql": Dialect("postgresql", "postgresql+psycopg://", "psycopg", None, 5432, postgres.connect,
                          postgres.failure, postgres.discover, postgres.discovery_databases),
    "redshift": Dialect("redshift", "postgresql+psycopg://", "psycopg", None, 5439,
                        partial(postgres.connect, startup_options=False), postgres.failure, postgres.discover,
                        postgres.discovery_databases),
    "mysql": Dialect("mysql", "mysql+pymysql://", "pymysql", None, 3306, mysql.connect, mysql.failure,
                     mysql.discover, _one_connection),
    "mssql": Dialect("mssql", "mssql+pymssql://", "pymssql", "mssql", 1433, generic.connect_mssql,
                     generic.failure, generic.discover, _one_connection),
    "oracle": Dialect("oracle", "oracle+oracledb://", "oracledb", "oracle", 1521, generic.connect_oracle,
                      generic.failure, generic.discover, _one_connection, probe="SELECT 1 FROM DUAL"),
}
SSH_UNSUPPORTED = "SSH tunnels are not supported by this deployment"
CLIENT_CERTIFICATES_UNSUPPORTED = "SSL client certificates are not supported by this deployment"


def _resolution_failure(host: str, error: OSError) -> ConnectorFailure:
    if isinstance(error, socket.gaierror) and error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
        return ConnectorFailure("unknown_host", f"the host name {host[:80]!r} does not resolve", fixed_by="user")
    return ConnectorFailure("source_unreachable", f"the host {host[:80]!r} cannot be reached", fixed_by="time",
                            operator_detail=str(error)[:300])


class DatabaseConnector:
    kind = "database"

    def __init__(self, policy: NetworkPolicy, *, timeout: float = 20.0,
                 statement_timeout: float = STATEMENT_TIMEOUT) -> None:
        self.policy = policy
        self.timeout = timeout
        self.statement_timeout = statement_timeout

    # --- the Connector protocol -------------------------------------------------------------------

    def availability(self, card: ReportCard) -> Availability:
        try:
            self._dialect(DatabaseSection.of(card))
        except ConnectorFailure as failure:
            return Availability(False, failure.message)
        return Availability(True)

    def check(self, target: SourceTarget) -> None:
        dialect, settings = self._prepare(target)
        with self._connection(dialect, settings, settings.database) as connection:
            connection.execute(text(dialect.probe))

    def discover(self, target: SourceTarget) -> list[DiscoveredStream]:
        dialect, settings = self._prepare(target)
        tables: list[Table] = []
        for database in dialect.databases(settings):
            with self._connection(dialect, settings, database) as connection:
                tables += dialect.discover(connection, settings, database)
        return [discovered_stream(table, log_based=settings.log_based) for table in tables]

    # --- execute (app/execute/): records on demand ----------------------------------------------------

    def list_records(self, target: SourceTarget, query: RecordQuery) -> RecordPage:
        """A keyset-paginated page of the stream's table, only its selected columns (records.py)."""
        dialect, settings = self._prepare(target)
        with _as_query_failures(), \
                self._connection(dialect, settings, self._database_of(dialect, settings, query)) as connection:
            table = records.table_name(connection, query.stream_metadata, query.stream_name)
            rows, following = records.select_page(connection, table, query.fields, query.key_properties,
                                                  query.limit, query.position, query.sortable)
        return RecordPage(rows, following)

    def get_record(self, target: SourceTarget, query: RecordQuery) -> dict[str, Any] | None:
        dialect, settings = self._prepare(target)
        with _as_query_failures(), \
                self._connection(dialect, settings, self._database_of(dialect, settings, query)) as connection:
            table = records.table_name(connection, query.stream_metadata, query.stream_name)
            return records.select_one(connection, table, query.fields, query.key or {})

    @staticmethod
    def _database_of(dialect: Dialect, settings: ConnectionSettings, query: RecordQuery) -> str | None:
        # On PostgreSQL a connection reaches one database: the stream's (filter_dbs may list several).
        if dialect.databases is postgres.discovery_databases:
            return str(query.stream_metadata.get("database-name") or settings.database or "postgres")
        return settings.database

    # --- save time --------------------------------------------------------------------------------

    def destination_problems(self, card: ReportCard, properties: Mapping[str, Any]) -> list[Problem]:
        """Hosts and ports no connection can use, and refused literal addresses (a 422 at save)."""
        try:
            section = DatabaseSection.of(card)
            dialect = self._dialect(section, require_driver=False)
        except ConnectorFailure:
            return []
        host, port = section.value(properties, "host"), section.value(properties, "port")
        problems = []
        if isinstance(host, str) and (reason := host_problem(host)):
            problems.append(_problem(section.property_of("host"), reason))
        if port not in (None, "") and (reason := port_problem(port)):
            problems.append(_problem(section.property_of("port"), reason))
        if problems or not isinstance(host, str):
            return problems
        settings = ConnectionSettings.of(section, properties, dialect.default_port)
        for role, database in self._databases_named(dialect, settings):
            reason = self.policy.literal_problem(host, settings.port, database)
            if reason:
                where = "filter_dbs" if role == "filter_dbs" else "host"
                problems.append(_problem(section.property_of(where), f"connections to {host} are refused: {reason}"))
                break
        return problems

    @staticmethod
    def _databases_named(dialect: Dialect, settings: ConnectionSettings) -> list[tuple[str, str | None]]:
        named: list[tuple[str, str | None]] = [("database", settings.database)]
        if dialect.databases is postgres.discovery_databases:
            named += [("filter_dbs", name) for name in settings.filter_dbs]
        return named

    # --- one call ---------------------------------------------------------------------------------

    def _dialect(self, section: DatabaseSection, *, require_driver: bool = True) -> Dialect:
        dialect = DIALECTS[section.dialect]
        if require_driver and importlib.util.find_spec(dialect.driver) is None:
            extra = f": install the optional dependencies connect[{dialect.extra}]" if dialect.extra else ""
            raise ConnectorFailure("driver_not_installed", f"the {dialect.driver} driver for {dialect.name} sources "
                                   f"is not installed in this deployment{extra}", fixed_by="operator")
        return dialect

    def _prepare(self, target: SourceTarget) -> tuple[Dialect, ConnectionSettings]:
        section = DatabaseSection.of(target.card)
        dialect = self._dialect(section)
        settings = ConnectionSettings.of(section, target.properties, dialect.default_port)
        if settings.ssh:
            raise ConnectorFailure("ssh_not_supported", SSH_UNSUPPORTED, fixed_by="operator")
        if settings.ssl_client_auth:
            raise ConnectorFailure("ssl_client_auth_not_supported", CLIENT_CERTIFICATES_UNSUPPORTED,
                                   fixed_by="operator")
        return dialect, settings

    @contextmanager
    def _connection(self, dialect: Dialect, settings: ConnectionSettings, database: str | None) -> Iterator[Connection]:
        """A read-only connection to ``database``; driver errors come out as ConnectorFailure."""

        def vetted_connection() -> Any:
            address = self.policy.resolve(settings.host, settings.port, database)
            return dialect.connect(settings, address, database, connect_timeout=self.timeout,
                                   statement_timeout=self.statement_timeout)

        engine = create_engine(dialect.url, poolclass=NullPool, creator=vetted_connection)
        try:
            with engine.connect() as connection, connection.begin():
                yield connection
        except DestinationRefused as refused:
            raise ConnectorFailure("destination_refused", refused.message, fixed_by="user") from None
        except DBAPIError as error:
            raise self._failure(dialect, error.orig or error) from None
        except OSError as error:
            raise _resolution_failure(settings.host, error) from None
        except ConnectorFailure:
            raise
        except Exception as error:
            failure = dialect.failure(error)
            if failure is None:
                raise
            raise failure from None
        finally:
            engine.dispose()

    @staticmethod
    def _failure(dialect: Dialect, error: BaseException) -> ConnectorFailure:
        return dialect.failure(error) or ConnectorFailure(
            "source_unavailable", "the database server answered with an error", fixed_by="time",
            operator_detail=str(error)[:500])


@contextmanager
def _as_query_failures() -> Iterator[None]:
    """The dialects' failures speak of catalog queries (check, discovery); an execute query's say so."""
    try:
        yield
    except ConnectorFailure as failure:
        detail = failure.operator_detail or ""
        if failure.error_type == "discovery_failed" or (
                failure.error_type == "unknown_database" and ('relation "' in detail or "column " in detail)):
            raise ConnectorFailure("query_failed", "the database refused the query (has the table changed since "
                                   "discovery?)", fixed_by="user", operator_detail=failure.operator_detail) from None
        if failure.message.startswith("a catalog query took too long"):
            raise ConnectorFailure(failure.error_type, "the query took longer than the statement timeout",
                                   fixed_by="time", operator_detail=failure.operator_detail) from None
        raise


def _problem(name: str, reason: str) -> Problem:
    return Problem.of_property(name, reason)
