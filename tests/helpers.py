"""The standard cast: two tenants, an admin and two users in the first, an admin in the
second, all logged in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from keyplane.runtime import Runtime
from tests.tenants.helpers import make_tenant
from tests.users.helpers import Actor, login, make_user


@dataclass
class World:
    admin: Actor
    alice: Actor
    bob: Actor
    other_admin: Actor


async def build_world(client: httpx.AsyncClient, runtime: Runtime) -> World:
    acme = await make_tenant(runtime, "acme")
    globex = await make_tenant(runtime, "globex")
    world = World(
        admin=await make_user(
            runtime,
            acme,
            "admin@acme.example",
            role="tenant-admin",
            first_name="Ada",
            last_name="Admin",
        ),
        alice=await make_user(
            runtime, acme, "alice@acme.example", first_name="Alice", last_name="Liddell"
        ),
        bob=await make_user(runtime, acme, "bob@acme.example", first_name="Bob", last_name="By"),
        other_admin=await make_user(
            runtime, globex, "admin@globex.example", role="tenant-admin", first_name="Gil"
        ),
    )
    for actor in (world.admin, world.alice, world.bob, world.other_admin):
        await login(client, actor)
    return world


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {within} s"
        await asyncio.sleep(0.01)


def http_scope(method: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """An ASGI request scope, for calling the app directly where httpx's ASGITransport would
    wait for a streaming response's end (the invalidation feed never ends)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"keyplane.test")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("203.0.113.7", 40000),
        "server": ("keyplane.test", 80),
    }
