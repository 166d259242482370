"""The rate limits of ``keyplane.kit.shared_limits`` kept in Redis, shared by every
instance pointed at the same Redis (and prefix).

The algorithm and its arithmetic: ``keyplane.kit.shared_limits_core``. A check is all or
nothing across its limits; in Redis this is one Lua script, so one round trip and atomic
against every other instance; each limit is one hash (``w`` window index, ``c`` its count,
``p`` the previous window's count) that expires two windows after its last increment, when
it could no longer count. Keys look like ``<prefix>limit:{<subject>}:<name>:<window>``; the
braces are a Redis Cluster hash tag, so all the keys of one check live in one slot.

The script reads the time from Redis (``TIME``), not from the instance that calls it:
several instances share the counts, so they must share the clock that decides which
window a request falls in, and Redis's is the one clock they all see. (Redis 5 and later
replicate scripts by their effects, so ``TIME`` before a write is allowed.)

When Redis is unreachable or slow, :class:`RedisLimiter` fails open: every call is
bounded by ``timeout_seconds``, a failed call answers as if there were no limit, the
failure is counted in ``unavailable_total`` and logged on ``keyplane.limits`` at most
once per ``warn_interval_seconds``. A refused connection is seen at once, but a host that
drops packets costs the whole timeout, so after a failure Redis is left alone for
``probe_interval_seconds`` (answers fail open without waiting) before it is tried again;
the client reconnects by itself once Redis answers. (A check that timed out may still
have reached Redis and been counted there: failing open never counts against anyone, but
a slow Redis can count a request the caller was told nothing about.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from keyplane.kit.shared_limits_core import (
    REFUSAL_HOURS,
    LimitDecision,
    RateLimit,
    _bucket_retry_after,
    _decide,
    _refusal_hours,
    _validate,
    _validate_bucket,
)

logger = logging.getLogger("keyplane.limits")

DEFAULT_PREFIX = "keyplane:"
DEFAULT_TIMEOUT_SECONDS = 0.25


# KEYS[i]: the hash of limit i. ARGV[1]: the cost; ARGV[2i], ARGV[2i+1]: limit i's maximum
# and window in seconds. Replies {sec, usec, then per limit: over (0/1), current, previous},
# the counts as they were before this check. Lua numbers become integer replies, which is
# why nothing fractional is returned: the caller redoes the arithmetic from the counts.
_WINDOW_SCRIPT = """
local now = redis.call('TIME')
local sec = tonumber(now[1])
local usec = tonumber(now[2])
local cost = tonumber(ARGV[1])
local seen = {}
local refused = false
for i = 1, #KEYS do
  local maximum = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local index = math.floor(sec / window)
  local elapsed = ((sec - index * window) + usec / 1000000) / window
  local stored = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local stored_index = tonumber(stored[1])
  local current, previous = 0, 0
  if stored_index == index then
    current = tonumber(stored[2]) or 0
    previous = tonumber(stored[3]) or 0
  elseif stored_index == index - 1 then
    previous = tonumber(stored[2]) or 0
  end
  local over = 0
  if previous * (1 - elapsed) + current + cost > maximum then
    over = 1
    refused = true
  end
  seen[i] = {index, current, previous, window, over}
