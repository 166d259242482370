"""Shared rate limits, against a real Redis (KEYPLANE_TEST_REDIS_URL, by default the one on
127.0.0.1:6379) and in process. Without Redis the Redis cases are skipped, with the reason,
except under CI=true where they fail. Each test writes under its own random key prefix and
deletes what it wrote."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import pytest
import redis

from keyplane.kit.shared_limits import (
    LimitDecision,
    LocalLimiter,
    RateLimit,
    RedisLimiter,
    SharedLimiter,
    build_limiter,
)
from tests.conftest import missing_service
from tests.tcp_proxy import TcpProxy

PER_SECOND = RateLimit("per-second", 10, 1)
ONCE = [RateLimit("once", 1, 60)]


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[SharedLimiter]:
    """Each backend in turn: the cases below are the semantics both must have."""
    backend: SharedLimiter
    if request.param == "local":
        backend = LocalLimiter()
    else:
        url = request.getfixturevalue("redis_url")
        # A generous timeout: a busy machine must not turn a slow answer into a fail-open.
        backend = RedisLimiter(url, request.getfixturevalue("redis_prefix"), 5.0)
    yield backend
    assert backend.unavailable_total == 0
    await backend.aclose()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno == level]


@pytest.fixture
def limits_log() -> Iterator[_Records]:
    """What keyplane.limits logs, however logging was configured by earlier tests."""
    handler = _Records()
    log = logging.getLogger("keyplane.limits")
    level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


async def _clear_of_boundary(window: int) -> None:
    """Waits for the next window when the current one is about to end, so a quick sequence
    of checks falls in one window and the counts come out exact."""
    left = window - time.time() % window
    if left < 0.5:
        await asyncio.sleep(left + 0.01)


async def _until_answered(
    limiter: RedisLimiter, subject: str, limits: list[RateLimit]
) -> LimitDecision:
    """The first decision that Redis made (rather than a fail-open), within 5 s."""
    deadline = time.monotonic() + 5
    while True:
        failures = limiter.unavailable_total
        decision = await limiter.check(subject, limits)
        if limiter.unavailable_total == failures:
            return decision
        assert time.monotonic() < deadline, "Redis did not answer again"
        await asyncio.sleep(0.05)


# --- Both backends ------------------------------------------------------------------------


async def test_a_limit_is_enforced_exactly(limiter: SharedLimiter) -> None:
    await _clear_of_boundary(1)
    decisions = [await limiter.check("key:a", [PER_SECOND]) for _ in range(10)]
    assert [d.allowed for d in decisions] == [True] * 10
    assert [d.remaining for d in decisions] == list(range(9, -1, -1))
    assert {(d.limit, d.retry_after_seconds) for d in decisions} == {(PER_SECOND, 0)}
    assert decisions[0].reset_at == float(int(time.time()) + 1)

    refused = await limiter.check("key:a", [PER_SECOND])
    now = time.time()
    assert (refused.allowed, refused.limit, refused.remaining) == (False, PER_SECOND, 0)
    # The 10 of this second weigh on the next one, until 10 % of it has gone.
    assert refused.reset_at == pytest.approx(int(now) + 1.1)
    # Rounded up, so that a client that waits this long is let in.
    assert refused.retry_after_seconds in {1, 2}
    assert refused.retry_after_seconds >= refused.reset_at - now - 0.01
    # Other subjects have their own counts.
    assert (await limiter.check("key:b", [PER_SECOND])).allowed

    await asyncio.sleep(refused.reset_at - time.time() + 0.02)
    assert (await limiter.check("key:a", [PER_SECOND])).allowed


async def test_a_refused_check_counts_against_no_limit(limiter: SharedLimiter) -> None:
    minute = RateLimit("per-minute", 3, 60)
    day = RateLimit("per-day", 4, 86400)
    both = [minute, day]
    assert [(await limiter.check("key:a", both)).remaining for _ in range(3)] == [2, 1, 0]
    refused = await limiter.check("key:a", both)
    assert (refused.allowed, refused.limit) == (False, minute)
    assert refused.retry_after_seconds >= 1
    # The refusal took nothing from the day: exactly one is left there.
    assert (await limiter.check("key:a", [day])).remaining == 0
    assert (await limiter.check("key:a", [day])).limit == day

    # And the other way round: refused by the day, the minute keeps its allowance.
    for _ in range(4):
        assert (await limiter.check("key:b", [day])).allowed
    assert (await limiter.check("key:b", both)).limit == day
    assert [(await limiter.check("key:b", [minute])).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_cost_takes_several_units(limiter: SharedLimiter) -> None:
    limits = [RateLimit("per-minute", 10, 60)]
    assert (await limiter.check("key:a", limits, cost=4)).remaining == 6
    assert (await limiter.check("key:a", limits, cost=4)).remaining == 2
    too_much = await limiter.check("key:a", limits, cost=3)
    assert (too_much.allowed, too_much.remaining) == (False, 2)
    assert (await limiter.check("key:a", limits, cost=2)).remaining == 0
    # More than the whole limit never fits.
    assert not (await limiter.check("key:b", limits, cost=11)).allowed
    assert (await limiter.check("key:b", limits, cost=10)).allowed


async def test_nonsense_is_refused_before_anything_is_counted(limiter: SharedLimiter) -> None:
    with pytest.raises(ValueError, match="cost"):
        await limiter.check("key:a", [PER_SECOND], cost=0)
    with pytest.raises(ValueError, match="at least one limit"):
        await limiter.check("key:a", [])
    with pytest.raises(ValueError, match="differ"):
        await limiter.check("key:a", [PER_SECOND, RateLimit("per-second", 5, 1)])
    with pytest.raises(ValueError, match="positive rate"):
        await limiter.record_failure("addr:x", 0.0, 3)
    assert (await limiter.check("key:a", [PER_SECOND])).remaining == 9


async def test_failure_buckets(limiter: SharedLimiter) -> None:
    subject = "addr:192.0.2.1"
    assert not await limiter.exhausted(subject, 1.0, 3)
    taken = [await limiter.record_failure(subject, 1.0, 3) for _ in range(4)]
    assert taken == [True, True, True, False]
    assert await limiter.exhausted(subject, 1.0, 3)
    assert await limiter.retry_after(subject, 1.0, 3) == 1
    assert not await limiter.exhausted("addr:192.0.2.2", 1.0, 3)

    slow = "addr:192.0.2.3"
    assert [await limiter.record_failure(slow, 0.1, 2) for _ in range(3)] == [True, True, False]
    assert await limiter.retry_after(slow, 0.1, 2) == 10

    fast = "addr:192.0.2.4"
    assert await limiter.record_failure(fast, 20.0, 1)
    assert not await limiter.record_failure(fast, 20.0, 1)
    await asyncio.sleep(0.06)
    assert not await limiter.exhausted(fast, 20.0, 1)
    assert await limiter.record_failure(fast, 20.0, 1)


def test_rate_limits_are_validated() -> None:
    for bad in [("", 1, 1), ("x", 0, 1), ("x", 1, 0)]:
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit(*bad)


async def test_build_limiter_picks_the_backend() -> None:
    local = build_limiter(None, prefix="keyplane:", timeout_seconds=0.25)
    assert isinstance(local, LocalLimiter)
    assert not local.shared
    shared = build_limiter("redis://127.0.0.1:1/0", prefix="elsewhere:", timeout_seconds=0.1)
    assert isinstance(shared, RedisLimiter)
    assert (shared.shared, shared.prefix, shared.timeout_seconds) == (True, "elsewhere:", 0.1)
    await shared.aclose()
    await local.aclose()


# --- In process -----------------------------------------------------------------------------


class _Clock:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self) -> int:
        return round(self.seconds * 1_000_000_000)


async def test_the_previous_window_weighs_by_what_is_left_of_it() -> None:
    start = 1_700_000_000  # a multiple of 10: a 10-second window begins here
    clock = _Clock(start)
    limiter = LocalLimiter(clock_ns=clock)
    limits = [RateLimit("ten", 10, 10)]
    assert all([(await limiter.check("key:a", limits)).allowed for _ in range(10)])
    refused = await limiter.check("key:a", limits)
    # The next window starts with 10 behind it, which weigh 9 after a tenth of it.
    assert (refused.reset_at, refused.retry_after_seconds) == (start + 11, 11)

    clock.seconds = start + 10
    assert (await limiter.check("key:a", limits)).retry_after_seconds == 1
    clock.seconds = start + 15  # half of the previous 10 still count
    assert [(await limiter.check("key:a", limits)).allowed for _ in range(6)] == [True] * 5 + [
        False
    ]
    clock.seconds = start + 30  # both windows are over
    assert (await limiter.check("key:a", limits)).remaining == 9


async def test_local_memory_is_bounded() -> None:
    limiter = LocalLimiter(max_subjects=10)
    assert (await limiter.check("key:first", ONCE)).allowed
    assert await limiter.record_failure("key:first", 1.0, 1)
    for index in range(100):
        await limiter.check(f"key:{index}", ONCE)
        await limiter.record_failure(f"key:{index}", 1.0, 1)
    assert len(limiter._windows) == len(limiter._buckets) == 10
    # Forgotten: the cost of a bounded memory is a fresh allowance for the oldest subjects.
    assert (await limiter.check("key:first", ONCE)).allowed


# --- Redis ----------------------------------------------------------------------------------


async def test_two_instances_share_one_count(redis_url: str, redis_prefix: str) -> None:
    # Two limiters, two connection pools: what two Keyplane instances have.
    first = RedisLimiter(redis_url, redis_prefix, 5.0)
    second = RedisLimiter(redis_url, redis_prefix, 5.0)
    try:
        limits = [RateLimit("per-minute", 50, 60)]
        decisions = await asyncio.gather(
            *((first, second)[n % 2].check("key:shared", limits) for n in range(200))
        )
        assert sum(d.allowed for d in decisions) == 50
        assert {d.limit for d in decisions if not d.allowed} == {limits[0]}
        assert first.unavailable_total == second.unavailable_total == 0

        assert await first.record_failure("addr:192.0.2.1", 1.0, 1)
        assert await second.exhausted("addr:192.0.2.1", 1.0, 1)
    finally:
        await first.aclose()
        await second.aclose()


async def test_counters_expire(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    limiter = RedisLimiter(redis_url, redis_prefix, 5.0)
    try:
        day = RateLimit("per-day", 10_000, 86_400)
        await limiter.check("key:a", [PER_SECOND, day])
        await limiter.record_failure("addr:192.0.2.1", 0.5, 5)
        await limiter.exhausted("addr:192.0.2.2", 0.5, 5)  # looking writes nothing
    finally:
        await limiter.aclose()
    ttls = {
        key.decode(): redis_client.pttl(key)
        for key in cast(list[bytes], list(redis_client.scan_iter(match=f"{redis_prefix}*")))
    }
    assert set(ttls) == {
        f"{redis_prefix}limit:{{key:a}}:per-second:1",
        f"{redis_prefix}limit:{{key:a}}:per-day:86400",
        f"{redis_prefix}failures:{{addr:192.0.2.1}}",
    }
    # Two windows: by then the count could be neither the current nor the previous one.
    assert 1_000 < ttls[f"{redis_prefix}limit:{{key:a}}:per-second:1"] <= 2_000
    assert 170_000_000 < ttls[f"{redis_prefix}limit:{{key:a}}:per-day:86400"] <= 172_800_000
    # Until the bucket is full again (one token at 0.5/s), and a second more.
    assert 2_000 < ttls[f"{redis_prefix}failures:{{addr:192.0.2.1}}"] <= 3_000


async def test_fails_open_when_nothing_listens(limits_log: _Records) -> None:
    limiter = RedisLimiter(
        "redis://:not-for-the-log@127.0.0.1:1/0", "unused:", 0.25, probe_interval_seconds=0.0
    )
    try:
        for _ in range(5):
            started = time.monotonic()
            decision = await limiter.check("key:a", [PER_SECOND])
            assert time.monotonic() - started < 0.25 + 0.2
            assert (decision.allowed, decision.limit, decision.retry_after_seconds) == (
                True,
                PER_SECOND,
                0,
            )
        assert await limiter.record_failure("addr:192.0.2.1", 1.0, 1)
        assert await limiter.record_failure("addr:192.0.2.1", 1.0, 1)
        assert not await limiter.exhausted("addr:192.0.2.1", 1.0, 1)
        assert await limiter.retry_after("addr:192.0.2.1", 1.0, 1) == 1
    finally:
        await limiter.aclose()
    assert limiter.unavailable_total == 9
    [warning] = limits_log.at(logging.WARNING)
    assert "127.0.0.1:1" in warning
    assert "fail open" in warning
    assert "not-for-the-log" not in warning


async def test_a_silent_redis_costs_at_most_the_timeout(
    redis_url: str, redis_prefix: str, limits_log: _Records
) -> None:
    target = urlsplit(redis_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        limiter = RedisLimiter(
            f"redis://127.0.0.1:{proxy.port}/{target.path.strip('/') or 0}",
            redis_prefix,
            0.25,
            probe_interval_seconds=0.5,
        )
        try:
            assert (await limiter.check("key:a", ONCE)).allowed
            proxy.partition()
            started = time.monotonic()
            assert (await limiter.check("key:a", ONCE)).allowed
            assert 0.2 < time.monotonic() - started < 0.25 + 0.2
            # Then Redis is left alone for the probe interval: no more waiting.
            started = time.monotonic()
            assert (await limiter.check("key:a", ONCE)).allowed
            assert time.monotonic() - started < 0.05
            assert limiter.unavailable_total == 2
            assert len(limits_log.at(logging.WARNING)) == 1

            proxy.heal()
            await asyncio.sleep(0.5)
            refused = await _until_answered(limiter, "key:a", ONCE)
            assert (refused.allowed, refused.limit) == (False, ONCE[0])
            assert len(limits_log.at(logging.INFO)) == 1  # "answers again"
        finally:
            await limiter.aclose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _start_redis(binary: str, port: int, directory: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *[binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)],
        *["--save", "", "--appendonly", "no"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.02)
            continue
        writer.write(b"PING\r\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        if reply == b"+PONG\r\n":
            return process
        await asyncio.sleep(0.02)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def test_recovers_when_redis_comes_back(tmp_path: Path, limits_log: _Records) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed: the restart test starts its own")
    port = _free_port()
    server = await _start_redis(binary, port, tmp_path)
    limiter = RedisLimiter(
        f"redis://127.0.0.1:{port}/0", "recovery:", 0.25, probe_interval_seconds=0.0
    )
    try:
        assert (await limiter.check("key:a", ONCE)).allowed
        assert not (await limiter.check("key:a", ONCE)).allowed

        await _stop(server)  # kill -9
        assert (await limiter.check("key:a", ONCE)).allowed
        assert limiter.unavailable_total == 1
        assert len(limits_log.at(logging.WARNING)) == 1

        server = await _start_redis(binary, port, tmp_path)
        # A fresh server, without persistence: the count starts again, and applies again.
        assert (await _until_answered(limiter, "key:b", ONCE)).allowed
        refused = await limiter.check("key:b", ONCE)
        assert (refused.allowed, refused.limit) == (False, ONCE[0])
    finally:
        await limiter.aclose()
        await _stop(server)
