"""Waking workers when work is queued, instead of after their poll interval.

Code that queues work (a job, a webhook delivery) calls :func:`note_new_work` inside its write
transaction. That does two things, both of which take effect only if the transaction commits:

* on PostgreSQL it sends ``NOTIFY connect_work``, which PostgreSQL delivers at commit (never for a
  rollback) to every connection listening, on every machine: each worker process keeps one such
  connection (:class:`PostgresListener`);
* it marks the session, and the session's ``after_commit`` hook (installed by :func:`watch` on the
  service's sessionmaker) sets the process's :class:`Wakeup`, so a worker thread in the same
  process (``make run``'s embedded worker, the only kind SQLite has) wakes without a round trip.

Polling stays the fallback: a worker waits at most its poll interval, so a lost notification (the
listening connection dropped, another process on SQLite) costs no more than before.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

EXTENSION_KEY = "connect.wakeup"
CHANNEL = "connect_work"
_NOTED = "connect.new_work"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


class Wakeup:
    """A process's doorbell: :meth:`wait` returns early when :meth:`ring` was called meanwhile."""

    def __init__(self) -> None:
        self._rung = threading.Event()

    def ring(self) -> None:
        self._rung.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring (one since the last wait counts); True if rung."""
        rung = self._rung.wait(timeout)
        self._rung.clear()
        return rung


def note_new_work(session: Session) -> None:
    """Say, in the caller's open write transaction, that it queues work for the workers."""
    if session.info.get(_NOTED):
        return
    session.info[_NOTED] = True
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_NOTIFY)


def watch(make_session: sessionmaker[Session], wakeup: Wakeup) -> None:
    """Ring ``wakeup`` after each commit of a session of ``make_session`` that queued work."""

    def _after_commit(session: Session) -> None:
        if session.info.pop(_NOTED, False):
            wakeup.ring()

    def _after_rollback(session: Session) -> None:
        session.info.pop(_NOTED, None)

    event.listen(make_session, "after_commit", _after_commit)
    event.listen(make_session, "after_soft_rollback", lambda session, _previous: _after_rollback(session))


def init_app(app: Flask, make_session: sessionmaker[Session]) -> Wakeup:
    """The app's :class:`Wakeup`, rung after every commit of ``make_session`` that queued work."""
    wakeup = app.extensions[EXTENSION_KEY] = Wakeup()
    watch(make_session, wakeup)
    return wakeup


def get_wakeup(app: Flask) -> Wakeup:
    found: Wakeup | None = app.extensions.get(EXTENSION_KEY)
    return found if found is not None else Wakeup()  # an app built without one: polling only


class PostgresListener:
    """A thread that LISTENs on its own connection and rings ``wakeup`` for each notification;
    it reconnects after an error (polling covers the gap)."""

    RECONNECT_SECONDS = 2.0

    def __init__(self, database_url: str, wakeup: Wakeup) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._wakeup = wakeup
        self._stopping = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait for it)

    def start(self) -> PostgresListener:
        threading.Thread(target=self._run, name="connect-listen", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error:
                log.warning("LISTEN connection lost; polling until it is back")
            self.listening.clear()
            self._stopping.wait(self.RECONNECT_SECONDS)

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=1.0, stop_after=1):
                    self._wakeup.ring()
