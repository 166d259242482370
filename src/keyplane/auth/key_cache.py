"""Verified key snapshots in process memory, so that checking a key costs no database read.

Rules, each of them a reason an entry is not used:
- Expiry is in the snapshot and compared with the clock on every request: an entry never
  says "valid", it says what the database said.
- Any change that can turn a key invalid invalidates it here and, through the channel, in
  every other worker and instance (``keyplane.kit.invalidation``).
- An entry older than ``max_age`` is read again, even with a healthy channel. One used
  after ``REFRESH_EARLIEST`` to ``REFRESH_AHEAD`` of that age (a point drawn per entry, so
  that keys first read together, as after a restart, do not all come due together) is still
  served, and refreshed in the background (one refresh per key, a few at a time), so that a
  busy key never makes a request wait for the database at its max age.
- While the channel is down the cache is off: every request reads through.
- A read that overlaps an invalidation does not fill the cache (``generation``), so a
  snapshot taken before a revoke committed cannot outlive the revoke.
Unknown keys get a small, short-lived negative entry, so that a flood of random well-formed
keys does not reach the database each time.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keyplane.kit.credits import Refill
from keyplane.kit.invalidation import Invalidation, InvalidationKind
from keyplane.kit.shared_limits import RateLimit

if TYPE_CHECKING:
    from keyplane.auth.principal import Principal

# The shares of the max age between which a used entry is read again in the background.
REFRESH_EARLIEST = 0.5
REFRESH_AHEAD = 0.8
MAX_REFRESHES = 8


def _unleased() -> bool:
    """A cache without a lease (tests of the cache alone): only ``enabled`` decides."""
    return True


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    key_uid: str
    key_hash: str
    tenant_uid: str
    tenant_name: str
    user_uid: str
    email: str
    first_name: str
    last_name: str
    role: str
    user_active: bool
    key_active: bool
    expires_at: datetime
    # When a rotated key stops working (api_keys.rotation); compared with the clock on
    # every request, like the expiry. None: not rotated.
    rotation_grace_ends_at: datetime | None = None
    # The tenant's policy ranges (policies.service): every key of the tenant must be used
    # from within them, on top of its own ``allowed_cidrs``. None: no tenant-wide bound.
    tenant_allowed_cidrs: tuple[str, ...] | None = None
    # What makes the key narrower than its owner (api_keys.restrictions); the defaults
    # are a key without restrictions.
    scopes: frozenset[str] | None = None
    # Effective: its own and those of its permission roles.
    permissions: frozenset[str] = frozenset()
    allowed_cidrs: tuple[str, ...] | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    credits_remaining: int | None = None
    credits_refill: Refill | None = None
    credits_refilled_at: datetime | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = field(default=None, compare=False)
    # Answers rendered from this snapshot (e.g. verify's JSON), kept with it: they can only
    # change when the snapshot itself is replaced, and a snapshot is never changed.
    renderings: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    # The principals made from it, by client address, for the same reason (a few at most).
    principals: dict[str, Principal] = field(default_factory=dict, compare=False, repr=False)


class KeyCache:
    def __init__(
        self,
        *,
        max_entries: int,
        max_age_seconds: float,
        max_negative_entries: int,
        negative_ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age = max_age_seconds
        self.max_negative_entries = max_negative_entries
        self.negative_ttl = negative_ttl_seconds
        self._clock = clock
        # Each entry: its snapshot, when it was stored, and the age at which it is refreshed.
        self._entries: OrderedDict[str, tuple[KeySnapshot, float, float]] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._by_user: dict[str, set[str]] = {}
        self._refreshing: set[str] = set()
        self.generation = 0
        # Off until the invalidation channel reports itself connected.
        self.enabled = False
        # And used only while this worker's lease on it is current (``kit.invalidation``):
        # checked on every lookup, so a worker paused or cut off reads through.
        self.lease_valid: Callable[[], bool] = _unleased
        # Whether that channel is connected, whatever KEYPLANE_KEY_CACHE_ENABLED says
        # (readiness reports it).
        self.channel_healthy = False
        # Read by scrapes of /metrics (keyplane.kit.metrics); never reset. Every get() is a
        # hit or a miss; a miss that is_known_unknown() answers is also a negative hit.
        self.hits = 0
        self.misses = 0
        self.negative_hits = 0
        self.invalidations_applied = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def negative_size(self) -> int:
        return len(self._negative)

    def get(self, key_hash: str) -> KeySnapshot | None:
        return self.lookup(key_hash)[0]

    def lookup(self, key_hash: str) -> tuple[KeySnapshot | None, bool]:
        """The live entry, if any, and whether it is old enough to be read again ahead of
        its max age: one clock reading and one lookup for both."""
        if not self.enabled or not self.lease_valid():
            self.misses += 1
            return None, False
        found = self._entries.get(key_hash)
        if found is None:
            self.misses += 1
            return None, False
        snapshot, stored_at, refresh_age = found
        age = self._clock() - stored_at
        if age > self.max_age:
            self._drop(key_hash)
            self.misses += 1
            return None, False
        # Least recently used goes first when the cache is full: busy keys stay.
        self._entries.move_to_end(key_hash)
        self.hits += 1
        return snapshot, age > refresh_age

    def refresh_due(self, key_hash: str) -> bool:
        """Whether a live entry is old enough to be read again ahead of its max age."""
        found = self._entries.get(key_hash)
        return found is not None and self._clock() - found[1] > found[2]

    def claim_refresh(self, key_hash: str) -> bool:
        """True for the one caller that may refresh the entry now; ``release_refresh``
        after. False while it is being refreshed, or while too many others are."""
        if key_hash in self._refreshing or len(self._refreshing) >= MAX_REFRESHES:
            return False
        self._refreshing.add(key_hash)
        return True

    def release_refresh(self, key_hash: str) -> None:
        self._refreshing.discard(key_hash)

    def discard(self, key_hash: str) -> None:
        """Forgets a key the database no longer has (always safe: it only drops)."""
        self._drop(key_hash)

    def is_known_unknown(self, key_hash: str) -> bool:
        if not self.enabled or not self.lease_valid():
            return False
        stored_at = self._negative.get(key_hash)
        if stored_at is None:
            return False
        if self._clock() - stored_at > self.negative_ttl:
            del self._negative[key_hash]
            return False
        self.negative_hits += 1
        return True

    def put(self, snapshot: KeySnapshot, generation: int) -> None:
        if not self.enabled or generation != self.generation:
            return
        self._drop(snapshot.key_hash)
        # Not a secret: only when the entry is read again.
        share = random.uniform(REFRESH_EARLIEST, REFRESH_AHEAD)  # noqa: S311
        self._entries[snapshot.key_hash] = (snapshot, self._clock(), self.max_age * share)
        self._by_key[snapshot.key_uid] = snapshot.key_hash
        self._by_user.setdefault(snapshot.user_uid, set()).add(snapshot.key_hash)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def put_unknown(self, key_hash: str, generation: int) -> None:
        if not self.enabled or generation != self.generation:
            return
        self._negative[key_hash] = self._clock()
        self._negative.move_to_end(key_hash)
        while len(self._negative) > self.max_negative_entries:
            self._negative.popitem(last=False)

    def apply(self, invalidations: Iterable[Invalidation]) -> None:
        self.generation += 1
        for invalidation in invalidations:
            self.invalidations_applied += 1
            if invalidation.kind is InvalidationKind.KEY:
                key_hash = self._by_key.get(invalidation.uid)
                if key_hash is not None:
                    self._drop(key_hash)
            elif invalidation.kind is InvalidationKind.USER:
                for key_hash in list(self._by_user.get(invalidation.uid, ())):
                    self._drop(key_hash)
            else:
                self.clear()

    def tenant_of(self, invalidation: Invalidation) -> str | None:
        """The tenant of the key or user an invalidation names, if this cache holds one of
        its snapshots (``None``: not known here)."""
        if invalidation.kind is InvalidationKind.KEY:
            key_hash = self._by_key.get(invalidation.uid)
            hashes: Iterable[str] = () if key_hash is None else (key_hash,)
        elif invalidation.kind is InvalidationKind.USER:
            hashes = self._by_user.get(invalidation.uid, ())
        else:
            return None
        for key_hash in hashes:
            found = self._entries.get(key_hash)
            if found is not None:
                return found[0].tenant_uid
        return None

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._negative.clear()
        self._by_key.clear()
        self._by_user.clear()

    def set_enabled(self, enabled: bool) -> None:
        if enabled != self.enabled:
            # Whatever was cached may have missed invalidations while the channel was down.
            self.clear()
        self.enabled = enabled

    def _drop(self, key_hash: str) -> None:
        found = self._entries.pop(key_hash, None)
        if found is None:
            return
        snapshot = found[0]
        self._by_key.pop(snapshot.key_uid, None)
        hashes = self._by_user.get(snapshot.user_uid)
        if hashes is not None:
            hashes.discard(key_hash)
            if not hashes:
                del self._by_user[snapshot.user_uid]
