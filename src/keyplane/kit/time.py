"""Time: always timezone-aware UTC inside Keyplane, RFC 3339 at the edges."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-01-02T03:04:05.678Z``: millisecond precision, as Palette renders times."""
    return as_utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")
