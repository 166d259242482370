"""KeyplaneAuth's invalidation-feed mode, against a real Keyplane server: a long cache that
still drops a revoked key at once, tenant-scoped events, and a fallback to verify on every
request while the feed is down."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from examples.inventory_service.app import create_app

from keyplane.api_keys.endpoints import CREDENTIAL_CHECK_SECONDS
from keyplane.client import AsyncClient
from keyplane.client.asgi import KeyplaneAuth
from keyplane.settings import Settings
from tests.live import LiveServer, running_server

# Long enough that any refusal within the test proves the feed (not the cache's age) did it.
CACHE_SECONDS = 300.0
# How long a revoke may take to reach the protected service: milliseconds in practice.
FEED_BOUND_SECONDS = 5.0
FEED_REQUEST = b"GET /v1/apiKeys/invalidations"


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with running_server(settings) as live:
        yield live


def _client(server: LiveServer, email: str, password: str, org: str = "acme") -> AsyncClient:
    return AsyncClient(server.url, email=email, org=org, password=password)


async def _until(condition: Callable[[], bool], seconds: float = FEED_BOUND_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _refused_within(http: httpx.AsyncClient, value: str, seconds: float) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get("/items", headers={"ApiKey": value})
        if response.status_code != 200:
            return response
        assert time.monotonic() < deadline, "the change did not reach the protected service"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def _protected(auth: KeyplaneAuth) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(auth))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            await auth.start()
            await _until(lambda: auth.subscribed)
            yield http
    finally:
        await auth.aclose()


async def test_a_revoke_and_a_deactivation_reach_a_long_cache_at_once(
    server: LiveServer,
) -> None:
    world = server.world
    async with (
        _client(server, world.admin.email, world.admin.password) as admin,
        _client(server, world.alice.email, world.alice.password) as alice,
        _client(server, world.bob.email, world.bob.password) as bob,
    ):
        verifier = await admin.create_api_key("verifier")
        caller = await alice.create_api_key("caller")
        bobs = await bob.create_api_key("bobs")
        auth = KeyplaneAuth(
            url=server.url,
            verifier_key=verifier.value,
            invalidation_feed=True,
            cache_seconds=CACHE_SECONDS,
        )
        async with _protected(auth) as http:
            for value in (caller.value, bobs.value):
                assert (await http.get("/items", headers={"ApiKey": value})).status_code == 200
            assert auth.cached_entries == 2

            await alice.revoke_api_key(caller.uid)
            refused = await _refused_within(http, caller.value, FEED_BOUND_SECONDS)
            assert refused.status_code == 401
            assert "ApiKeyRevoked" in refused.text
            # Only the revoked key was dropped.
            assert auth.cached_entries == 1

            await admin.deactivate_user(world.bob.uid)
            refused = await _refused_within(http, bobs.value, FEED_BOUND_SECONDS)
            assert refused.status_code == 401
            assert "ApiKeyUserInactive" in refused.text
            assert auth.subscribed


async def _collect(events: list[tuple[str, dict[str, Any]]], client: AsyncClient) -> None:
    async for event in client.invalidation_events():
        events.append(event)


def _first_occurrences(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    unique: list[tuple[str, Any]] = []
    for event in events:
        if event not in unique:
            unique.append(event)
    return unique


async def test_a_feed_tells_only_its_own_tenant(server: LiveServer) -> None:
    world = server.world
    async with (
        _client(server, world.admin.email, world.admin.password) as admin,
        _client(server, world.alice.email, world.alice.password) as alice,
        _client(server, world.other_admin.email, world.other_admin.password, org="globex") as other,
    ):
        acme_verifier = await admin.create_api_key("verifier")
        globex_verifier = await other.create_api_key("verifier")
        verified = await alice.create_api_key("verified")
        unverified = await alice.create_api_key("unverified")
        # One key the server's cache holds (its tenant is known at once), one it does not
        # (its tenant is looked up).
        assert (await admin.verify_api_key(verified.value)).valid
        acme_events: list[tuple[str, dict[str, Any]]] = []
        globex_events: list[tuple[str, dict[str, Any]]] = []
        async with (
            AsyncClient(server.url, api_key=acme_verifier.value) as acme_feed,
            AsyncClient(server.url, api_key=globex_verifier.value) as globex_feed,
        ):
            tasks = [
                asyncio.create_task(_collect(acme_events, acme_feed)),
                asyncio.create_task(_collect(globex_events, globex_feed)),
            ]
            try:
                await _until(lambda: bool(acme_events) and bool(globex_events))
                await alice.revoke_api_key(verified.uid)
                await alice.revoke_api_key(unverified.uid)
                await admin.deactivate_user(world.alice.uid)
                expected = [
                    ("ready", {}),
                    ("key", {"keyUid": verified.uid}),
                    ("key", {"keyUid": unverified.uid}),
                    ("user", {"userUid": world.alice.uid}),
                ]
                await _until(lambda: len(_first_occurrences(acme_events)) >= len(expected))
                # Anything meant for globex would have arrived by now, on the same worker.
                await asyncio.sleep(0.5)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        # At least once: a worker applies its own changes on commit and again as they come
        # through its channel, and passes on both.
        assert _first_occurrences(acme_events) == expected
        assert globex_events == [("ready", {})]


async def test_a_plain_users_key_may_not_subscribe(server: LiveServer) -> None:
    world = server.world
    async with _client(server, world.alice.email, world.alice.password) as alice:
        own = await alice.create_api_key("own")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/v1/apiKeys/invalidations", headers={"ApiKey": own.value})
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"


class FeedCutter:
    """A TCP proxy in front of Keyplane that can cut the invalidation feed's connections
    and refuse new ones, or hold back what the feed sends (as a frozen worker or a stalled
    network would), leaving every other request alone."""

    def __init__(self, target: httpx.URL) -> None:
        self.target = target
        self.block_feed = False
        # Cleared while the feed is held back.
        self.feed_flowing = asyncio.Event()
        self.feed_flowing.set()
        self._feeds: set[asyncio.StreamWriter] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> FeedCutter:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._feeds):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.target.port is not None
        up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)
        self._writers.update((writer, up_writer))

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, upstream: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if upstream and FEED_REQUEST in data:
                        if self.block_feed:
                            break
                        self._feeds.add(writer)
                    if not upstream and writer in self._feeds:
                        await self.feed_flowing.wait()
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._feeds.discard(writer)
        self._writers.difference_update((writer, up_writer))
        for closing in (writer, up_writer):
            with contextlib.suppress(ConnectionError, OSError):
                await closing.wait_closed()


async def test_a_lost_feed_falls_back_to_verify_and_resubscribes(server: LiveServer) -> None:
    world = server.world
    async with (
        _client(server, world.admin.email, world.admin.password) as admin,
        _client(server, world.alice.email, world.alice.password) as alice,
        FeedCutter(httpx.URL(server.url)) as cutter,
    ):
        verifier = await admin.create_api_key("verifier")
        doomed = await alice.create_api_key("doomed")
        kept = await alice.create_api_key("kept")
        auth = KeyplaneAuth(
            url=cutter.url,
            verifier_key=verifier.value,
            invalidation_feed=True,
            cache_seconds=CACHE_SECONDS,
        )
        async with _protected(auth) as http:
            for value in (doomed.value, kept.value):
                assert (await http.get("/items", headers={"ApiKey": value})).status_code == 200
            assert auth.cached_entries == 2

            cutter.block_feed = True
            cutter.cut()
            await _until(lambda: not auth.subscribed)
            assert auth.cached_entries == 0
            # The feed is down: nothing is cached, every request asks verify.
            await alice.revoke_api_key(doomed.uid)
            refused = await http.get("/items", headers={"ApiKey": doomed.value})
            assert refused.status_code == 401
            assert "ApiKeyRevoked" in refused.text
            assert (await http.get("/items", headers={"ApiKey": kept.value})).status_code == 200
            assert auth.cached_entries == 0

            cutter.block_feed = False
            await _until(lambda: auth.subscribed, seconds=15)
            assert (await http.get("/items", headers={"ApiKey": kept.value})).status_code == 200
            assert auth.cached_entries == 1


async def test_a_silent_feed_stops_the_cache_being_trusted_within_the_workers_lease(
    server: LiveServer, settings: Settings
) -> None:
    """The feed's worker vouches for what it has told for as long as its lease holds; when
    its lease events stop coming (a frozen worker, a stalled network), cached answers stop
    being used before that lease is out, which is before any change it missed can have
    answered elsewhere. When they come again, the cache is trusted again."""
    world = server.world
    lease = settings.invalidation_lease_seconds
    async with (
        _client(server, world.admin.email, world.admin.password) as admin,
        FeedCutter(httpx.URL(server.url)) as cutter,
    ):
        verifier = await admin.create_api_key("verifier")
        caller = await admin.create_api_key("caller")
        auth = KeyplaneAuth(
            url=cutter.url,
            verifier_key=verifier.value,
            invalidation_feed=True,
            cache_seconds=CACHE_SECONDS,
        )
        async with _protected(auth) as http:
            await _until(lambda: auth.trusted)
            assert (await http.get("/items", headers={"ApiKey": caller.value})).status_code == 200
            assert auth.cached_entries == 1

            cutter.feed_flowing.clear()
            stalled_at = time.monotonic()
            await _until(lambda: not auth.trusted, seconds=lease + 1)
            assert time.monotonic() - stalled_at < lease
            assert auth.subscribed  # not dropped yet: only no longer trusted

            cutter.feed_flowing.set()
            await _until(lambda: auth.trusted)


async def test_a_feed_ends_soon_after_its_session_is_logged_out(server: LiveServer) -> None:
    world = server.world
    async with _client(server, world.admin.email, world.admin.password) as admin:
        events: list[tuple[str, dict[str, Any]]] = []
        task = asyncio.create_task(_collect(events, admin))
        await _until(lambda: bool(events))
        assert events[0] == ("ready", {})
        await admin.logout()
        await asyncio.wait_for(task, CREDENTIAL_CHECK_SECONDS + FEED_BOUND_SECONDS)


async def test_lease_events_say_how_long_the_worker_vouches_for_the_feed(
    server: LiveServer, settings: Settings
) -> None:
    world = server.world
    lease = settings.invalidation_lease_seconds
    async with _client(server, world.admin.email, world.admin.password) as admin:
        events: list[tuple[str, dict[str, Any]]] = []

        async def collect() -> None:
            async for event in admin.invalidation_events(leases=True):
                events.append(event)

        task = asyncio.create_task(collect())
        try:
            await _until(lambda: sum(name == "lease" for name, _ in events) >= 3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert events[0] == ("ready", {"leaseSeconds": lease})
    for name, data in events[1:]:
        if name == "lease":
            assert 0 < data["seconds"] <= lease
