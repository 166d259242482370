"""Reusable constrained types for request bodies and parameters."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, StringConstraints

from keyplane.kit.text import NAME_RULE, describe_character, first_invisible


def _printable(value: str) -> str:
    refused = first_invisible(value)
    if refused is not None:
        raise ValueError(f"{NAME_RULE}; found {describe_character(refused)}")
    return value


def _printable_multiline(value: str) -> str:
    value = value.replace("\r\n", "\n")
    refused = first_invisible(value, multiline=True)
    if refused is not None:
        raise ValueError(f"{NAME_RULE} other than line breaks; found {describe_character(refused)}")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_printable),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=1024),
    AfterValidator(_printable_multiline),
]
PersonName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=64),
    AfterValidator(_printable),
]
TenantName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$"
    ),
]


_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    # Syntax only, and internal domains (corp.local, example.internal) are accepted:
    # self-hosted tenants use them.
    if not _EMAIL.match(value) or ".." in value or value.split("@")[0].startswith("."):
        raise ValueError("is not a valid email address")
    return value.lower()


EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
    AfterValidator(_email),
]


def _in_utc(value: datetime) -> datetime:
    # 9999-12-31T23:59:59-23:59 is a valid RFC 3339 time with no UTC equivalent in Python;
    # refused here, it cannot reach a query and fail there (it used to, as a 500).
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


UtcDateTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
