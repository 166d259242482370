"""Rate limits that hold across every Keyplane instance, kept in Redis, with an in-process
fallback for a single instance.

This module is the interface (:class:`SharedLimiter`) and the factory; the rest is in:

- ``keyplane.kit.shared_limits_core``: the value types and the sliding-window arithmetic
  both backends share, with the algorithm and why it was chosen;
- ``keyplane.kit.shared_limits_redis``: :class:`RedisLimiter`, its Lua scripts, and how it
  fails open when Redis is unreachable or slow;
- ``keyplane.kit.shared_limits_local``: :class:`LocalLimiter`, the same algorithm in this
  process's memory.

The same limiters keep token buckets of failed authentications per subject, with the
semantics of :class:`keyplane.kit.rate_limit.FailureLimiter`, so that limiter can move
onto Redis: ``record_failure`` takes a token, ``exhausted`` and ``retry_after`` look.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keyplane.kit.shared_limits_core import LimitDecision, RateLimit
from keyplane.kit.shared_limits_local import LocalLimiter
from keyplane.kit.shared_limits_redis import (
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT_SECONDS,
    RedisLimiter,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_SECONDS",
    "LimitDecision",
    "LocalLimiter",
    "RateLimit",
    "RedisLimiter",
    "SharedLimiter",
    "build_limiter",
]


class SharedLimiter(Protocol):
    """Rate limits and failure buckets per subject ("key:<uid>", "addr:<ip>")."""

    unavailable_total: int
    """Answers given without the shared store (failed open), for a metric."""

    @property
    def shared(self) -> bool:
        """True when the counts are shared by every instance."""
        ...

    async def check(
        self, subject: str, limits: Sequence[RateLimit], cost: int = 1
    ) -> LimitDecision: ...

    async def record_failure(self, subject: str, rate_per_second: float, burst: int) -> bool:
        """Takes a token; False when there was none left (the subject is over its limit)."""
        ...

    async def exhausted(self, subject: str, rate_per_second: float, burst: int) -> bool: ...

    async def retry_after(self, subject: str, rate_per_second: float, burst: int) -> int: ...

    async def note_refusal(self, subject: str) -> None:
        """Counts a refusal by a rate limit, for the console (by the hour, kept a day)."""
        ...

    async def recent_refusals(self, subject: str) -> int:
        """Refusals noted in the last 24 hours (0 when the store cannot answer)."""
        ...

    async def aclose(self) -> None: ...


def build_limiter(redis_url: str | None, *, prefix: str, timeout_seconds: float) -> SharedLimiter:
    """Redis when a URL is configured, else limits per process."""
    if redis_url:
        return RedisLimiter(redis_url, prefix=prefix, timeout_seconds=timeout_seconds)
    return LocalLimiter()
