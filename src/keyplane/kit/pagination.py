"""Palette's list paging: ``limit`` with ``offset`` or an opaque ``continue`` token."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from keyplane.kit.errors import ValidationFailed
from keyplane.kit.schemas import PaletteModel


class ListMeta(PaletteModel):
    continue_: str = Field(alias="continue")
    count: int
    limit: int
    offset: int


class ListResponse(PaletteModel):
    """A list answer: ``listmeta`` appears only when paging was asked for, so that a plain
    request gets exactly Palette's ``{"items": [...]}``."""

    listmeta: ListMeta | None = None

    @model_serializer(mode="wrap")
    def _omit_absent_listmeta(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("listmeta") is None:
            data.pop("listmeta", None)
        return data


# Past any list Keyplane will hold, and well inside the 64-bit integers both databases take
# for OFFSET: a larger one used to reach the database and fail there, as a 500.
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PageRequest:
    """``paged`` is false when no paging parameter was given: Palette's plain full list."""

    paged: bool
    limit: int | None
    offset: int


def _encode_continue(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(
            "The continue token is not one this server issued; start again without it.",
            code="InvalidContinueToken",
        ) from exc
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ValidationFailed(
            "The continue token is not one this server issued; start again without it.",
            code="InvalidContinueToken",
        )
    return offset


def page_request(
    limit: Annotated[int | None, Query(ge=1, description="Page size.")] = None,
    offset: Annotated[
        int | None, Query(ge=0, le=MAX_OFFSET, description="Index of the first item.")
    ] = None,
    continue_: Annotated[
        str | None,
        Query(alias="continue", max_length=256, description="Token from listmeta.continue."),
    ] = None,
) -> PageRequest:
    if offset is not None and continue_ is not None:
        raise ValidationFailed("Give either offset or continue, not both.", code="InvalidRequest")
    start = _decode_continue(continue_) if continue_ is not None else (offset or 0)
    paged = limit is not None or offset is not None or continue_ is not None
    return PageRequest(paged=paged, limit=limit, offset=start)


def resolve_limit(page: PageRequest, default: int, maximum: int) -> int | None:
    """The page size to query with: ``None`` for everything (no paging asked)."""
    if not page.paged:
        return None
    if page.limit is None:
        return default
    if page.limit > maximum:
        raise ValidationFailed(
            f"limit may be at most {maximum}.", code="InvalidRequest", details={"max": maximum}
        )
    return page.limit


def list_meta(page: PageRequest, limit: int, returned: int, total: int) -> ListMeta:
    next_offset = page.offset + returned
    more = next_offset < total and returned > 0
    return ListMeta(
        continue_=_encode_continue(next_offset) if more else "",
        count=total,
        limit=limit,
        offset=next_offset,
    )
