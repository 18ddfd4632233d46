"""The database: one engine per app, sessions per request or job, migrations through Alembic.

Routes get the request's session from :func:`session`; it is closed when the app context ends.
Jobs and CLI commands open their own with ``db.Session()``. Either way a use case runs inside
``with session.begin():`` so that it commits once or not at all.

SQLite is the embedded default. Two things make it behave under several threads and processes:
WAL mode with a busy timeout, and ``BEGIN IMMEDIATE`` for transactions that will write after
reading (see :func:`begin_write`): a deferred transaction that reads first and writes later can
fail at once with ``SQLITE_BUSY`` instead of waiting, whatever the busy timeout says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

EXTENSION_KEY = "connect.db"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see begin_write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def init_app(app: Flask) -> Database:
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    database = Database(url)
    app.extensions[EXTENSION_KEY] = database
    app.teardown_appcontext(_close_request_session)
    return database


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION_KEY]


def session() -> Session:
    """The session of the current request (or app context), opened on first use."""
    if "db_session" not in g:
        g.db_session = get_db().Session()
    return g.db_session


def _close_request_session(_exc: BaseException | None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


@contextmanager
def begin_write(db_session: Session) -> Iterator[Session]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN.

    On PostgreSQL this is an ordinary transaction; row locks (``with_for_update``) do the rest.
    The session must not be in a transaction already (end reads with ``with session.begin()``).
    """
    with db_session.begin():
        if db_session.get_bind().dialect.name == "sqlite":
            db_session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield db_session
