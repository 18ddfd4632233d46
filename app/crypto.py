"""Encryption at rest: AES-256-GCM under named keys, so keys can be rotated.

``CONNECT_ENCRYPTION_KEYS`` is ``key_id:base64key[,key_id:base64key…]``; the first key encrypts,
every listed key decrypts. Each ciphertext is stored with the id of its key and is bound to where
it lives (``associated_data``, e.g. ``source-credential:42:refresh_token``), so a ciphertext copied
into another row does not decrypt. This module is the only one that sees keys.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

from . import redaction

EXTENSION_KEY = "connect.keyring"
NONCE_BYTES = 12


class KeyringError(Exception):
    """Bad key configuration, or a ciphertext that no configured key opens."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyringError("no encryption key configured (CONNECT_ENCRYPTION_KEYS)")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.primary_id = keys[0][0]
        self._primary_key = keys[0][1]

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def derived_key(self, purpose: str) -> bytes:
        """A key for ``purpose`` alone (HKDF-SHA256 of the primary key), such as the MAC key that
        makes execute's cursors tamper-evident. Rotating the primary key changes it: values signed
        under the old one stop verifying, which is right for short-lived things like cursors."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=f"connect:{purpose}".encode()).derive(self._primary_key)

    def seal(self, plaintext: str, associated_data: str) -> Sealed:
        redaction.remember(plaintext)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[self.primary_id].encrypt(
            nonce, plaintext.encode(), associated_data.encode())
        return Sealed(self.primary_id, nonce + ciphertext)

    def open(self, sealed: Sealed, associated_data: str) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise KeyringError(f"ciphertext under key {sealed.key_id!r}, which is not configured")
        nonce, ciphertext = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
        try:
            plaintext = cipher.decrypt(nonce, ciphertext, associated_data.encode()).decode()
        except InvalidTag as error:
            raise KeyringError(f"ciphertext does not open under key {sealed.key_id!r}") from error
        redaction.remember(plaintext)
        return plaintext


def generate_key_spec() -> str:
    key_id = "k" + secrets.token_hex(3)
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def parse_key_spec(spec: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for index, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id:
            raise KeyringError(f"encryption key #{index + 1}: expected key_id:base64key")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as error:
            raise KeyringError(f"encryption key {key_id!r}: not base64") from error
        if len(key) != 32:
            raise KeyringError(f"encryption key {key_id!r}: must be 32 bytes, got {len(key)}")
        if any(existing == key_id for existing, _ in keys):
            raise KeyringError(f"encryption key id {key_id!r} appears twice")
        keys.append((key_id, key))
    return keys


def _instance_key_spec(app: Flask) -> str:
    """The key file in instance/, created (mode 0600, exclusively) on the first start."""
    path = Path(app.instance_path) / "encryption_keys"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this service made it first
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(generate_key_spec() + "\n")
            app.logger.warning("generated an encryption key", extra={"path": str(path)})
    return path.read_text().strip()


def init_app(app: Flask) -> Keyring:
    spec = app.config.get("ENCRYPTION_KEYS") or _instance_key_spec(app)
    keyring = Keyring(parse_key_spec(spec))
    app.extensions[EXTENSION_KEY] = keyring
    return keyring


def get_keyring(app: Flask | None = None) -> Keyring:
    keyring: Keyring = (app or current_app).extensions[EXTENSION_KEY]
    return keyring
