"""Operations over every encrypted row, whatever its table (see ``models.Sealed``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .crypto import Keyring
from .crypto import Sealed as SealedValue
from .db import begin_write
from .models import Base, Sealed


def sealed_models() -> list[type[Any]]:
    # type[Any]: each is a mapped class that mixes in Sealed (its columns and associated_data).
    return sorted((m.class_ for m in Base.registry.mappers if issubclass(m.class_, Sealed)),
                  key=lambda cls: cls.__tablename__)


def rotate_all(make_session: sessionmaker[Session], keyring: Keyring, batch_size: int = 500) -> dict[str, int]:
    """Re-seal rows not under the primary key, in batches of short transactions."""
    counts: dict[str, int] = {}
    for model in sealed_models():
        counts[model.__tablename__] = 0
        while True:
            with make_session() as session, begin_write(session):
                rows = session.scalars(
                    select(model).where(model.key_id != keyring.primary_id)
                    .order_by(model.id).limit(batch_size).with_for_update()).all()
                for row in rows:
                    plaintext = keyring.open(SealedValue(row.key_id, row.ciphertext), row.associated_data)
                    resealed = keyring.seal(plaintext, row.associated_data)
                    row.key_id, row.ciphertext = resealed.key_id, resealed.ciphertext
            counts[model.__tablename__] += len(rows)
            if len(rows) < batch_size:
                break
    return counts
