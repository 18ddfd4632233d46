"""Exporting a source for a pipeline host: its tap's config and the hand-off catalog as files.

``flask connect export-source ID DIR`` (operator only: the command needs the service's database and
keys) writes ``DIR/config.json`` — the source's properties as its tap's config, credentials opened —
and ``DIR/catalog.json`` — the catalog with the user's selections (``GET …/catalog``). It is the
one way credentials ever leave the service in clear, so it is audited: a ``source_exported`` event
(the directory and file names, never a value) is committed in the same transaction that wrote the
files, and files written by a transaction that did not commit are removed. Both files are 0600 in
a directory made 0700 if the command makes it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ..catalog import Catalog
from ..catalog.singer_section import parse_spec
from ..connectors.singer.config import ConfigConversionError
from ..connectors.singer.connector import SingerConnector
from ..crypto import Keyring
from ..db import begin_write
from ..errors import Conflict, NotFound
from ..models import Source
from ..sources.credentials import decrypted_properties
from ..sources.events import record_event
from .service import handoff_catalog

log = logging.getLogger("connect.export")
CONFIG_FILE, CATALOG_FILE = "config.json", "catalog.json"


def export_source(session: Session, catalog: Catalog, keyring: Keyring, singer: SingerConnector, source_id: int,
                  directory: Path) -> list[Path]:
    """Write the source's tap config (as ``singer`` gives it to the tap) and catalog into
    ``directory``; the paths written."""
    with session.begin():
        found = session.get(Source, source_id)
        if found is None or found.deleted_at is not None:
            raise NotFound(f"source {source_id} not found")
        account_id = found.account_id
    handed_over = handoff_catalog(session, catalog, account_id, source_id)
    written: list[Path] = []
    try:
        with begin_write(session):
            source = session.get_one(Source, source_id, with_for_update=True)
            config = _config(catalog, source, keyring, singer)
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name, document in ((CONFIG_FILE, config), (CATALOG_FILE, handed_over)):
                written.append(_write_private(directory / name, document))
            record_event(session, source, "source_exported", {
                "directory": str(directory.resolve()), "files": [CONFIG_FILE, CATALOG_FILE],
                "streams": len(handed_over["streams"])})
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    log.warning("source exported with its credentials in clear", extra={
        "source_id": source_id, "directory": str(directory.resolve())})
    return written


def _config(catalog: Catalog, source: Source, keyring: Keyring, singer: SingerConnector) -> dict[str, Any]:
    card = catalog.get(source.type)
    if card is None or card.singer is None:
        raise Conflict(f"source type {source.type} has no Singer tap: there is no tap config to export",
                       type="not_exportable")
    try:
        return singer.tap_config(parse_spec(card.singer), decrypted_properties(keyring, source))
    except ConfigConversionError as error:
        raise Conflict(str(error), type="not_exportable") from None


def _write_private(path: Path, document: Mapping[str, Any]) -> Path:
    """``document`` as JSON in ``path``, readable by its owner only (also when it was there before)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
    return path
