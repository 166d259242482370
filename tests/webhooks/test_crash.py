"""kill -9 loses no event: real ``keyplane serve`` processes, killed with SIGKILL once after
the change committed and before any delivery, and once with the delivery in flight; the
next process delivers the event (at least once: the in-flight one may arrive twice, under
the same ``webhook-id``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from keyplane.kit.db import create_engine
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.conftest import make_settings
from tests.live import _wait_until_ready, free_port, seed, settings_environment
from tests.users.helpers import login
from tests.webhooks.helpers import deliveries
from tests.webhooks.receiver import Answer, Received, receiving


@asynccontextmanager
async def serve(
    settings: Settings, *, jobs: bool
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    log_path = settings.data_dir / f"serve-{port}.log"
    environment = {
        **settings_environment(settings),
        "KEYPLANE_BACKGROUND_JOBS_ENABLED": "true" if jobs else "false",
    }
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "keyplane", "serve", "--port", str(port)],
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_ready(process, url, 1, log_path)
        yield url, process
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def kill_9(process: asyncio.subprocess.Process) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def test_kill_9_before_and_during_delivery_loses_no_event(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        webhook_allow_private_targets=True,
        webhook_timeout_seconds=1.0,
        background_interval_seconds=0.2,
    )
    engine = create_engine(settings.resolved_database_url)
    runtime = Runtime.build(settings, engine)
    try:
        world = await seed(runtime)
        first_seen = asyncio.Event()

        def answer(request: Received) -> Answer:
            if not first_seen.is_set():
                first_seen.set()
                return Answer(delay=30)  # the sender dies while waiting for this
            return Answer()

        async with receiving(answer) as receiver:
            # 1. The change commits, then the process dies before any delivery.
            async with serve(settings, jobs=False) as (url, process):
                async with httpx.AsyncClient(base_url=url) as http:
                    await login(http, world.admin)
                    created = await http.post(
                        "/v1/webhooks/endpoints",
                        json={"url": receiver.url, "events": ["apiKey.created"]},
                        headers=world.admin.headers,
                    )
                    assert created.status_code == 201, created.text
                    secret = created.json()["secret"]
                    key = await http.post(
                        "/v1/apiKeys",
                        json={"metadata": {"name": "ci"}, "spec": {}},
                        headers=world.admin.headers,
                    )
                    assert key.status_code == 201, key.text
                await kill_9(process)
            (row,) = await deliveries(runtime)
            assert (row.status, row.attempts) == ("pending", 0)

            # 2. The next process sends it and dies with the request in flight.
            async with serve(settings, jobs=True) as (url, process):
                await asyncio.wait_for(first_seen.wait(), 20)
                await kill_9(process)
            (row,) = await deliveries(runtime)
            assert row.status == "pending"
            assert row.claimed_until is not None

            # 3. Another takes it once the lease lapses, and delivers it.
            async with serve(settings, jobs=True):
                deadline = time.monotonic() + 30
                while (await deliveries(runtime))[0].status != "succeeded":
                    assert time.monotonic() < deadline, "not delivered within 30 s"
                    await asyncio.sleep(0.2)
            assert len(receiver.received) == 2
            ids = {request.headers["webhook-id"] for request in receiver.received}
            assert len(ids) == 1
            for request in receiver.received:
                payload = Webhook(secret).verify(request.body, request.headers)
                assert payload["type"] == "apiKey.created"
    finally:
        await engine.dispose()
