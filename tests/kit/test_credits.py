"""Usage credits: when refills fall due."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyplane.kit.credits import (
    Refill,
    RefillInterval,
    exhausted,
    latest_refill_at,
    next_refill_at,
    refill_due,
)

DAILY = Refill(RefillInterval.DAILY, 100)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_daily_refills_fall_at_midnight_utc() -> None:
    now = at("2026-12-01T15:30:00")
    assert latest_refill_at(DAILY, now) == at("2026-12-01T00:00:00")
    assert next_refill_at(DAILY, now) == at("2026-12-02T00:00:00")


@pytest.mark.parametrize(
    ("day", "now", "latest", "following"),
    [
        (15, "2026-12-20T00:00:00", "2026-12-15T00:00:00", "2027-01-15T00:00:00"),
        (15, "2026-12-10T00:00:00", "2026-11-15T00:00:00", "2026-12-15T00:00:00"),
        (31, "2027-02-10T00:00:00", "2027-01-31T00:00:00", "2027-02-28T00:00:00"),
        (31, "2027-03-01T00:00:00", "2027-02-28T00:00:00", "2027-03-31T00:00:00"),
        (1, "2027-01-01T00:00:00", "2027-01-01T00:00:00", "2027-02-01T00:00:00"),
    ],
)
def test_monthly_refills_fall_on_the_day_or_the_month_s_last(
    day: int, now: str, latest: str, following: str
) -> None:
    refill = Refill(RefillInterval.MONTHLY, 10, day)
    assert latest_refill_at(refill, at(now)) == at(latest)
    assert next_refill_at(refill, at(now)) == at(following)


def test_a_key_is_exhausted_only_with_nothing_left_and_no_refill_owed() -> None:
    now = at("2026-12-01T15:00:00")
    assert not exhausted(None, None, None, now)
    assert not exhausted(5, None, None, now)
    assert exhausted(0, None, None, now)
    assert exhausted(0, DAILY, at("2026-12-01T01:00:00"), now)
    assert not exhausted(0, DAILY, at("2026-11-30T23:00:00"), now)
    assert refill_due(DAILY, None, now)


def test_refills_round_trip_through_json_and_are_bounded() -> None:
    monthly = Refill(RefillInterval.MONTHLY, 10, 31)
    assert Refill.from_json(monthly.as_json()) == monthly
    assert Refill.from_json(DAILY.as_json()) == DAILY
    assert Refill.from_json(None) is None
    with pytest.raises(ValueError, match="amount"):
        Refill(RefillInterval.DAILY, 0)
    with pytest.raises(ValueError, match="day"):
        Refill(RefillInterval.MONTHLY, 1, 32)
