"""Constrained types at their edges."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from keyplane.kit.text import first_invisible
from keyplane.kit.validation import Description, Name, PersonName, UtcDateTime
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


# The examples, and more of each class the rule names: line and paragraph
# separators, fillers and joiners that draw as nothing, odd spaces, formatting, tags.
INVISIBLE = [
    "\u2028",  # LINE SEPARATOR (Zl)
    "\u2029",  # PARAGRAPH SEPARATOR (Zp)
    "\u3164",  # HANGUL FILLER (Lo, default ignorable)
    "\u115f",  # HANGUL CHOSEONG FILLER (Lo, default ignorable)
    "\u1160",  # HANGUL JUNGSEONG FILLER
    "\uffa0",  # HALFWIDTH HANGUL FILLER
    "\u034f",  # COMBINING GRAPHEME JOINER (Mn, default ignorable)
    "\u17b4",  # KHMER VOWEL INHERENT AQ
    "\u180e",  # MONGOLIAN VOWEL SEPARATOR
    "\u200b",  # ZERO WIDTH SPACE (Cf)
    "\u200d",  # ZERO WIDTH JOINER
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u00ad",  # SOFT HYPHEN
    "\ufeff",  # BYTE ORDER MARK
    "\ufe0f",  # VARIATION SELECTOR-16
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "\u00a0",  # NO-BREAK SPACE (Zs)
    "\u3000",  # IDEOGRAPHIC SPACE
    "\u2003",  # EM SPACE
    "\x85",  # NEXT LINE (Cc)
    "\x1b",  # ESCAPE
    "\ue000",  # private use
    "\u0378",  # unassigned
]
VISIBLE = ["deploy-prod", "Zoë", "渡辺", "café", "cafe\u0301", "\U0001f511 key", "Ωmega 2"]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda char: f"U+{ord(char):04X}")
def test_the_name_rule_refuses_invisible_characters(char: str) -> None:
    assert first_invisible(f"a{char}b") == char
    with pytest.raises(ValidationError, match=f"U\\+{ord(char):04X}"):
        TypeAdapter(Name).validate_python(f"a{char}b")
    with pytest.raises(ValidationError):
        TypeAdapter(PersonName).validate_python(f"a{char}b")
    with pytest.raises(ValidationError):
        TypeAdapter(Description).validate_python(f"line one\na{char}b")


@pytest.mark.parametrize("value", VISIBLE)
def test_the_name_rule_accepts_what_people_write(value: str) -> None:
    assert first_invisible(value) is None
    assert TypeAdapter(Name).validate_python(value) == value
    assert TypeAdapter(Description).validate_python(f"{value}\r\n{value}") == f"{value}\n{value}"


@pytest.mark.parametrize("char", ["\u2028", "\u3164", "\u115f", "\u034f", "\u00a0"])
async def test_every_name_field_of_the_api_shares_the_rule(
    client: httpx.AsyncClient, world: World, char: str
) -> None:
    name = f"x{char}y"
    key = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": name}, "spec": {}},
        headers=world.alice.headers,
    )
    described = await client.post(
        "/v1/apiKeys",
        json={"metadata": {"name": "ok", "annotations": {"description": name}}, "spec": {}},
        headers=world.alice.headers,
    )
    user = await client.post(
        "/v1/users",
        json={"metadata": {"name": "n"}, "spec": {"emailId": "n@acme.example", "firstName": name}},
        headers=world.admin.headers,
    )
    renamed = await client.patch(
        f"/v1/users/{world.bob.uid}",
        json=[{"op": "replace", "path": "/spec/lastName", "value": name}],
        headers=world.admin.headers,
    )
    for response in (key, described, user, renamed):
        assert response.status_code == 400, response.text
        assert f"U+{ord(char):04X}" in response.json()["message"]
