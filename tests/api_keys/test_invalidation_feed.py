"""GET /v1/apiKeys/invalidations in process: what a feed says when its worker can no longer
promise to pass on every change. (The events themselves are tested against a real server
in tests/examples/test_invalidation_feed.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI

from keyplane.runtime import Runtime
from tests.helpers import World, http_scope

FEED = "/v1/apiKeys/invalidations"


async def _open(
    app: FastAPI, headers: dict[str, str]
) -> tuple[asyncio.Task[None], asyncio.Queue[bytes]]:
    """The feed, called as an ASGI app (httpx's ASGITransport waits for a stream's end):
    its body chunks arrive in the queue; the task ends when the response does."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message["type"] == "http.response.body" and message.get("body"):
            await chunks.put(message["body"])

    scope = http_scope("GET", FEED, headers)
    return asyncio.create_task(app(scope, receive, send)), chunks


async def test_a_lost_channel_ends_the_feed_with_resync(
    app: FastAPI, runtime: Runtime, world: World
) -> None:
    feed = runtime.invalidation_feed
    feed.set_healthy(True)
    task, chunks = await _open(app, world.admin.headers)
    assert await asyncio.wait_for(chunks.get(), 5) == b"event: ready\ndata: {}\n\n"
    assert len(feed) == 1
    feed.set_healthy(False)
    assert await asyncio.wait_for(chunks.get(), 5) == b"event: resync\ndata: {}\n\n"
    await asyncio.wait_for(task, 5)
    assert len(feed) == 0


async def test_no_ready_while_the_channel_is_down(
    app: FastAPI, runtime: Runtime, world: World
) -> None:
    runtime.invalidation_feed.set_healthy(False)
    task, chunks = await _open(app, world.admin.headers)
    await asyncio.wait_for(task, 5)
    assert chunks.get_nowait() == b"event: resync\ndata: {}\n\n"
    assert chunks.empty()
