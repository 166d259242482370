"""Real Keyplane servers on loopback: uvicorn in a thread of the test process, or
``keyplane serve`` as separate processes, seeded with the standard cast."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from keyplane.app import create_app
from keyplane.kit.db import create_engine
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.helpers import World
from tests.tenants.helpers import make_tenant
from tests.users.helpers import make_user


@dataclass
class LiveServer:
    url: str
    world: World
    runtime: Runtime


@dataclass
class ServedApp:
    url: str
    # The server's own runtime (its key cache, its engine), not a copy.
    runtime: Runtime


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def seed(runtime: Runtime) -> World:
    acme = await make_tenant(runtime, "acme")
    globex = await make_tenant(runtime, "globex")
    return World(
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


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[ServedApp]:
    """The app under uvicorn in a thread of this process, on a free loopback port."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the Keyplane server did not start")
        await asyncio.sleep(0.05)
    try:
        yield ServedApp(url=f"http://127.0.0.1:{port}", runtime=app.state.runtime)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 20)


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[LiveServer]:
    engine = create_engine(settings.resolved_database_url)
    runtime = Runtime.build(settings, engine)
    world = await seed(runtime)
    try:
        async with serving(settings) as served:
            yield LiveServer(url=served.url, world=world, runtime=runtime)
    finally:
        await engine.dispose()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes ``keyplane serve`` read the same settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "secret_key":
            value = settings.secret_key.get_secret_value()
        elif isinstance(value, list):
            # Lists (trusted proxies) are comma-separated in the environment.
            value = ",".join(str(item) for item in value)
        environment[f"KEYPLANE_{name.upper()}"] = str(value)
    return environment


@asynccontextmanager
async def server_process(
    settings: Settings, *, workers: int = 1, environment: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """``keyplane serve`` in its own process (or processes); yields its base URL.
    ``environment``: variables beyond the settings' own."""
    port = free_port()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # A file, not a pipe: nobody reads a pipe while the server runs, and a full one blocks it.
    log_path = settings.data_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "keyplane", "serve", "--port", str(port)],
            *["--workers", str(workers)],
            env={**settings_environment(settings), **(environment or {})},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_ready(process, url, workers, log_path)
        yield url
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


async def _wait_until_ready(
    process: asyncio.subprocess.Process, url: str, workers: int, log_path: Path
) -> None:
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
            if time.monotonic() > deadline:
                pytest.fail("keyplane serve did not start within 30 s")
            await asyncio.sleep(0.1)
    # Each worker answers only once its own lifespan has started; give the others as long.
    if workers > 1:
        await asyncio.sleep(1.5)
