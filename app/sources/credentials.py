"""A source's credentials: merged with a request's values, sealed, opened.

Credentials live in ``source_credentials`` as ciphertext bound to their row by
:func:`app.models.credential_associated_data` (the one place that names where a credential lives:
:func:`seal_credential` seals under it before the row exists, ``SourceCredential.associated_data``
opens with it). Ordinary properties are plain JSON in ``sources.properties``. Values are opened at
the edge where they are used (:func:`decrypted_properties`, for the one call that needs them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..catalog.cards import ReportCard
from ..crypto import Keyring, Sealed
from ..models import Source, SourceCredential, credential_associated_data

# Stands for a stored credential's value in :func:`current_values`: its value is never compared.
CREDENTIAL_SENTINEL = object()


class StoredSource(Protocol):
    """What merging needs to know of a stored source: its id, plain values and credential names."""

    @property
    def id(self) -> int: ...

    @property
    def properties(self) -> dict[str, Any]: ...

    @property
    def credential_names(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class PropertyWrites:
    """What applying a request's values to a stored source comes to (nothing written yet)."""

    plain: dict[str, Any]  # the source's new ``properties`` column
    sealed: Mapping[str, Sealed]  # credentials to insert or replace, sealed for their row
    cleared: frozenset[str]  # stored credentials to delete
    changed: frozenset[str]  # names whose value changed (a credential resent counts as changed)
    credential_names: frozenset[str]  # the source's credential names afterwards


def seal_credential(keyring: Keyring, source_id: int, name: str, value: Any) -> Sealed:
    text = value if isinstance(value, str) else json.dumps(value)
    return keyring.seal(text, credential_associated_data(source_id, name))


def open_credential(keyring: Keyring, credential: SourceCredential) -> str:
    return keyring.open(Sealed(credential.key_id, credential.ciphertext), credential.associated_data)


def decrypted_properties(keyring: Keyring, source: Source) -> dict[str, Any]:
    """Every provided property with credentials opened: for the one call that needs them."""
    return opened_properties(keyring, source.id, source.properties,
                             {c.name: Sealed(c.key_id, c.ciphertext) for c in source.credentials})


def opened_properties(keyring: Keyring, source_id: int, properties: Mapping[str, Any],
                      sealed: Mapping[str, Sealed]) -> dict[str, Any]:
    """The plain properties and the credentials ``sealed`` by name, opened (a source read as rows)."""
    values = {k: v for k, v in properties.items() if v is not None}
    for name, value in sealed.items():
        values[name] = keyring.open(value, credential_associated_data(source_id, name))
    return values


def current_values(source: StoredSource) -> dict[str, Any]:
    """The source's provided values as the property rules compare them (credentials by sentinel)."""
    values: dict[str, Any] = {k: v for k, v in source.properties.items() if v is not None}
    values.update(dict.fromkeys(source.credential_names, CREDENTIAL_SENTINEL))
    return values


def merge_properties(keyring: Keyring, card: ReportCard, source: StoredSource,
                     values: Mapping[str, Any]) -> PropertyWrites:
    """Apply ``values`` (None clears) to the stored source; credentials are sealed for its rows."""
    plain = dict(source.properties)
    names = set(source.credential_names)
    sealed: dict[str, Sealed] = {}
    cleared: set[str] = set()
    changed: set[str] = set()
    for name, value in values.items():
        if card.properties[name].is_credential:
            if value is None:
                if name in names:
                    names.discard(name)
                    cleared.add(name)
                    changed.add(name)
                continue
            sealed[name] = seal_credential(keyring, source.id, name, value)
            names.add(name)
            changed.add(name)  # a credential resent is treated as changed: it may be a new secret
        elif value is None:
            if plain.pop(name, None) is not None:
                changed.add(name)
        elif plain.get(name) != value:
            plain[name] = value
            changed.add(name)
    return PropertyWrites(plain, sealed, frozenset(cleared - sealed.keys()), frozenset(changed),
                          frozenset(names))
