"""The rate limits of ``keyplane.kit.shared_limits`` in this process's memory.

For a single instance, or tests: the same algorithm and arithmetic
(``keyplane.kit.shared_limits_core``) and the same answers as the Redis backend, but counts
that no other instance sees.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from keyplane.kit.shared_limits_core import (
    _MICROSECONDS,
    REFUSAL_HOURS,
    LimitDecision,
    RateLimit,
    _bucket_retry_after,
    _decide,
    _estimate,
    _refusal_hours,
    _validate,
    _validate_bucket,
)

T = TypeVar("T")


@dataclass(slots=True)
class _Window:
    index: int
    current: int
    previous: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LocalLimiter:
    """The same algorithm in this process's memory: for a single instance, or tests.

    Memory is bounded: past ``max_subjects`` subjects the least recently seen is
    forgotten (its counts start again from zero). ``check`` never awaits, so it is atomic
    under asyncio without a lock.
    """

    def __init__(
        self, *, max_subjects: int = 100_000, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.unavailable_total = 0  # nothing to be unavailable: for the same metric
        self.max_subjects = max_subjects
        self._clock_ns = clock_ns
        self._windows: OrderedDict[str, dict[tuple[str, int], _Window]] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._refusals: OrderedDict[str, dict[int, int]] = OrderedDict()

    @property
    def shared(self) -> bool:
        return False

    def _now(self) -> tuple[int, int]:
        sec, nsec = divmod(self._clock_ns(), 1_000_000_000)
        return sec, nsec // 1000

    async def check(
        self, subject: str, limits: Sequence[RateLimit], cost: int = 1
    ) -> LimitDecision:
        _validate(limits, cost)
        sec, usec = self._now()
        windows = _touch(self._windows, subject, dict, self.max_subjects)
        counts: list[tuple[int, int]] = []
        over: list[bool] = []
        for limit in limits:
            index = sec // limit.window_seconds
            window = windows.get((limit.name, limit.window_seconds))
            current = previous = 0
            if window is not None and window.index == index:
                current, previous = window.current, window.previous
            elif window is not None and window.index == index - 1:
                previous = window.current
            counts.append((current, previous))
            over.append(_estimate(limit, current, previous, sec, usec) + cost > limit.limit)
        if not any(over):
            for limit, (current, previous) in zip(limits, counts, strict=True):
                index = sec // limit.window_seconds
                windows[(limit.name, limit.window_seconds)] = _Window(
                    index, current + cost, previous
                )
        return _decide(limits, counts, over, sec, usec, cost)

    def _bucket(self, subject: str, rate_per_second: float, burst: int) -> _Bucket:
        _validate_bucket(rate_per_second, burst)
        sec, usec = self._now()
        now = sec + usec / _MICROSECONDS
        bucket = self._buckets.get(subject)
        if bucket is None:
            bucket = _touch(
                self._buckets, subject, lambda: _Bucket(float(burst), now), self.max_subjects
            )
        else:
            self._buckets.move_to_end(subject)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate_per_second)
            bucket.updated = now
        return bucket

    async def record_failure(self, subject: str, rate_per_second: float, burst: int) -> bool:
        bucket = self._bucket(subject, rate_per_second, burst)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    async def exhausted(self, subject: str, rate_per_second: float, burst: int) -> bool:
        return self._bucket(subject, rate_per_second, burst).tokens < 1

    async def retry_after(self, subject: str, rate_per_second: float, burst: int) -> int:
        tokens = self._bucket(subject, rate_per_second, burst).tokens
        return _bucket_retry_after(tokens, rate_per_second)

    async def note_refusal(self, subject: str) -> None:
        hours = _touch(self._refusals, subject, dict, self.max_subjects)
        hour = _refusal_hours(self._clock_ns() / 1e9)[0]
        hours[hour] = hours.get(hour, 0) + 1
        for old in [h for h in hours if h <= hour - REFUSAL_HOURS]:
            del hours[old]

    async def recent_refusals(self, subject: str) -> int:
        hours = self._refusals.get(subject, {})
        return sum(hours.get(hour, 0) for hour in _refusal_hours(self._clock_ns() / 1e9))

    async def aclose(self) -> None:
        self._windows.clear()
        self._buckets.clear()
        self._refusals.clear()


def _touch(store: OrderedDict[str, T], subject: str, new: Callable[[], T], cap: int) -> T:
    """The subject's entry, created if need be, marked most recently used; the least
    recently used entries go beyond ``cap`` (a flood of addresses cannot grow memory)."""
    entry = store.get(subject)
    if entry is None:
        entry = store[subject] = new()
        while len(store) > cap:
            store.popitem(last=False)
    else:
        store.move_to_end(subject)
    return entry
