"""Field encryption (AES-GCM with key ids for rotation) and keyed blind indexes (ACC-6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app, has_app_context


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class MissingKeyError(KeyError):
    """A stored value names a key id FIELD_ENCRYPTION_KEYS no longer holds."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"FIELD_ENCRYPTION_KEYS has no key {key_id!r}, which stored values are encrypted with:"
                         f" put {key_id} back after the new key and run `flask keys reencrypt` before retiring it")
        self.key_id = key_id

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0])


class KeyRing:
    """Keys parsed from ``"k2:<b64>,k1:<b64>"``; the first one encrypts, all of them decrypt."""

    def __init__(self, spec: str, blind_key: str) -> None:
        from config import parse_field_keys

        self.keys: dict[str, bytes] = dict(parse_field_keys(spec))
        self.primary = next(iter(self.keys))
        self.blind_key = blind_key.encode()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.keys[self.primary]).encrypt(nonce, plaintext.encode(), self.primary.encode())
        return f"{self.primary}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str) -> str:
        key_id, _, payload = stored.partition(":")
        if key_id not in self.keys:
            raise MissingKeyError(key_id)
        raw = _b64decode(payload)
        return AESGCM(self.keys[key_id]).decrypt(raw[:12], raw[12:], key_id.encode()).decode()

    def blind_index(self, value: str) -> str:
        """Deterministic keyed digest so equality search works without storing the plaintext."""
        return hmac.new(self.blind_key, value.strip().upper().encode(), hashlib.sha256).hexdigest()


def keyring() -> KeyRing:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ring = app.extensions.get("pm_keyring")
    if ring is None:
        ring = KeyRing(app.config["FIELD_ENCRYPTION_KEYS"], app.config["BLIND_INDEX_KEY"])
        app.extensions["pm_keyring"] = ring
    return ring


class EncryptedString(sa.TypeDecorator):
    """A string stored as ``keyid:base64(nonce|ciphertext)``; plaintext only in memory."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None or value == "":
            return None
        if not has_app_context():
            raise RuntimeError("encryption needs an application context for its key")
        return keyring().encrypt(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        return keyring().decrypt(value)


def mask(value: str | None, keep_start: int = 3, keep_end: int = 4) -> str:
    """``110105********1234``: enough to tell records apart, not enough to misuse."""
    if not value:
        return ""
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


ID_IN_TEXT = re.compile(r"\d{17}[\dXx]")


def redact_id_numbers(text: str | None) -> str | None:
    """Mask every national-ID-shaped run in free text, e.g. a logged URL with ``?search=…``."""
    return ID_IN_TEXT.sub(lambda m: mask(m.group()), text) if text else text
