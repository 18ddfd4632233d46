"""Keeping what a tap rotated: the ``on_config_change`` sink of the Singer connector (wired in
app/connectors/registry.py).

A tap that refreshes its OAuth token itself may write a new refresh token into its config file;
the provider has then spent the old one, so the new one must be kept, with the token store's
guarantees (app/connectors/tokens.py, "Rotation"):

* **never lost** — it is sealed into the source's credential row in one short write transaction
  (the source row locked first, as every source update does) right after the run, outside any
  other transaction, and before the check goes on or fails; a lock that cannot be had is tried
  again;
* **never replaced by an older one** — it is written only over the very value the run was given
  (:attr:`ConfigChange.given`). A stored value that differs is newer than ours: the user saved new
  credentials meanwhile, or another run already stored its successor. It is then left as it is.

Writing it is no change of configuration (``config_generation`` stays): the rotated token
continues the same grant, so no new check is queued. Each kept property is recorded by an audit
event ``refresh_token_rotated`` naming the property, never the value. Config keys that are no
property of the card (a cached access token) are not kept: the tap makes them again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ...crypto import Keyring
from ...db import begin_write
from ...models import Source, SourceCredential, utcnow
from ...sources.credentials import open_credential, seal_credential
from ...sources.events import record_event
from .connector import ConfigChange

log = logging.getLogger("connect.singer")
ATTEMPTS = 3
RETRY_SECONDS = 0.5


class RotatedProperties:
    """Stores the properties a tap changed in its config file (see the module docstring)."""

    def __init__(self, session_factory: sessionmaker[Session], keyring: Keyring) -> None:
        self.session_factory = session_factory
        self.keyring = keyring

    def __call__(self, change: ConfigChange) -> None:
        if change.other_keys:
            log.info("tap changed config keys that are no property of its card; not kept",
                     extra={"source_id": change.source_id, "keys": sorted(change.other_keys)})
        if not change.properties:
            return
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self._store(change)
                return
            except OperationalError:  # a lock not obtained in time: the value exists nowhere else
                if attempt == ATTEMPTS:
                    log.error("a rotated credential could not be stored", extra={
                        "source_id": change.source_id, "properties": sorted(change.properties)})
                    raise
                time.sleep(RETRY_SECONDS * attempt)

    def _store(self, change: ConfigChange) -> None:
        with self.session_factory() as session, begin_write(session):
            source = session.scalars(select(Source).where(Source.id == change.source_id).with_for_update()).first()
            if source is None or source.deleted_at is not None:
                log.info("a tap rotated a credential of a deleted source; not kept",
                         extra={"source_id": change.source_id})
                return
            for name, value in change.properties.items():
                if self._keep(session, source, change, name, value):
                    record_event(session, source, "refresh_token_rotated", {"property": name, "by": "singer_tap"})

    def _keep(self, session: Session, source: Source, change: ConfigChange, name: str, value: Any) -> bool:
        credential = next((c for c in source.credentials if c.name == name), None)
        is_credential = name in change.credentials
        stored = (open_credential(self.keyring, credential) if credential is not None
                  else None if is_credential else source.properties.get(name))
        if stored == value:
            return False
        if stored != change.given.get(name):
            log.info("a tap rotated a credential the source has replaced since; the newer one is kept",
                     extra={"source_id": source.id, "property": name})
            return False
        if is_credential:
            if credential is None:
                credential = SourceCredential(source_id=source.id, name=name)
                source.credentials.append(credential)
            sealed = seal_credential(self.keyring, source.id, name, value)
            credential.key_id, credential.ciphertext, credential.updated_at = sealed.key_id, sealed.ciphertext, utcnow()
        else:
            source.properties = {**source.properties, name: value}
        log.info("rotated credential stored", extra={"source_id": source.id, "property": name})
        return True
