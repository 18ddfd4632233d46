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

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: threads take turns, processes rely on SQLite's own wait
    fcntl = None  # type: ignore[assignment]

from typing import Any, cast

from flask import Flask, current_app, g
from sqlalchemy import CursorResult, Engine, Result, create_engine, event
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


_BEGIN = {"DEFERRED": "BEGIN DEFERRED", "IMMEDIATE": "BEGIN IMMEDIATE"}
SQLITE_BUSY_TIMEOUT_S = 30  # how long a statement waits for another connection's lock


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see begin_write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to the driver: BEGIN returns no rows and takes no parameters, so it needs none
        # of the statement machinery (it runs once per transaction).
        connection.connection.dbapi_connection.execute(_BEGIN[mode])

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
    database: Database = (app or current_app).extensions[EXTENSION_KEY]
    return database


def session() -> Session:
    """The session of the current request (or app context), opened on first use."""
    if "db_session" not in g:
        g.db_session = get_db().Session()
    opened: Session = g.db_session
    return opened


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (what ``Session.execute`` returns for one is a
    cursor result, whatever its declared type)."""
    return cast(CursorResult[Any], result).rowcount


def _close_request_session(_exc: BaseException | None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


class _WriteLock:
    """Write transactions on one SQLite database take turns here before ``BEGIN IMMEDIATE``.

    SQLite's own wait for a busy database sleeps in growing steps (up to 100 ms) and polls, so a
    writer that found the database locked sleeps on after it was freed; with a few threads in each
    of a few processes writing, they mostly sleep. Here the threads of a process queue on a lock
    (handed over at once), and the processes on ``flock`` of a file beside the database (polled
    every millisecond at most). Both waits are bounded by the busy timeout: past it, BEGIN
    IMMEDIATE waits and fails as it would alone. Writers that do not come through here (another
    program) are still handled by SQLite's own locking.
    """

    def __init__(self, database_path: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0  # changed only by the thread holding _threads
        self._path = f"{database_path}-writelock" if database_path and fcntl is not None else None
        self._fd: int | None = None
        self._fd_pid = 0
        self._file_locked = False

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            return False
        self._depth += 1
        if self._depth == 1 and self._path is not None:
            self._file_locked = self._lock_file(deadline)
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file_locked and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._file_locked = False
        self._threads.release()

    def _lock_file(self, deadline: float) -> bool:
        if self._path is None:
            return False
        if self._fd is None or self._fd_pid != os.getpid():  # a forked process needs its own
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._path = None  # a read-only folder: SQLite's own wait only
                return False
            self._fd_pid = os.getpid()
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)


# How deep in begin_write each thread is: no network call may run inside a write transaction (on
# SQLite one holds the database's only write lock), and the test suite checks every HTTP request
# against in_write_transaction().
_writing = threading.local()


def in_write_transaction() -> bool:
    """Whether the current thread is inside :func:`begin_write`."""
    return getattr(_writing, "depth", 0) > 0


@contextmanager
def _counted_write() -> Iterator[None]:
    _writing.depth = getattr(_writing, "depth", 0) + 1
    try:
        yield
    finally:
        _writing.depth -= 1


_write_locks: weakref.WeakKeyDictionary[Engine, _WriteLock] = weakref.WeakKeyDictionary()
_write_locks_guard = threading.Lock()


def _write_lock(engine: Engine) -> _WriteLock:
    lock = _write_locks.get(engine)
    if lock is None:
        with _write_locks_guard:
            database = engine.url.database
            path = None if not database or database == ":memory:" or database.startswith("file:") \
                else str(Path(database).resolve())
            lock = _write_locks.setdefault(engine, _WriteLock(path))
    return lock


@contextmanager
def begin_write(db_session: Session) -> Iterator[Session]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN.

    On PostgreSQL this is an ordinary transaction; row locks (``with_for_update``) do the rest.
    The session must not be in a transaction already (end reads with ``with session.begin()``).

    On SQLite, writers first take turns in :class:`_WriteLock` (threads and processes), so that
    they do not sleep in SQLite's own wait for a busy database. Never make a network call inside
    (see :func:`in_write_transaction`): every other writer would wait for it.
    """
    engine = db_session.get_bind().engine
    if engine.dialect.name != "sqlite":
        with _counted_write(), db_session.begin():
            yield db_session
        return
    lock = _write_lock(engine)
    # Bounded like SQLite's own wait: past it, BEGIN IMMEDIATE waits (and fails) as it would alone.
    acquired = lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        with _counted_write(), db_session.begin():
            db_session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            yield db_session
    finally:
        if acquired:
            lock.release()
