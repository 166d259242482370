"""Kill -9 in the middle of a burst: every change the server answered 2xx is still there
after a restart, and the audit log has a record of each.

``keyplane serve`` runs as its own process group; a dozen clients create, edit, revoke,
re-activate and delete keys concurrently, and the group gets SIGKILL while requests are in
flight. Each key belongs to one client, which changes it one request at a time, so the
state it last had acknowledged is known exactly; a request that was in flight when the
server died may or may not have been stored, and either outcome is accepted for it. On
SQLite (WAL, synchronous=NORMAL: survives the death of the process, not a power loss) and
on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyplane.kit.db import create_engine
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.conftest import make_settings
from tests.live import free_port, seed, settings_environment
from tests.matrix import count
from tests.users.helpers import Actor

CLIENTS = 12


@dataclass(frozen=True)
class KeyState:
    exists: bool
    name: str = ""
    description: str = ""
    active: bool = True


@dataclass
class TrackedKey:
    uid: str
    value: str
    owner: Actor
    # What the key may look like now: one state once the last change was acknowledged; two
    # (before and after) when the server died with that change in flight.
    possible: list[KeyState]
    in_flight: str | None = None  # the audit action of that change

    @property
    def state(self) -> KeyState:
        return self.possible[-1]


@dataclass
class Burst:
    kill_after_acks: int
    acks: list[tuple[str, str]] = field(default_factory=list)  # (key uid, audit action)
    keys: list[TrackedKey] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    in_flight_at_kill: int = 0
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def acknowledge(self, uid: str, action: str) -> None:
        self.acks.append((uid, action))
        if len(self.acks) >= self.kill_after_acks:
            self.enough.set()


@asynccontextmanager
async def killable_server(
    settings: Settings,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``keyplane serve`` in its own process group, for the test to SIGKILL."""
    port = free_port()
    log_path = settings.data_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "keyplane", "serve", "--port", str(port)],
            env=settings_environment(settings),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=url) as http:
            while True:
                if process.returncode is not None:
                    errors = await asyncio.to_thread(log_path.read_text, errors="replace")
                    pytest.fail(f"keyplane serve exited with {process.returncode}:\n{errors}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "keyplane serve did not start within 30 s"
                await asyncio.sleep(0.1)
        yield process, url
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def _login(http: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    response = await http.post(
        "/v1/auth/authenticate",
        json={"emailId": actor.email, "org": actor.tenant_name, "password": actor.password},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": response.json()["Authorization"]}


def _edit_body(state: KeyState, rename: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"annotations": {"description": state.description}}
    if rename:
        metadata["name"] = state.name
    return {"metadata": metadata, "spec": {}}


async def _client(
    index: int, url: str, caller: Actor, owner: Actor, burst: Burst, seed_value: int
) -> None:
    """One client: creates keys for ``owner`` and changes them, one request at a time,
    until the server dies."""
    rng = random.Random(seed_value)
    names = itertools.count()
    mine: list[TrackedKey] = []
    async with httpx.AsyncClient(base_url=url, headers=caller.headers, timeout=30) as http:
        while not burst.killed.is_set():
            live = [key for key in mine if key.state.exists]
            action = "create" if len(live) < 3 or rng.random() < 0.25 else ""
            key = None if action else rng.choice(live)
            if key is None:
                name = f"c{index}-k{next(names)}"
                after = KeyState(True, name, f"created by client {index}")
                body: dict[str, Any] = {
                    "metadata": {"name": name, "annotations": {"description": after.description}},
                    "spec": {"userUid": owner.uid},
                }
                request = http.build_request("POST", "/v1/apiKeys", json=body)
                action = "apiKey.create"
            else:
                roll = rng.random()
                if roll < 0.15:
                    after, action = KeyState(False), "apiKey.delete"
                    request = http.build_request("DELETE", f"/v1/apiKeys/{key.uid}")
                elif roll < 0.5:
                    # A rename with a new description, or the description alone (the name,
                    # left out, keeps its value).
                    serial = next(names)
                    rename = roll < 0.35
                    after = replace(
                        key.state,
                        name=f"c{index}-k{serial}" if rename else key.state.name,
                        description=f"edit {serial}",
                    )
                    action = "apiKey.update"
                    request = http.build_request(
                        "PUT", f"/v1/apiKeys/{key.uid}", json=_edit_body(after, rename)
                    )
                else:
                    after = replace(key.state, active=not key.state.active)
                    action = "apiKey.reactivate" if after.active else "apiKey.revoke"
                    # Palette's two spellings of the same change, both exercised.
                    path = f"/v1/apiKeys/{key.uid}" + ("/state" if roll < 0.75 else "")
                    method = "PUT" if roll < 0.75 else "PATCH"
                    request = http.build_request(method, path, json={"isActive": after.active})
            try:
                response = await http.send(request)
            except httpx.TransportError:
                # The server died with this request in flight: either outcome is possible,
                # and this client is done.
                burst.in_flight_at_kill += 1
                if key is not None:
                    key.possible = [key.state, after]
                    key.in_flight = action
                return
            if response.status_code not in {200, 201, 204}:
                burst.unexpected.append(f"{request.method} {request.url.path}: {response.text}")
                return
            if key is None:
                created = response.json()
                key = TrackedKey(created["uid"], created["apiKey"], owner, possible=[after])
                mine.append(key)
                burst.keys.append(key)
            else:
                key.possible = [after]
            burst.acknowledge(key.uid, action)


async def _stored_state(http: httpx.AsyncClient, key: TrackedKey) -> KeyState:
    """The key as the API shows it, checked against what the key itself finds when it
    authenticates a request (so its hash was stored too)."""
    response = await http.get(f"/v1/apiKeys/{key.uid}")
    # The key alone: the client's own session token is blanked for this request.
    used = await http.get("/v1/users/info", headers={"ApiKey": key.value, "Authorization": ""})
    if response.status_code == 404:
        assert used.json()["code"] == "ApiKeyInvalid", used.text
        return KeyState(False)
    assert response.status_code == 200, response.text
    body = response.json()
    state = KeyState(
        True,
        body["metadata"]["name"],
        body["metadata"]["annotations"]["description"],
        body["status"]["isActive"],
    )
    if state.active:
        assert used.status_code == 200, used.text
        assert used.json()["userUid"] == key.owner.uid
    else:
        assert used.json()["code"] == "ApiKeyRevoked", used.text
    return state


async def _audited_key_actions(http: httpx.AsyncClient) -> Counter[tuple[str, str]]:
    recorded: Counter[tuple[str, str]] = Counter()
    offset = 0
    while True:
        response = await http.get(
            "/v1/audits", params={"resourceKind": "apiKey", "limit": 1000, "offset": offset}
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        for item in items:
            recorded[
                (item["spec"]["resource"]["uid"], item["metadata"]["annotations"]["action"])
            ] += 1
        if len(items) < 1000:
            return recorded
        offset += len(items)


async def test_acknowledged_changes_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        api_key_default_per_user_limit=1000,
        # The check after the restart uses revoked and deleted keys: failed authentications.
        auth_failure_rate_per_second=10_000,
        auth_failure_burst=100_000,
    )
    engine = create_engine(settings.resolved_database_url)
    try:
        world = await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()
    # Admins change alice's and bob's keys as well as the owners do.
    cast = [
        (world.alice, world.alice),
        (world.bob, world.bob),
        (world.admin, world.alice),
        (world.admin, world.bob),
    ]
    run_seed = random.randrange(2**32)
    # Acknowledged changes before the kill: every kind of change, many times over.
    burst = Burst(kill_after_acks=100 + run_seed % 200)
    started = time.monotonic()

    async with killable_server(settings) as (process, url):
        async with httpx.AsyncClient(base_url=url) as http:
            for actor in (world.admin, world.alice, world.bob):
                actor.headers = await _login(http, actor)
        clients = [
            asyncio.create_task(_client(i, url, *cast[i % len(cast)], burst, run_seed + i))
            for i in range(CLIENTS)
        ]
        try:
            await asyncio.wait_for(burst.enough.wait(), 60)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            burst.killed.set()
            await asyncio.gather(*clients)
    burst_seconds = time.monotonic() - started

    assert not burst.unexpected, burst.unexpected
    kinds = Counter(action for _, action in burst.acks)
    assert set(kinds) == {
        "apiKey.create",
        "apiKey.update",
        "apiKey.revoke",
        "apiKey.reactivate",
        "apiKey.delete",
    }, kinds
    # The kill landed in the middle of the burst, not after it.
    assert burst.in_flight_at_kill > 0

    async with killable_server(settings) as (_, url), httpx.AsyncClient(base_url=url) as http:
        http.headers.update(await _login(http, world.admin))
        lost = []
        stored_in_flight = []
        for key in burst.keys:
            stored = await _stored_state(http, key)
            if stored not in key.possible:
                lost.append((key.uid, key.possible, stored))
            elif key.in_flight and stored == key.state and stored != key.possible[0]:
                stored_in_flight.append((key.uid, key.in_flight))
        assert not lost, f"acknowledged changes lost after kill -9 (seed {run_seed}): {lost}"
        recorded = await _audited_key_actions(http)

    # A change in flight at the kill that was stored anyway has its audit record too: the
    # record is written in the same transaction as the change.
    expected = Counter(burst.acks) + Counter(stored_in_flight)
    missing = {change: count for change, count in expected.items() if recorded[change] < count}
    assert not missing, f"stored changes without an audit record (seed {run_seed}): {missing}"
    database = settings.resolved_database_url.split(":")[0]
    count(
        f"acknowledged changes found intact after kill -9 on {database} (faults)", len(burst.acks)
    )
    print(  # The figures the README reports (shown with -s or -rP).
        f"kill -9 on {settings.resolved_database_url.split(':')[0]}: {len(burst.acks)} "
        f"acknowledged changes ({dict(kinds)}) on {len(burst.keys)} keys in "
        f"{burst_seconds:.1f} s, {burst.in_flight_at_kill} requests in flight at the kill "
        f"({len(stored_in_flight)} of them stored anyway, and audited); none lost"
    )
