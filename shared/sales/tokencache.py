"""Encryption at rest for delegated connections' msal token caches and sign-in flows.

AES-256-GCM (``cryptography``) with a key from the ``TOKEN_CACHE_KEY`` app setting. The
associated data binds each cipher text to its purpose and connection, so a cache copied onto
another connection (or a flow replayed as a cache) fails to decrypt. Format: ``v1.<base64url of
12-byte nonce + cipher text + tag>``.
"""

from __future__ import annotations

import base64
import binascii
import os

from shared.errors import ConfigurationError

_PREFIX = "v1."
KEY_SETTING = "TOKEN_CACHE_KEY"


class DecryptError(Exception):
    """The cipher text was altered, belongs elsewhere, or was made with another key."""


class TokenCipher:
    def __init__(self, key_b64: str | None) -> None:
        if not key_b64:
            raise ConfigurationError(
                f"delegated sign-in needs the app setting {KEY_SETTING}: base64 of 32 random bytes "
                "(a Key Vault reference in Azure)"
            )
        try:
            key = base64.b64decode(key_b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"setting {KEY_SETTING} is not valid base64") from None
        if len(key) != 32:
            raise ConfigurationError(f"setting {KEY_SETTING} must decode to 32 bytes (AES-256)")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # lazy

        self._aead = AESGCM(key)

    def encrypt(self, plain: bytes, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain, purpose.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, text: str, purpose: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if not text.startswith(_PREFIX):
            raise DecryptError("unknown format")
        try:
            raw = base64.urlsafe_b64decode(text[len(_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], purpose.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptError("cannot decrypt") from None


def cache_purpose(connection_id: str) -> str:
    return f"token-cache:{connection_id}"


def flow_purpose(connection_id: str) -> str:
    return f"sign-in-flow:{connection_id}"
