"""What an invalidation is, and how it travels on the PostgreSQL channel.

The value type the rest of ``keyplane.kit.invalidation`` passes around, and the NOTIFY
payload that carries it. Why publishing, delivery, leases and confirmations together keep a
change from answering before every worker has it: ``keyplane.kit.invalidation_leases``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

CHANNEL = "keyplane_invalidation"


class InvalidationKind(StrEnum):
    KEY = "key"
    USER = "user"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Invalidation:
    kind: InvalidationKind
    uid: str = ""

    @classmethod
    def key(cls, uid: str) -> Invalidation:
        return cls(InvalidationKind.KEY, uid)

    @classmethod
    def user(cls, uid: str) -> Invalidation:
        return cls(InvalidationKind.USER, uid)

    def encode(self) -> str:
        return f"{self.kind.value}:{self.uid}"

    @classmethod
    def decode_all(cls, payload: str) -> list[Invalidation]:
        found = []
        for part in payload.split(";"):
            kind, _, uid = part.partition(":")
            try:
                found.append(cls(InvalidationKind(kind), uid))
            except ValueError:
                # Something we do not understand: drop everything rather than guess.
                found.append(cls(InvalidationKind.ALL))
        return found


# The part of a NOTIFY payload that says when the change was published (milliseconds since
# the epoch), for the delivery delay metric. An instance that predates it reads an unknown
# kind and drops its whole cache: never a missed invalidation.
_SENT_AT = "t"


def encode_notification(invalidations: Sequence[Invalidation], sent_at: float) -> str:
    parts = [invalidation.encode() for invalidation in invalidations]
    parts.append(f"{_SENT_AT}:{round(sent_at * 1000)}")
    return ";".join(parts)


def decode_notification(payload: str) -> tuple[list[Invalidation], float | None]:
    """The invalidations of a NOTIFY payload, and when they were published (None: not
    said, or not understood)."""
    sent_at: float | None = None
    parts = []
    for part in payload.split(";"):
        kind, _, value = part.partition(":")
        if kind == _SENT_AT:
            with contextlib.suppress(ValueError):
                sent_at = int(value) / 1000
        else:
            parts.append(part)
    return Invalidation.decode_all(";".join(parts)), sent_at


def delivery_delay(sent_at: float | None, now: float) -> float | None:
    """Seconds from publication to delivery on this worker's clock; clocks of different
    machines may disagree, so a negative delay counts as none."""
    return None if sent_at is None else max(0.0, now - sent_at)


Deliver = Callable[[Sequence[Invalidation]], None]
