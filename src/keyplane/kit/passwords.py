"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._argon2 = _Argon2(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        # Verified against when the account does not exist, so that a login for an unknown
        # email costs as much as one for a known email and timing reveals nothing.
        self._dummy_hash = self._argon2.hash("keyplane-dummy-password")

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash or self._dummy_hash, password) and bool(
                stored_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._argon2.check_needs_rehash(stored_hash)
