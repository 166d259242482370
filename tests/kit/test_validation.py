"""Constrained types at their edges."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from keyplane.kit.validation import UtcDateTime
from tests.helpers import World

# Valid RFC 3339, but with no UTC equivalent that Python can represent.
OUT_OF_RANGE = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"]


def test_times_are_converted_to_utc() -> None:
    adapter = TypeAdapter(UtcDateTime)
    assert adapter.validate_python("2030-01-01T02:00:00+02:00") == datetime(2030, 1, 1, tzinfo=UTC)
    for value in OUT_OF_RANGE:
        with pytest.raises(ValidationError, match="out of range"):
            adapter.validate_python(value)


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("name", ["startTime", "endTime"])
async def test_audit_time_filters_out_of_range_are_bad_requests(
    client: httpx.AsyncClient, world: World, name: str, value: str
) -> None:
    # These used to reach the query and fail there, as a 500.
    response = await client.get("/v1/audits", params={name: value}, headers=world.admin.headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "InvalidRequest"
