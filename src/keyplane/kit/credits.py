"""Usage credits: when a key's remaining uses are refilled. Pure, no I/O.

A key may carry a number of remaining uses; each successful verify spends its ``cost``.
A refill, when set, puts the remaining uses back to ``amount`` (not adds to them, as
Unkey does) once per period:

- ``daily``: at 00:00 UTC every day;
- ``monthly``: at 00:00 UTC on ``day`` of every month (1-31; in a shorter month, on its
  last day).

Refills are applied lazily, by the statement that spends (``api_keys.repository``): a key
whose last refill is older than the latest refill time is refilled first, in the same
atomic statement, so that two instances never both refill, and nothing has to run at
midnight.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

MAX_CREDITS = 1_000_000_000
MAX_COST = 1_000_000


class RefillInterval(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class Refill:
    interval: RefillInterval
    amount: int
    day: int = 1  # monthly only

    def __post_init__(self) -> None:
        if not 1 <= self.amount <= MAX_CREDITS:
            raise ValueError(f"the refill amount must be 1 to {MAX_CREDITS}")
        if not 1 <= self.day <= 31:
            raise ValueError("the refill day must be 1 to 31")

    def as_json(self) -> dict[str, object]:
        if self.interval is RefillInterval.DAILY:
            return {"interval": self.interval.value, "amount": self.amount}
        return {"interval": self.interval.value, "amount": self.amount, "day": self.day}

    @classmethod
    def from_json(cls, value: dict[str, object] | None) -> Refill | None:
        if not value:
            return None
        day = value.get("day", 1)
        amount = value.get("amount")
        if not isinstance(amount, int) or not isinstance(day, int):
            raise ValueError(f"not a refill: {value!r}")
        return cls(RefillInterval(str(value["interval"])), amount, day)


def _monthly(year: int, month: int, day: int) -> datetime:
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day, last), tzinfo=UTC)


def latest_refill_at(refill: Refill, now: datetime) -> datetime:
    """The most recent refill time at or before ``now``."""
    now = now.astimezone(UTC)
    if refill.interval is RefillInterval.DAILY:
        return datetime(now.year, now.month, now.day, tzinfo=UTC)
    this_month = _monthly(now.year, now.month, refill.day)
    if this_month <= now:
        return this_month
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return _monthly(year, month, refill.day)


def next_refill_at(refill: Refill, now: datetime) -> datetime:
    """The first refill time after ``now``."""
    now = now.astimezone(UTC)
    if refill.interval is RefillInterval.DAILY:
        return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    this_month = _monthly(now.year, now.month, refill.day)
    if this_month > now:
        return this_month
    year, month = (now.year, now.month + 1) if now.month < 12 else (now.year + 1, 1)
    return _monthly(year, month, refill.day)


def refill_due(refill: Refill | None, refilled_at: datetime | None, now: datetime) -> bool:
    """Whether a refill is owed: the latest refill time has passed since the last one."""
    if refill is None:
        return False
    return refilled_at is None or refilled_at < latest_refill_at(refill, now)


def exhausted(
    remaining: int | None, refill: Refill | None, refilled_at: datetime | None, now: datetime
) -> bool:
    """Whether a key has no use left now: none remaining, and no refill owed."""
    if remaining is None or remaining > 0:
        return False
    return not refill_due(refill, refilled_at, now)
