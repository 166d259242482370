"""The value types of shared rate limits, and the arithmetic both backends share.

The algorithm is the sliding-window approximation (Cloudflare's, Unkey's). Windows are
aligned to multiples of ``window_seconds`` from the Unix epoch; a limit keeps the count of
the current window and of the one before it, and a check estimates the requests of the
last ``window_seconds`` as::

    previous * (1 - elapsed fraction of the current window) + current

It was chosen over plain fixed windows because a fixed window lets a client spend its
whole allowance twice in a row across a boundary (10/s becomes 20 within a few
milliseconds); the estimate smooths that out at the cost of two integers per limit, while
a true sliding log would cost one entry per request.

One check covers several limits (per second, per day, ...) and is all or nothing: every
limit is read first and only when none would be exceeded are all of them incremented.
Each backend reads the counts its own way (``keyplane.kit.shared_limits_redis``,
``keyplane.kit.shared_limits_local``) and answers with :func:`_decide` from here, so both
answer alike. The interface and the factory: ``keyplane.kit.shared_limits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_MICROSECONDS = 1_000_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` units of cost in any ``window_seconds``, e.g. ("per-second", 10, 1)."""

    name: str
    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate limit needs a name")
        if self.limit < 1 or self.window_seconds < 1:
            raise ValueError(f"rate limit {self.name!r}: limit and window must be at least 1")


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The answer to one check.

    ``limit`` is the limit that refused, or when allowed the tightest one (the one
    ``remaining`` and ``reset_at`` describe). ``remaining`` is the smallest
    allowance left across the limits, after this check's cost when allowed. ``reset_at``
    (Unix seconds) is, when refused, the moment this request would be admitted if nothing
    else were counted meanwhile (the limit that makes it wait longest decides), and when
    allowed, the end of the current window of the tightest limit. ``retry_after_seconds``
    is that wait rounded up, at least 1, when refused; 0 when allowed.
    """

    allowed: bool
    limit: RateLimit | None
    remaining: int
    reset_at: float
    retry_after_seconds: int


REFUSAL_HOURS = 24


def _refusal_hours(now: float) -> list[int]:
    hour = int(now // 3600)
    return [hour - back for back in range(REFUSAL_HOURS)]


# --- The arithmetic, shared by both backends (the Redis Lua script mirrors _estimate) -----


def _validate(limits: Sequence[RateLimit], cost: int) -> None:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an integer of at least 1, not {cost!r}")
    if not limits:
        raise ValueError("a check needs at least one limit")
    if len({(limit.name, limit.window_seconds) for limit in limits}) != len(limits):
        # Two entries would be one counter, read twice and incremented twice.
        raise ValueError("the limits of one check must differ in name or window")


def _validate_bucket(rate_per_second: float, burst: int) -> None:
    if not rate_per_second > 0 or burst < 1:
        raise ValueError("a failure bucket needs a positive rate and a burst of at least 1")


def _estimate(limit: RateLimit, current: int, previous: int, sec: int, usec: int) -> float:
    """Requests counted in the last window_seconds; the same operations, in the same order,
    as the Lua script, so both backends agree to the last bit."""
    window = limit.window_seconds
    index = sec // window
    elapsed = ((sec - index * window) + usec / _MICROSECONDS) / window
    return previous * (1 - elapsed) + current


def _admitted_at(limit: RateLimit, current: int, previous: int, sec: int, cost: int) -> float:
    """When a refused request would fit, if nothing else were counted meanwhile."""
    window = limit.window_seconds
    start = (sec // window) * window
    room = limit.limit - cost - current
    if room >= 0 and previous > 0:
        # Within this window, once the previous window's weight has decayed enough.
        return start + (1 - room / previous) * window
    room = limit.limit - cost
    if room < 0:
        # More than the limit in one go never fits; say when the counts are gone.
        return start + 2 * window
    if current <= room:
        return start + window
    # Next window: the current count becomes the previous one and decays in turn.
    return start + window + (1 - room / current) * window


def _decide(
    limits: Sequence[RateLimit],
    counts: Sequence[tuple[int, int]],
    over: Sequence[bool],
    sec: int,
    usec: int,
    cost: int,
) -> LimitDecision:
    now = sec + usec / _MICROSECONDS
    allowed = not any(over)
    added = cost if allowed else 0
    remaining = [
        max(0, math.floor(limit.limit - _estimate(limit, cur, prev, sec, usec) - added))
        for limit, (cur, prev) in zip(limits, counts, strict=True)
    ]
    if allowed:
        tightest = min(range(len(limits)), key=lambda i: remaining[i])
        window = limits[tightest].window_seconds
        return LimitDecision(
            allowed=True,
            limit=limits[tightest],
            remaining=remaining[tightest],
            reset_at=float((sec // window + 1) * window),
            retry_after_seconds=0,
        )
    waits = {
        i: _admitted_at(limits[i], counts[i][0], counts[i][1], sec, cost)
        for i in range(len(limits))
        if over[i]
    }
    refusing = max(waits, key=lambda i: waits[i])
    reset_at = max(now, waits[refusing])
    return LimitDecision(
        allowed=False,
        limit=limits[refusing],
        remaining=min(remaining),
        reset_at=reset_at,
        retry_after_seconds=max(1, math.ceil(reset_at - now)),
    )


def _bucket_retry_after(tokens: float, rate_per_second: float) -> int:
    return max(1, math.ceil((1 - tokens) / rate_per_second))
