"""Write transactions from many threads of one process: each waits its turn, none fails."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, update

from app import db
from app.models import Account


def test_concurrent_write_transactions_all_commit(app, account):
    errors: list[BaseException] = []
    database = db.get_db(app)

    def writer() -> None:
        try:
            for _ in range(10):
                with database.Session() as session, db.begin_write(session):
                    # FOR UPDATE: PostgreSQL's row lock; on SQLite the transaction holds the lock.
                    name = session.scalar(select(Account.name).where(Account.id == account.id)
                                          .with_for_update())
                    time.sleep(0.001)  # hold the transaction so that the threads overlap
                    session.execute(update(Account).where(Account.id == account.id)
                                    .values(name=f"{name}+"))
        except BaseException as error:  # noqa: BLE001  reported below
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with database.Session() as session:
        name = session.scalar(select(Account.name).where(Account.id == account.id))
    # Read-modify-write in each transaction: a lost update would show as fewer "+".
    assert name.count("+") == 60


def test_a_failed_write_transaction_lets_the_next_one_in(app, account):
    database = db.get_db(app)
    try:
        with database.Session() as session, db.begin_write(session):
            session.execute(update(Account).where(Account.id == account.id).values(name="changed"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    done = threading.Event()

    def writer() -> None:
        with database.Session() as session, db.begin_write(session):
            session.execute(update(Account).where(Account.id == account.id).values(name="after"))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert done.wait(10)
    with database.Session() as session:
        assert session.scalar(select(Account.name).where(Account.id == account.id)) == "after"


def test_an_http_request_inside_a_write_transaction_is_caught(app):
    """The suite-wide check (tests/conftest.py) sees a request sent inside begin_write, and only
    there: the rule is that no network call runs inside a write transaction, on any database."""
    import requests

    from .conftest import NETWORK_IN_WRITE
    from .servers import create_data_api, serve

    database = db.get_db(app)
    with serve(create_data_api()) as url:
        before = len(NETWORK_IN_WRITE)
        requests.get(f"{url}/public/check", timeout=10)
        with database.Session() as session, session.begin():
            requests.get(f"{url}/public/check", timeout=10)  # a read transaction: allowed
        assert len(NETWORK_IN_WRITE) == before
        with database.Session() as session, db.begin_write(session):
            assert db.in_write_transaction()
            requests.get(f"{url}/public/check?secret=planted", timeout=10)
        assert not db.in_write_transaction()
        caught = NETWORK_IN_WRITE[before:]
        del NETWORK_IN_WRITE[before:]  # provoked on purpose: not a failure of the run
    assert caught == ["tests/test_db_writes.py::test_an_http_request_inside_a_write_transaction_is_caught: "
                      "GET /public/check"]