end
local reply = {sec, usec}
for i = 1, #KEYS do
  local s = seen[i]
  if not refused then
    redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2] + cost, 'p', s[3])
    redis.call('EXPIRE', KEYS[i], 2 * s[4])
  end
  reply[#reply + 1] = s[5]
  reply[#reply + 1] = s[2]
  reply[#reply + 1] = s[3]
end
return reply
"""

# KEYS[1]: the bucket's hash (t: tokens, u: updated, Unix seconds). ARGV: rate per second,
# burst, and 1 to take a token or 0 to look. Replies {taken (0/1), tokens left}. The key
# expires when the bucket would be full again, when it is the same as no key at all.
_BUCKET_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local stored = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = burst
if stored[1] and stored[2] then
  local elapsed = math.max(0, t - tonumber(stored[2]))
  tokens = math.min(burst, tonumber(stored[1]) + elapsed * rate)
end
local taken = 0
if ARGV[3] == '1' and tokens >= 1 then
  tokens = tokens - 1
  taken = 1
  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'u', string.format('%.6f', t))
  local ttl = math.min(math.ceil((burst - tokens) / rate * 1000) + 1000, 1000000000000)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {taken, string.format('%.17g', tokens)}
"""


# A script call waiting for the next pipeline: the script, its keys and arguments, and
# where its reply goes.
_Call = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]


class RedisLimiter:
    """Limits shared by every instance pointed at the same Redis (and prefix).

    Never raises for Redis trouble: see the module docstring for how it fails open.
    """

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        *,
        max_connections: int = 50,
        probe_interval_seconds: float = 1.0,
        warn_interval_seconds: float = 30.0,
    ) -> None:
        self.prefix = prefix
        self.timeout_seconds = timeout_seconds
        self.probe_interval_seconds = probe_interval_seconds
        self.warn_interval_seconds = warn_interval_seconds
        self.unavailable_total = 0
        # Bounded everywhere: connecting, each reply, waiting for a free pooled connection
        # (a burst queues for one of max_connections instead of opening thousands), and
        # one retry, so a pooled connection that died with a restarted Redis is replaced
        # within the same call; asyncio.timeout below bounds the call as a whole.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = Redis.from_pool(pool)
        self._window_script = self._redis.register_script(_WINDOW_SCRIPT)
        self._bucket_script = self._redis.register_script(_BUCKET_SCRIPT)
        self._note_script = self._redis.register_script(
            "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], ARGV[1]) return n"
        )
        self._sum_script = self._redis.register_script(
            "local n = 0 for _, key in ipairs(KEYS) do "
            "n = n + (tonumber(redis.call('GET', key)) or 0) end return n"
        )
        # Host and port only: the URL may carry a password.
        parts = urlsplit(url)
        self._target = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._resting_until = -math.inf
        self._warned_at = -math.inf
        self._failing_since: float | None = None
        self._failed_answers = 0
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        return True

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any | None:
        """The script's reply, or None when Redis could not answer in time."""
        if time.monotonic() < self._resting_until:
            self._unavailable(None)
            return None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                reply = await self._batched(script, keys, args)
        except (RedisError, OSError, TimeoutError) as error:
            self._unavailable(error)
            return None
        if self._failing_since is not None:
            logger.info(
                "Redis at %s answers again after %.1f s; %d rate-limit answers failed open",
                self._target,
                time.monotonic() - self._failing_since,
                self._failed_answers,
            )
            self._failing_since = None
            self._failed_answers = 0
        return reply

    async def _batched(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """One script call, sent with every other call made in the same turn of the event
        loop in one pipeline: one write and one read for all of them. The client's own
        work per command (about 50-100 us of CPU in redis-py) is what limits a rate-limited
        verify, and a pipeline of several costs little more than one."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, answer))
        if len(self._pending) == 1:
            loop.call_soon(self._send_pending)
        return await answer

    def _send_pending(self) -> None:
        calls, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            replies = await self._pipeline(calls)
        except NoScriptError:
            # A Redis restarted (or flushed) since the scripts were loaded: load, once.
            try:
                for script in {id(call[0]): call[0] for call in calls}.values():
                    await self._redis.script_load(script.script)
                replies = await self._pipeline(calls)
            except BaseException as error:
                self._fail(calls, error)
                return
        except BaseException as error:
            self._fail(calls, error)
            return
        for (_script, _keys, _args, answer), reply in zip(calls, replies, strict=True):
            if not answer.done():
                answer.set_result(reply)

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            script, keys, args, _answer = calls[0]
            return [await self._redis.evalsha(script.sha, len(keys), *keys, *args)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _answer in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute()
            return replies

    @staticmethod
    def _fail(calls: list[_Call], error: BaseException) -> None:
        for *_call, answer in calls:
            if not answer.done():
                answer.set_exception(
                    error if isinstance(error, Exception) else RedisError("cancelled")
                )

    def _unavailable(self, error: BaseException | None) -> None:
        now = time.monotonic()
        self.unavailable_total += 1
        self._failed_answers += 1
        if self._failing_since is None:
            self._failing_since = now
        if error is not None:
            self._resting_until = now + self.probe_interval_seconds
            if now - self._warned_at >= self.warn_interval_seconds:
                # One line per outage (per interval), not one per request.
                self._warned_at = now
                logger.warning(
                    "Redis at %s is unavailable (%s: %s); rate limits fail open until it "
                    "answers (%d answers so far)",
                    self._target,
                    type(error).__name__,
                    str(error) or "timed out",
                    self._failed_answers,
                )

    async def check(
        self, subject: str, limits: Sequence[RateLimit], cost: int = 1
    ) -> LimitDecision:
        _validate(limits, cost)
        keys = [
            f"{self.prefix}limit:{{{subject}}}:{limit.name}:{limit.window_seconds}"
            for limit in limits
        ]
        args: list[Any] = [cost]
        for limit in limits:
            args += [limit.limit, limit.window_seconds]
        reply = await self._run(self._window_script, keys, args)
        if reply is None:
            return _failed_open(limits, cost)
        sec, usec = int(reply[0]), int(reply[1])
        per_limit = [int(value) for value in reply[2:]]
        over = [bool(value) for value in per_limit[0::3]]
        counts = list(zip(per_limit[1::3], per_limit[2::3], strict=True))
        return _decide(limits, counts, over, sec, usec, cost)

    async def _bucket(
        self, subject: str, rate_per_second: float, burst: int, *, take: bool
    ) -> tuple[bool, float] | None:
        _validate_bucket(rate_per_second, burst)
        key = f"{self.prefix}failures:{{{subject}}}"
        reply = await self._run(
            self._bucket_script, [key], [repr(float(rate_per_second)), burst, int(take)]
        )
        if reply is None:
            return None
        return bool(reply[0]), float(reply[1].decode())

    async def record_failure(self, subject: str, rate_per_second: float, burst: int) -> bool:
        answer = await self._bucket(subject, rate_per_second, burst, take=True)
        return True if answer is None else answer[0]

    async def exhausted(self, subject: str, rate_per_second: float, burst: int) -> bool:
        answer = await self._bucket(subject, rate_per_second, burst, take=False)
        return False if answer is None else answer[1] < 1

    async def retry_after(self, subject: str, rate_per_second: float, burst: int) -> int:
        answer = await self._bucket(subject, rate_per_second, burst, take=False)
        return 1 if answer is None else _bucket_retry_after(answer[1], rate_per_second)

    async def note_refusal(self, subject: str) -> None:
        hour = _refusal_hours(time.time())[0]
        key = f"{self.prefix}refusals:{{{subject}}}:{hour}"
        await self._run(self._note_script, [key], [REFUSAL_HOURS * 3600 + 3600])

    async def recent_refusals(self, subject: str) -> int:
        keys = [
            f"{self.prefix}refusals:{{{subject}}}:{hour}" for hour in _refusal_hours(time.time())
        ]
        reply = await self._run(self._sum_script, keys, [])
        return 0 if reply is None else int(reply)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _failed_open(limits: Sequence[RateLimit], cost: int) -> LimitDecision:
    """Allowed, as if the subject had used nothing: what is counted is unknown."""
    tightest = min(limits, key=lambda limit: limit.limit)
    window = tightest.window_seconds
    return LimitDecision(
        allowed=True,
        limit=tightest,
        remaining=max(0, tightest.limit - cost),
        reset_at=float((int(time.time()) // window + 1) * window),
        retry_after_seconds=0,
    )
