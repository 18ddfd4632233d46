"""Operations over every encrypted row, whatever its table (see ``models.Sealed``): checking at
start-up that the configured keys open what is stored, and re-sealing under a new key."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .crypto import Keyring, KeyringError, get_keyring
from .crypto import Sealed as SealedValue
from .db import begin_write, get_db
from .models import Base, Sealed

log = logging.getLogger(__name__)


def sealed_models() -> list[type[Any]]:
    return sorted((m.class_ for m in Base.registry.mappers if issubclass(m.class_, Sealed)),
                  key=lambda cls: cls.__tablename__)


# --- start-up: do the configured keys open the stored secrets? ---------------------------------------


@dataclass(frozen=True)
class KeyUse:
    """The rows of one table sealed under one key id, with the first and last of them as samples."""

    table: str
    key_id: str
    rows: int
    sample_ids: tuple[int, ...]


def key_uses(session: Session) -> list[KeyUse]:
    """Every (table, key id) pair in the database. One grouped scan per sealed table; tables not
    created yet (a database before ``flask connect migrate``) hold nothing."""
    existing = set(inspect(session.connection()).get_table_names())
    uses = []
    for model in sealed_models():
        if model.__tablename__ not in existing:
            continue
        grouped = session.execute(select(model.key_id, func.count(), func.min(model.id), func.max(model.id))
                                  .group_by(model.key_id).order_by(model.key_id))
        uses += [KeyUse(model.__tablename__, key_id, rows, tuple(sorted({first, last})))
                 for key_id, rows, first, last in grouped]
    return uses


def _opens(keyring: Keyring, row: Any) -> bool:  # a row of a Sealed model
    try:
        keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)
    except KeyringError:
        return False
    return True


def key_problems(session: Session, keyring: Keyring) -> list[str]:
    """What is wrong between the configured keys and the stored rows, one sentence per problem.

    A key id found in a table must be configured; a configured key must open at least one of two
    samples of its rows (the first and the last: one damaged row does not stop the service, a wrong
    key opens neither). Configured keys that seal nothing yet are fine: a new first key before
    ``rotate-keys``, or every key of an empty database.
    """
    models = {model.__tablename__: model for model in sealed_models()}
    problems = []
    for use in key_uses(session):
        where = f"{use.table} has {use.rows} row(s) sealed under key {use.key_id!r}"
        if use.key_id not in keyring.key_ids:
            problems.append(
                f"{where}, which CONNECT_ENCRYPTION_KEYS does not list: add that key back (after the "
                "first key); an old key must stay configured until `flask connect rotate-keys` has "
                "moved every row off it")
        elif not any(_opens(keyring, session.get(models[use.table], row_id)) for row_id in use.sample_ids):
            problems.append(
                f"{where}, and the configured key {use.key_id!r} opens none of the rows tried "
                f"(ids {', '.join(map(str, use.sample_ids))}): its value is not the one they were sealed "
                "with; configure the original value of that key")
    return problems


def verify_keys(app: Flask) -> None:
    """Refuse to start (:class:`KeyringError`) when the configured keys do not open the stored
    secrets: a service started with a wrong or missing key would serve, seal new credentials under
    the wrong key and fail every job that needs an old one.

    A database that cannot be reached is not a reason to stop (``/health`` reports it, and a gunicorn
    worker restarted during a database outage must not take the whole server down): the check is
    skipped with a warning.
    """
    keyring = get_keyring(app)
    try:
        with get_db(app).Session() as session:
            problems = key_problems(session, keyring)
    except OperationalError as error:
        log.warning("encryption keys not verified: the database is unreachable",
                    extra={"error_class": type(error).__name__})
        return
    if problems:
        message = ("the encryption keys do not open the stored secrets, so the service does not start:\n"
                   + "\n".join(f"  - {problem}" for problem in problems))
        log.error("encryption keys do not open the stored secrets", extra={"problems": problems})
        raise KeyringError(message)


# --- rotation ---------------------------------------------------------------------------------------


def rotate_all(make_session: sessionmaker[Session], keyring: Keyring, batch_size: int = 500) -> dict[str, int]:
    """Re-seal rows not under the primary key, in batches of short transactions.

    A row that no configured key opens stops the rotation with :class:`KeyringError` naming it;
    the batches before it stay committed, so running it again after the fix carries on.
    """
    counts: dict[str, int] = {}
    for model in sealed_models():
        counts[model.__tablename__] = 0
        while True:
            with make_session() as session, begin_write(session):
                rows: Sequence[Any] = session.scalars(
                    select(model).where(model.key_id != keyring.primary_id)
                    .order_by(model.id).limit(batch_size).with_for_update()).all()
                for row in rows:
                    _reseal(keyring, model.__tablename__, row)
            counts[model.__tablename__] += len(rows)
            if len(rows) < batch_size:
                break
    return counts


def _reseal(keyring: Keyring, table: str, row: Any) -> None:  # a row of a Sealed model
    try:
        plaintext = keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)
    except KeyringError as error:
        raise KeyringError(f"{table} row {row.id}: {error}") from None
    resealed = keyring.seal(plaintext, row.associated_data)
    row.key_id, row.ciphertext = resealed.key_id, resealed.ciphertext
