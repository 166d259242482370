"""Durations as people type them on the command line: ``0``, ``90s``, ``15m``, ``24h``,
``7d`` (a bare number is seconds). Pure."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Seconds; ``ValueError`` with a sentence for anything else."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a duration: write 0, or e.g. 90s, 15m, 24h or 7d")
    number, unit = found.groups()
    return int(number) * _UNITS[(unit or "s").lower()]
