"""API key and token values: generate, checksum, parse, hash, compare. Pure, no I/O.

A key looks like ``kp_`` + 32 base62 characters of randomness + 6 base62 characters of
CRC32 over everything before them, e.g. ``kp_4Jc9...Qz0aB3xY``:

- 32 base62 characters from ``secrets`` carry 190 bits of entropy (at least 160 required).
- The fixed prefix lets secret scanners recognise a leaked key; the checksum lets us
  reject a mistyped or truncated key without hashing it or touching the database, and
  lets scanners discard false positives offline.
- Only ``HMAC-SHA256(server secret, key)`` is stored. A stolen database therefore cannot
  be used to check guesses offline without the server secret, and since keys are random
  (not passwords) a fast keyed hash is the right tool: no slow KDF is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

API_KEY_PREFIX = "kp_"
SESSION_TOKEN_PREFIX = "kps_"  # noqa: S105 (a prefix, not a secret)
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
API_KEY_LENGTH = len(API_KEY_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
SESSION_TOKEN_LENGTH = len(SESSION_TOKEN_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH


def encode_base62(number: int, width: int) -> str:
    """Fixed-width base62, most significant digit first."""
    if number < 0 or number >= 62**width:
        raise ValueError("number does not fit in the requested width")
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    return "".join(reversed(digits))


# Every pair of base62 digits, for writing a checksum two digits at a time (it is checked
# on every request that carries a key).
_PAIRS = [a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET]
_PAIR = 62 * 62


def checksum(body: str) -> str:
    """``encode_base62(crc32(body), 6)``."""
    high, low = divmod(zlib.crc32(body.encode("ascii")), _PAIR)
    high, middle = divmod(high, _PAIR)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def _generate(prefix: str) -> str:
    body = prefix + "".join(secrets.choice(BASE62_ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def generate_api_key() -> str:
    return _generate(API_KEY_PREFIX)


def generate_session_token() -> str:
    return _generate(SESSION_TOKEN_PREFIX)


def _shape(prefix: str) -> re.Pattern[str]:
    # ASCII ranges in a str pattern: no other digit or letter matches.
    return re.compile(f"{re.escape(prefix)}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}")


_API_KEY_SHAPE = _shape(API_KEY_PREFIX)
_SESSION_TOKEN_SHAPE = _shape(SESSION_TOKEN_PREFIX)


def _is_well_formed(value: str, shape: re.Pattern[str]) -> bool:
    # Prefix, length and alphabet in one match, then the checksum.
    if shape.fullmatch(value) is None:
        return False
    body, check = value[:-CHECKSUM_LENGTH], value[-CHECKSUM_LENGTH:]
    return hmac.compare_digest(checksum(body), check)


def is_well_formed_api_key(value: str) -> bool:
    """Prefix, length, alphabet and checksum; says nothing about whether the key exists."""
    return _is_well_formed(value, _API_KEY_SHAPE)


def is_well_formed_session_token(value: str) -> bool:
    return _is_well_formed(value, _SESSION_TOKEN_SHAPE)


_SHA256_BLOCK = 64


@dataclass(frozen=True, slots=True)
class SecretHasher:
    """Keyed hashing of key and token values with the server secret: HMAC-SHA256."""

    secret: bytes
    # HMAC's two keyed SHA-256 states (RFC 2104), computed once: each hash copies them
    # rather than keying HMAC again, which costs more than hashing the value itself.
    _inner: Any = field(init=False, repr=False, compare=False)
    _outer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.secret
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in key)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in key)))

    def hash(self, value: str) -> str:
        """``HMAC-SHA256(secret, value)`` in hex (the same as ``hmac.digest``)."""
        inner = self._inner.copy()
        inner.update(value.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())

    def hash_label(self, label: str, value: str) -> str:
        """A keyed hash for another purpose (such as CSRF tokens), separated by its label."""
        message = f"{label}\x00{value}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def matches(self, value: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(value), stored_hash)


# What is kept of a key to tell it apart from its siblings: its last 4 characters, shown as
# ``kp_…abcd`` (GitHub and Stripe show as much). They are checksum characters, not random
# ones: a function of the 32 random characters, so they add nothing secret. At most they let
# an online guesser skip candidates whose checksum ends otherwise, 62**4 (about 24 bits) of
# 62**32 (190 bits), which leaves some 166 bits, still above the 160 required. Nothing more
# of a key is ever stored or shown.
HINT_LENGTH = 4


def key_hint(value: str) -> str:
    """The part of a key kept to recognise it: its last ``HINT_LENGTH`` characters."""
    return value[-HINT_LENGTH:]


def hint_display(hint: str | None) -> str:
    """How a key is named in lists: ``kp_…abcd``, or a dash for keys created before
    Keyplane kept hints."""
    return "—" if not hint else f"{API_KEY_PREFIX}…{hint}"


def redact(value: str) -> str:
    """What may be shown of a key or token: its prefix only."""
    for prefix in (SESSION_TOKEN_PREFIX, API_KEY_PREFIX):
        if value.startswith(prefix):
            return prefix + "…"
    return "…"
