"""Rate limits that hold across every Keyplane instance, kept in Redis, with an in-process
fallback for a single instance.

The algorithm is the sliding-window approximation (Cloudflare's, Unkey's). Windows are
aligned to multiples of ``window_seconds`` from the Unix epoch; a limit keeps the count of
the current window and of the one before it, and a check estimates the requests of the
last ``window_seconds`` as::

    previous * (1 - elapsed fraction of the current window) + current

It was chosen over plain fixed windows because a fixed window lets a client spend its
whole allowance twice in a row across a boundary (10/s becomes 20 within a few
milliseconds); the estimate smooths that out at the cost of two integers per limit, while
a true sliding log would cost one entry per request.

One check covers several limits (per second, per day, ...) and is all or nothing: every
limit is read first and only when none would be exceeded are all of them incremented. In
Redis this is one Lua script, so one round trip and atomic against every other instance;
each limit is one hash (``w`` window index, ``c`` its count, ``p`` the previous window's
count) that expires two windows after its last increment, when it could no longer count.
Keys look like ``<prefix>limit:{<subject>}:<name>:<window>``; the braces are a Redis
Cluster hash tag, so all the keys of one check live in one slot.

The script reads the time from Redis (``TIME``), not from the instance that calls it:
several instances share the counts, so they must share the clock that decides which
window a request falls in, and Redis's is the one clock they all see. (Redis 5 and later
replicate scripts by their effects, so ``TIME`` before a write is allowed.)

The same module keeps token buckets of failed authentications per subject, with the
semantics of :class:`keyplane.kit.rate_limit.FailureLimiter`, so that limiter can move
onto Redis: ``record_failure`` takes a token, ``exhausted`` and ``retry_after`` look.

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
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_SECONDS",
    "LimitDecision",
    "LocalLimiter",
    "RateLimit",
    "RedisLimiter",
    "SharedLimiter",
    "build_limiter",
]

logger = logging.getLogger("keyplane.limits")

DEFAULT_PREFIX = "keyplane:"
DEFAULT_TIMEOUT_SECONDS = 0.25
_MICROSECONDS = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` units of cost in any ``window_seconds``, e.g. ("per-second", 10, 1)."""

    name: str
    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate limit needs a name")
        if self.limit < 1 or self.window_seconds < 1:
            raise ValueError(f"rate limit {self.name!r}: limit and window must be at least 1")


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The answer to one check.

    ``limit`` is the limit that refused, or when allowed the tightest one (the one
    ``remaining`` and ``reset_at`` describe). ``remaining`` is the smallest
    allowance left across the limits, after this check's cost when allowed. ``reset_at``
    (Unix seconds) is, when refused, the moment this request would be admitted if nothing
    else were counted meanwhile (the limit that makes it wait longest decides), and when
    allowed, the end of the current window of the tightest limit. ``retry_after_seconds``
    is that wait rounded up, at least 1, when refused; 0 when allowed.
    """

    allowed: bool
    limit: RateLimit | None
    remaining: int
    reset_at: float
    retry_after_seconds: int


class SharedLimiter(Protocol):
    """Rate limits and failure buckets per subject ("key:<uid>", "addr:<ip>")."""

    unavailable_total: int
    """Answers given without the shared store (failed open), for a metric."""

    @property
    def shared(self) -> bool:
        """True when the counts are shared by every instance."""
        ...

    async def check(
        self, subject: str, limits: Sequence[RateLimit], cost: int = 1
    ) -> LimitDecision: ...

    async def record_failure(self, subject: str, rate_per_second: float, burst: int) -> bool:
        """Takes a token; False when there was none left (the subject is over its limit)."""
        ...

    async def exhausted(self, subject: str, rate_per_second: float, burst: int) -> bool: ...

    async def retry_after(self, subject: str, rate_per_second: float, burst: int) -> int: ...

    async def note_refusal(self, subject: str) -> None:
        """Counts a refusal by a rate limit, for the console (by the hour, kept a day)."""
        ...

    async def recent_refusals(self, subject: str) -> int:
        """Refusals noted in the last 24 hours (0 when the store cannot answer)."""
        ...

    async def aclose(self) -> None: ...


REFUSAL_HOURS = 24


def _refusal_hours(now: float) -> list[int]:
    hour = int(now // 3600)
    return [hour - back for back in range(REFUSAL_HOURS)]


def build_limiter(redis_url: str | None, *, prefix: str, timeout_seconds: float) -> SharedLimiter:
    """Redis when a URL is configured, else limits per process."""
    if redis_url:
        return RedisLimiter(redis_url, prefix=prefix, timeout_seconds=timeout_seconds)
    return LocalLimiter()


# --- The arithmetic, shared by both backends (the Lua script mirrors _estimate) -----------


def _validate(limits: Sequence[RateLimit], cost: int) -> None:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an integer of at least 1, not {cost!r}")
    if not limits:
        raise ValueError("a check needs at least one limit")
    if len({(limit.name, limit.window_seconds) for limit in limits}) != len(limits):
        # Two entries would be one counter, read twice and incremented twice.
        raise ValueError("the limits of one check must differ in name or window")


def _validate_bucket(rate_per_second: float, burst: int) -> None:
    if not rate_per_second > 0 or burst < 1:
        raise ValueError("a failure bucket needs a positive rate and a burst of at least 1")


def _estimate(limit: RateLimit, current: int, previous: int, sec: int, usec: int) -> float:
    """Requests counted in the last window_seconds; the same operations, in the same order,
    as the Lua script, so both backends agree to the last bit."""
    window = limit.window_seconds
    index = sec // window
    elapsed = ((sec - index * window) + usec / _MICROSECONDS) / window
    return previous * (1 - elapsed) + current


def _admitted_at(limit: RateLimit, current: int, previous: int, sec: int, cost: int) -> float:
    """When a refused request would fit, if nothing else were counted meanwhile."""
    window = limit.window_seconds
    start = (sec // window) * window
    room = limit.limit - cost - current
    if room >= 0 and previous > 0:
        # Within this window, once the previous window's weight has decayed enough.
        return start + (1 - room / previous) * window
    room = limit.limit - cost
    if room < 0:
        # More than the limit in one go never fits; say when the counts are gone.
        return start + 2 * window
    if current <= room:
        return start + window
    # Next window: the current count becomes the previous one and decays in turn.
    return start + window + (1 - room / current) * window


def _decide(
    limits: Sequence[RateLimit],
    counts: Sequence[tuple[int, int]],
    over: Sequence[bool],
    sec: int,
    usec: int,
    cost: int,
) -> LimitDecision:
    now = sec + usec / _MICROSECONDS
    allowed = not any(over)
    added = cost if allowed else 0
    remaining = [
        max(0, math.floor(limit.limit - _estimate(limit, cur, prev, sec, usec) - added))
        for limit, (cur, prev) in zip(limits, counts, strict=True)
    ]
    if allowed:
        tightest = min(range(len(limits)), key=lambda i: remaining[i])
        window = limits[tightest].window_seconds
        return LimitDecision(
            allowed=True,
            limit=limits[tightest],
            remaining=remaining[tightest],
            reset_at=float((sec // window + 1) * window),
            retry_after_seconds=0,
        )
    waits = {
        i: _admitted_at(limits[i], counts[i][0], counts[i][1], sec, cost)
        for i in range(len(limits))
        if over[i]
    }
    refusing = max(waits, key=lambda i: waits[i])
    reset_at = max(now, waits[refusing])
    return LimitDecision(
        allowed=False,
        limit=limits[refusing],
        remaining=min(remaining),
        reset_at=reset_at,
        retry_after_seconds=max(1, math.ceil(reset_at - now)),
    )


def _bucket_retry_after(tokens: float, rate_per_second: float) -> int:
    return max(1, math.ceil((1 - tokens) / rate_per_second))


# --- In process ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    index: int
    current: int
    previous: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LocalLimiter:
    """The same algorithm in this process's memory: for a single instance, or tests.

    Memory is bounded: past ``max_subjects`` subjects the least recently seen is
    forgotten (its counts start again from zero). ``check`` never awaits, so it is atomic
    under asyncio without a lock.
    """

    def __init__(
        self, *, max_subjects: int = 100_000, clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.unavailable_total = 0  # nothing to be unavailable: for the same metric
        self.max_subjects = max_subjects
        self._clock_ns = clock_ns
        self._windows: OrderedDict[str, dict[tuple[str, int], _Window]] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._refusals: OrderedDict[str, dict[int, int]] = OrderedDict()

    @property
    def shared(self) -> bool:
        return False

    def _now(self) -> tuple[int, int]:
        sec, nsec = divmod(self._clock_ns(), 1_000_000_000)
        return sec, nsec // 1000

    async def check(
        self, subject: str, limits: Sequence[RateLimit], cost: int = 1
    ) -> LimitDecision:
        _validate(limits, cost)
        sec, usec = self._now()
        windows = _touch(self._windows, subject, dict, self.max_subjects)
        counts: list[tuple[int, int]] = []
        over: list[bool] = []
        for limit in limits:
            index = sec // limit.window_seconds
            window = windows.get((limit.name, limit.window_seconds))
            current = previous = 0
            if window is not None and window.index == index:
                current, previous = window.current, window.previous
            elif window is not None and window.index == index - 1:
                previous = window.current
            counts.append((current, previous))
            over.append(_estimate(limit, current, previous, sec, usec) + cost > limit.limit)
        if not any(over):
            for limit, (current, previous) in zip(limits, counts, strict=True):
                index = sec // limit.window_seconds
                windows[(limit.name, limit.window_seconds)] = _Window(
                    index, current + cost, previous
                )
        return _decide(limits, counts, over, sec, usec, cost)

    def _bucket(self, subject: str, rate_per_second: float, burst: int) -> _Bucket:
        _validate_bucket(rate_per_second, burst)
        sec, usec = self._now()
        now = sec + usec / _MICROSECONDS
        bucket = self._buckets.get(subject)
        if bucket is None:
            bucket = _touch(
                self._buckets, subject, lambda: _Bucket(float(burst), now), self.max_subjects
            )
        else:
            self._buckets.move_to_end(subject)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate_per_second)
            bucket.updated = now
        return bucket

    async def record_failure(self, subject: str, rate_per_second: float, burst: int) -> bool:
        bucket = self._bucket(subject, rate_per_second, burst)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    async def exhausted(self, subject: str, rate_per_second: float, burst: int) -> bool:
        return self._bucket(subject, rate_per_second, burst).tokens < 1

    async def retry_after(self, subject: str, rate_per_second: float, burst: int) -> int:
        tokens = self._bucket(subject, rate_per_second, burst).tokens
        return _bucket_retry_after(tokens, rate_per_second)

    async def note_refusal(self, subject: str) -> None:
        hours = _touch(self._refusals, subject, dict, self.max_subjects)
        hour = _refusal_hours(self._clock_ns() / 1e9)[0]
        hours[hour] = hours.get(hour, 0) + 1
        for old in [h for h in hours if h <= hour - REFUSAL_HOURS]:
            del hours[old]

    async def recent_refusals(self, subject: str) -> int:
        hours = self._refusals.get(subject, {})
        return sum(hours.get(hour, 0) for hour in _refusal_hours(self._clock_ns() / 1e9))

    async def aclose(self) -> None:
        self._windows.clear()
        self._buckets.clear()
        self._refusals.clear()


def _touch(store: OrderedDict[str, T], subject: str, new: Callable[[], T], cap: int) -> T:
    """The subject's entry, created if need be, marked most recently used; the least
    recently used entries go beyond ``cap`` (a flood of addresses cannot grow memory)."""
    entry = store.get(subject)
    if entry is None:
        entry = store[subject] = new()
        while len(store) > cap:
            store.popitem(last=False)
    else:
        store.move_to_end(subject)
    return entry


# --- Redis --------------------------------------------------------------------------------

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
