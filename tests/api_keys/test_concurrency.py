"""Rules that a check-then-write could break under concurrency hold on both databases."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from keyplane.kit.db import transaction
from keyplane.models import AuditEvent
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.api_keys.helpers import CreatedKey, key_body, make_api_key
from tests.conftest import make_settings
from tests.helpers import World
from tests.users.helpers import Actor


async def test_concurrent_creates_with_one_name_make_one_key(
    client: httpx.AsyncClient, world: World
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/v1/apiKeys", json=key_body("same"), headers=world.alice.headers)
            for _ in range(4)
        )
    )
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409]
    listed = await client.get("/v1/apiKeys", headers=world.alice.headers)
    assert len(listed.json()["items"]) == 1


async def test_concurrent_creates_never_pass_the_limit(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.patch(
        f"/v1/tenants/{world.admin.tenant_uid}/resourceLimits",
        json={"resources": [{"kind": "apiKey", "limit": 3}]},
        headers=world.admin.headers,
    )
    assert response.status_code == 204
    responses = await asyncio.gather(
        *(
            client.post("/v1/apiKeys", json=key_body(f"k{i}"), headers=world.alice.headers)
            for i in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [409] * 5
    listed = await client.get("/v1/apiKeys", headers=world.alice.headers)
    assert len(listed.json()["items"]) == 3


async def test_concurrent_revoke_and_delete_end_consistently(
    client: httpx.AsyncClient, world: World
) -> None:
    key = await make_api_key(client, world.alice, "contested")
    revoke, delete = await asyncio.gather(
        client.patch(
            f"/v1/apiKeys/{key.uid}", json={"isActive": False}, headers=world.admin.headers
        ),
        client.delete(f"/v1/apiKeys/{key.uid}", headers=world.alice.headers),
    )
    assert delete.status_code == 204
    assert revoke.status_code in {204, 404}
    assert (await client.get("/v1/users/info", headers=key.headers)).status_code == 401
    gone = await client.get(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert gone.status_code == 404


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Requests with a revoked or deleted key are failed authentications; here they are the
    # observations, not an attack, so the per-address limiter must not turn them into 429s.
    return make_settings(
        database_url, tmp_path, auth_failure_rate_per_second=10_000, auth_failure_burst=100_000
    )


@dataclass(frozen=True)
class Outcome:
    """What one request saw or did: a state ("active", "revoked" or "gone"), between the
    moment it was sent and the moment its answer came (wall-clock seconds)."""

    state: str
    sent: float
    answered: float


@dataclass
class Contest:
    """Concurrent requests on one key, and what came back."""

    client: httpx.AsyncClient
    key: CreatedKey
    deleting: bool
    acknowledged: list[Outcome] = field(default_factory=list)
    observed: list[Outcome] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)

    async def change(self, delay: float, method: str, path: str, actor: Actor, target: str) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        body = None if target == "gone" else {"isActive": target == "active"}
        response = await self.client.request(
            method, f"/v1/apiKeys/{self.key.uid}{path}", json=body, headers=actor.headers
        )
        if target == "gone":
            self.deletes.append(response.status_code)
        if response.status_code == 204:
            self.acknowledged.append(Outcome(target, sent, time.time()))
        else:
            # Only a key deleted in this very round may be missing.
            assert self.deleting, response.text
            assert response.status_code == 404, response.text

    async def observe(self, delay: float) -> None:
        await asyncio.sleep(delay)
        sent = time.time()
        seen = await _used(self.client, self.key)
        self.observed.append(Outcome(seen, sent, time.time()))


async def _used(client: httpx.AsyncClient, key: CreatedKey) -> str:
    """The key's state as the key itself finds it, authenticating a request."""
    response = await client.get("/v1/users/info", headers=key.headers)
    if response.status_code == 200:
        return "active"
    assert response.status_code == 401, response.text
    return {"ApiKeyRevoked": "revoked", "ApiKeyInvalid": "gone"}[response.json()["code"]]


