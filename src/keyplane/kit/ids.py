"""Resource uids: 24 lowercase hex characters, the shape of Palette's uids."""

from __future__ import annotations

import re
import secrets

UID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


def new_uid() -> str:
    return secrets.token_hex(12)


def is_uid(value: str) -> bool:
    return bool(UID_PATTERN.match(value))
