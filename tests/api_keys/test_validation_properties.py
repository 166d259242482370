"""Whatever a client sends as a key's name, description and expiry, the answer is a
created key or a 400 in Palette's error shape: never a 5xx, and a refused request stores
nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from keyplane.kit.db import transaction
from keyplane.kit.text import is_visible
from keyplane.kit.time import utcnow
from keyplane.models import ApiKey, AuditEvent
from keyplane.runtime import Runtime
from tests.helpers import World

offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ).map(lambda offset: timedelta(minutes=offset // timedelta(minutes=1))),
)
# Expiries a create should accept (in a random offset), and everything else.
plausible_expiries = st.builds(
    lambda ahead, zone: (utcnow() + ahead).astimezone(zone).isoformat(),
    st.timedeltas(min_value=timedelta(minutes=5), max_value=timedelta(days=364)),
    offsets,
)
any_instant = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=offsets
)
naive_instant = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
# What the name rule (keyplane.kit.text) accepts: visible characters and the ordinary space.
printable = st.characters(
    exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]
).filter(is_visible) | st.just(" ")
# Listed twice: half the examples look valid, so that creates succeed often enough to
# check what they store.
expiries = (
    st.none()
    | plausible_expiries
    | plausible_expiries
    | any_instant.map(datetime.isoformat)
    | naive_instant.map(datetime.isoformat)
    | st.text(max_size=40)
    | json_scalars
    | st.lists(json_scalars, max_size=3)
)
names = (
    st.text(printable, min_size=1, max_size=128)
    | st.text(printable, min_size=1, max_size=128)
    | st.text(max_size=200)
    | st.text(st.characters(categories=["Zs", "Cc", "Cf"]), max_size=5)
    | st.sampled_from(["ci", "  padded  ", "x" * 128, "x" * 129, "名前", "emoji 🔑"])
    | json_scalars
)
descriptions = (
    st.none()
    | st.text(printable, max_size=1024)
    | st.text(max_size=1100)
    | st.just("line one\r\nline two")
    | json_scalars
)


async def _stored(runtime: Runtime) -> tuple[int, int]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        keys = await session.scalar(select(func.count()).select_from(ApiKey))
        events = await session.scalar(select(func.count()).select_from(AuditEvent))
    return int(keys or 0), int(events or 0)


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "ref"}
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["ref"] == response.headers["x-request-id"]


def _body(name: Any, description: Any, expiry: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["annotations"] = {"description": description}
    return {"metadata": metadata, "spec": {} if expiry is None else {"expiry": expiry}}


@given(name=names, description=descriptions, expiry=expiries)
async def test_creates_are_accepted_or_refused_cleanly(
    client: httpx.AsyncClient,
    world: World,
    runtime: Runtime,
    name: Any,
    description: Any,
    expiry: Any,
) -> None:
    before = await _stored(runtime)
    response = await client.post(
        "/v1/apiKeys", json=_body(name, description, expiry), headers=world.alice.headers
    )
    event(f"create answered {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code != 201:
        _assert_refused(response)
        assert await _stored(runtime) == before
        return

    created = response.json()
    assert set(created) == {"apiKey", "uid"}
    stored = (await client.get(f"/v1/apiKeys/{created['uid']}", headers=world.alice.headers)).json()
    assert stored["metadata"]["name"] == name.strip()
    assert stored["metadata"]["annotations"]["description"] == (
        (description or "").strip().replace("\r\n", "\n") if isinstance(description, str) else ""
    )
    if expiry is not None:
        assert datetime.fromisoformat(stored["spec"]["expiry"]) == datetime.fromisoformat(
            expiry
        ).astimezone(UTC).replace(microsecond=stored_microseconds(expiry))
    # Each example leaves the database as it found it: no name clashes, no key limit.
    deleted = await client.delete(f"/v1/apiKeys/{created['uid']}", headers=world.alice.headers)
    assert deleted.status_code == 204


@given(
    name=st.text(printable, min_size=1, max_size=128),
    description=st.none() | st.text(printable, max_size=1024),
    expiry=st.none() | plausible_expiries,
)
async def test_every_valid_create_is_stored_as_sent(
    client: httpx.AsyncClient,
    world: World,
    name: str,
    description: str | None,
    expiry: str | None,
) -> None:
    response = await client.post(
        "/v1/apiKeys", json=_body(name, description, expiry), headers=world.alice.headers
    )
    if not name.strip():
        _assert_refused(response)
        return
    assert response.status_code == 201, response.text
    uid = response.json()["uid"]
    stored = (await client.get(f"/v1/apiKeys/{uid}", headers=world.alice.headers)).json()
    assert stored["metadata"]["name"] == name.strip()
    assert stored["metadata"]["annotations"]["description"] == (description or "").strip()
    assert (await client.delete(f"/v1/apiKeys/{uid}", headers=world.alice.headers)).is_success


def stored_microseconds(expiry: str) -> int:
    """Keyplane keeps what the client sent; the API renders milliseconds."""
    return datetime.fromisoformat(expiry).microsecond // 1000 * 1000


@given(name=names, description=descriptions, expiry=expiries)
async def test_updates_are_accepted_or_refused_cleanly(
    client: httpx.AsyncClient,
    world: World,
    runtime: Runtime,
    name: Any,
    description: Any,
    expiry: Any,
) -> None:
    uid = await _the_key(client, world)
    before = (await client.get(f"/v1/apiKeys/{uid}", headers=world.bob.headers)).json()
    stored_before = await _stored(runtime)
    response = await client.put(
        f"/v1/apiKeys/{uid}", json=_body(name, description, expiry), headers=world.bob.headers
    )
    event(f"update answered {response.status_code}")
    assert response.status_code < 500, response.text
    after = (await client.get(f"/v1/apiKeys/{uid}", headers=world.bob.headers)).json()
    if response.status_code != 204:
        _assert_refused(response)
        assert after == before
        assert await _stored(runtime) == stored_before
        return
    # A field sent as null is left as it was.
    expected = name.strip() if isinstance(name, str) else before["metadata"]["name"]
    assert after["metadata"]["name"] == expected


async def _the_key(client: httpx.AsyncClient, world: World) -> str:
    """Bob's one key, made by the first example and edited by every one after it."""
    listed = (await client.get("/v1/apiKeys", headers=world.bob.headers)).json()["items"]
    if listed:
        uid: str = listed[0]["metadata"]["uid"]
        return uid
    created = await client.post(
        "/v1/apiKeys", json=_body("bobs key", None, None), headers=world.bob.headers
    )
    assert created.status_code == 201, created.text
    new_uid: str = created.json()["uid"]
    return new_uid
