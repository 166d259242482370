"""Token buckets per client address, for failed authentication attempts.

Only failures take tokens, so a client with a valid credential is never slowed down; a
client that keeps failing is answered 429 until its bucket refills. Refusals are worth
recording, but not one record per request (that would hand an attacker a way to fill the
audit log), so ``should_report`` says yes once per client per report interval.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    reported: float = -math.inf


class FailureLimiter:
    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        report_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self.max_clients = max_clients
        self.report_interval = report_interval
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, client: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[client] = bucket
            # Bounded memory under a flood of addresses: forget the least recently seen.
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(client)
        return bucket

    def exhausted(self, client: str) -> bool:
        return self._refilled(client).tokens < 1

    def record_failure(self, client: str) -> bool:
        """Takes a token; False when there was none left (the client is over its limit)."""
        bucket = self._refilled(client)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def retry_after(self, client: str) -> int:
        bucket = self._refilled(client)
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def should_report(self, client: str) -> bool:
        """True for the first refusal of a client in each report interval, then False until
        the interval has passed (per process: each instance reports on its own)."""
        bucket = self._refilled(client)
        if bucket.updated - bucket.reported < self.report_interval:
            return False
        bucket.reported = bucket.updated
        return True


class Periodic:
    """Yes at most once per period: for housekeeping that need not run on every call."""

    def __init__(self, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._next = -math.inf

    def due(self) -> bool:
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self.period
        return True
