"""Secrets Keyplane must read back (webhook signing secrets), sealed with the server secret.

A key value is only ever hashed; a webhook's signing secret cannot be, because Keyplane
signs with it. So it is stored sealed: AES-256-GCM under a key derived from the server
secret by HKDF-SHA256 with a purpose label, so that a key for one purpose never serves
another and the server secret itself never touches the cipher. A stolen database alone
reveals no secret; changing the server secret makes the sealed ones unreadable (the
endpoints' secrets must then be rotated).

Sealed text: ``v1.`` + urlsafe base64 of the 12-byte random nonce followed by the
ciphertext and its tag. The purpose is also the associated data, so a value sealed for
one purpose does not open under another even with the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1."
_NONCE_BYTES = 12


class SecretBoxError(ValueError):
    """A sealed value that does not open: altered, or sealed under another server secret."""


def derive_key(server_secret: bytes, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` only."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"keyplane secretbox {purpose}".encode(),
    )
    return hkdf.derive(server_secret)


@dataclass(frozen=True, slots=True)
class SecretBox:
    server_secret: bytes = field(repr=False)
    purpose: str
    _cipher: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cipher", AESGCM(derive_key(self.server_secret, self.purpose)))

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher.encrypt(nonce, plaintext.encode(), self.purpose.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        if not sealed.startswith(_VERSION):
            raise SecretBoxError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_VERSION) :].encode())
        except (binascii.Error, ValueError) as exc:
            raise SecretBoxError("not a sealed value") from exc
        if len(raw) <= _NONCE_BYTES:
            raise SecretBoxError("not a sealed value")
        try:
            plain = self._cipher.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self.purpose.encode()
            )
        except InvalidTag as exc:
            raise SecretBoxError(
                "the sealed value was altered or sealed under another server secret"
            ) from exc
        return plain.decode()
