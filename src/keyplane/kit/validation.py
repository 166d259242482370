"""Reusable constrained types for request bodies and parameters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

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


ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256),
    AfterValidator(_printable),
]

# A small JSON document a key carries for its tenant's services (``spec.meta``).
MAX_DOCUMENT_BYTES = 4096
MAX_DOCUMENT_DEPTH = 5


def _depth(value: object) -> int:
    """Objects and arrays within one another (the request's own depth is bounded already)."""
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _small_document(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(
            f"the document takes {size} bytes as JSON; at most {MAX_DOCUMENT_BYTES} are kept"
        )
    if _depth(value) > MAX_DOCUMENT_DEPTH:
        raise ValueError(f"the document nests more than {MAX_DOCUMENT_DEPTH} levels deep")
    return value


SmallJsonDocument = Annotated[dict[str, Any], AfterValidator(_small_document)]