async def _read_state(client: httpx.AsyncClient, world: World, key: CreatedKey) -> tuple[str, str]:
    """The key's state as the API and the verify endpoint report it."""
    read = await client.get(f"/v1/apiKeys/{key.uid}", headers=world.admin.headers)
    assert read.status_code in {200, 404}, read.text
    by_api = "gone" if read.status_code == 404 else "revoked"
    if read.status_code == 200 and read.json()["status"]["isActive"]:
        by_api = "active"
    verify = await client.post(
        "/v1/apiKeys/verify", json={"key": key.value}, headers=world.admin.headers
    )
    assert verify.status_code == 200, verify.text
    by_verify = {"VALID": "active", "REVOKED": "revoked", "NOT_FOUND": "gone"}
    return by_api, by_verify[verify.json()["code"]]


_AUDITED_STATE = {
    "apiKey.create": "active",
    "apiKey.reactivate": "active",
    "apiKey.revoke": "revoked",
    "apiKey.delete": "gone",
}


async def _timeline(runtime: Runtime, uid: str) -> tuple[list[float], list[str]]:
    """The key's states in the server's order, from its audit records (each written in
    the transaction of its change, under the key's lock): when each was recorded, and
    what the key became."""
    async with transaction(runtime.sessionmaker, writes=False) as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.resource_uid == uid)
                .order_by(AuditEvent.occurred_at)
            )
        ).all()
    return (
        [event.occurred_at.timestamp() for event in events],
        [_AUDITED_STATE[event.action] for event in events],
    )


def _possible_during(timeline: tuple[list[float], list[str]], outcome: Outcome) -> set[str]:
    """The states the key may have had at some moment between the request and its answer.
    A change takes effect when it commits: after its record was written, and before the
    next change's record (that one waited for the key's lock)."""
    starts, states = timeline
    return {
        state
        for i, state in enumerate(states)
        if starts[i] <= outcome.answered and (i + 2 >= len(states) or starts[i + 2] > outcome.sent)
    }


async def test_many_clients_on_one_key_end_in_the_last_acknowledged_state(
    client: httpx.AsyncClient, world: World, runtime: Runtime
) -> None:
    """Rounds of 16 staggered concurrent requests on one key: revokes and re-activations
    (both spellings, by the owner and by the tenant admin), uses of the key, and in the
    last round two deletes. The server's order of the changes is its audit log. In it,
    revokes and re-activations alternate (no update lost to a race); every acknowledged
    change held at some moment between its request and its answer (a no-op included:
    the key already was so), and so did what every use of the key saw (no stale cache);
    after each round the API, the verify endpoint and the key itself all report the last
    change; and once a delete is acknowledged, the key never authenticates again."""
    key = await make_api_key(client, world.alice, "contested")
    rng = random.Random(6)
    for round_number in range(10):
        last_round = round_number == 9
        contest = Contest(client, key, deleting=last_round)
        operations = []
        for i in range(16):
            actor = world.alice if i % 2 else world.admin
            roll = rng.random()
            # Staggered, so that some requests go out after others were answered.
            delay = rng.random() * 0.05
            if last_round and i in {5, 10}:
                operations.append(contest.change(delay, "DELETE", "", actor, "gone"))
            elif roll < 0.3:
                operations.append(contest.observe(delay))
            else:
                target = "active" if rng.random() < 0.5 else "revoked"
                method, path = ("PATCH", "") if roll < 0.65 else ("PUT", "/state")
                operations.append(contest.change(delay, method, path, actor, target))
        await asyncio.gather(*operations)

        timeline = await _timeline(runtime, key.uid)
        _, states = timeline
        changes = states[1:-1] if states[-1] == "gone" else states[1:]
        assert all(a != b for a, b in zip(states, changes, strict=False)), states
        for outcome in contest.acknowledged + contest.observed:
            assert outcome.state in _possible_during(timeline, outcome), (outcome, timeline)
        by_api, by_verify = await _read_state(client, world, key)
        assert by_api == by_verify == await _used(client, key) == states[-1]
    assert sorted(contest.deletes) == [204, 404]
    assert states[-1] == "gone"
    deleted = next(outcome for outcome in contest.acknowledged if outcome.state == "gone")
    assert all(seen.state == "gone" for seen in contest.observed if seen.sent > deleted.answered)
