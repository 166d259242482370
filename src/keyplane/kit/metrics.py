"""Prometheus metrics: counted where things happen, exposed by ``GET /metrics``.

Every metric is ``keyplane_*``; labels take a few fixed values each (no paths, no uids)::

    keyplane_authentications_total{method, outcome}  credentials checked by the API:
        method apiKey|session; outcome ok, or the refusal's code (ApiKeyRevoked,
        TokenExpired, TooManyAuthFailures, DatabaseUnreachable, ...)
    keyplane_verifications_total{code}               POST /v1/apiKeys/verify answers:
        VALID, REVOKED, EXPIRED, ROTATED, NOT_FOUND, USER_INACTIVE, MALFORMED, FORBIDDEN_ADDRESS,
        INSUFFICIENT_PERMISSIONS, RATE_LIMITED, USAGE_EXCEEDED
    keyplane_request_duration_seconds{kind}          histogram, every HTTP request: kind
        verify, users_info, auth, api, probe, static or console (everything else)
    keyplane_auth_failure_refusals_total{kind}       429s: a client over its failed-
        authentication limit, or a locked account
    keyplane_key_cache_hits_total                    key lookups the cache answered
    keyplane_key_cache_misses_total                  ... it did not (off, absent, too old)
    keyplane_key_cache_negative_hits_total           misses answered by the cache of
        unknown keys (no database read either)
    keyplane_key_cache_entries                       gauge: cached keys
    keyplane_key_cache_negative_entries              gauge: remembered unknown keys
    keyplane_key_cache_enabled                       gauge: workers whose cache is on
        (off while the invalidation channel is down)
    keyplane_invalidations_applied_total             invalidations (a key, a user's keys,
        everything) applied to a key cache, from this worker's commits or the channel
    keyplane_invalidation_confirmation_seconds{outcome}  histogram: how long a change
        waited for the other workers to confirm it, and how the wait ended (reported by
        ``kit.invalidation.Confirmations`` through ``Metrics.observe_confirmation_wait``)
    keyplane_db_pool_checked_out_connections         gauge: pooled connections in use
    keyplane_rate_limit_store_unavailable_total      rate-limit checks answered without
        Redis (unreachable or slow): let through, as rate limits fail open

    keyplane_invalidation_delay_seconds              histogram: from a change's
        publication (another worker's, before its commit) to this worker applying it
        through the channel (NOTIFY on PostgreSQL, the polled table on SQLite); across
        machines it is as good as their clocks agree

One process or several. ``keyplane serve --workers N`` runs N processes; it gives them a
fresh ``PROMETHEUS_MULTIPROC_DIR`` (and removes it at exit), in which prometheus-client's
multiprocess mode keeps each process's values in files. A scrape, answered by whichever
worker the connection reaches, reads every worker's files (``MultiProcessCollector``), so
counters are the sum over all workers, including workers that have since exited. Gauges
are summed over live workers only: each worker writes its own every second and at each
scrape it answers, and the files of a worker that is gone are dropped. Without that
variable (one process, or an app in a test) each app keeps its own registry, never the
global one, so that any number of apps can live in one process.

Values read from elsewhere (the cache's counters and sizes, the pool) are taken when a
scrape comes, not on the hot path: the cache keeps plain integers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import Scope

from keyplane.kit.errors import KeyplaneError, database_failure

if TYPE_CHECKING:
    from starlette.requests import Request

logger = logging.getLogger("keyplane.metrics")

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# How stale another worker's gauges may be in a scrape.
GAUGE_REFRESH_SECONDS = 1.0
# From a cache hit (well under a millisecond) to a database wait at its bound.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
CONFIRMATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
ROUTE_KINDS = ("verify", "users_info", "auth", "api", "probe", "static", "console")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def route_kind(path: str) -> str:
    """A request's kind for the latency histogram: a handful of values, never the path."""
    if path.startswith("/v1/"):
        if path == "/v1/apiKeys/verify":
            return "verify"
        if path == "/v1/users/info":
            return "users_info"
        return "auth" if path.startswith("/v1/auth/") else "api"
    if path in _PROBES:
        return "probe"
    return "static" if path.startswith("/static/") else "console"


class CacheCounts(Protocol):
    """What a scrape reads from the key cache (``keyplane.auth.key_cache.KeyCache``)."""

    hits: int
    misses: int
    negative_hits: int
    invalidations_applied: int
    enabled: bool

    def __len__(self) -> int: ...

    @property
    def negative_size(self) -> int: ...


class Sources(Protocol):
    """What a scrape reads from the running app (``keyplane.runtime.Runtime``)."""

    @property
    def key_cache(self) -> CacheCounts: ...

    @property
    def engine(self) -> Any: ...

    @property
    def limiter(self) -> Any: ...


class Metrics:
    """One app's metrics. ``multiprocess_dir``: the shared directory of multiprocess mode,
    or None for a registry of this app's own."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        # In multiprocess mode values live in the shared files, and a scrape reads those:
        # registering the metrics too would export this worker's values twice.
        self.registry = CollectorRegistry() if multiprocess_dir is None else None
        registry = self.registry
        self.authentications = Counter(
            "keyplane_authentications",
            "Credentials checked, by method and outcome (ok or the refusal's code).",
            ["method", "outcome"],
            registry=registry,
        )
        self.verifications = Counter(
            "keyplane_verifications",
            "Answers of POST /v1/apiKeys/verify, by code.",
            ["code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "keyplane_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by kind of route.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.auth_failure_refusals = Counter(
            "keyplane_auth_failure_refusals",
            "Requests refused with 429 for too many failed authentications.",
            ["kind"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "keyplane_key_cache_hits", "Key lookups answered by the key cache.", registry=registry
        )
        self.cache_misses = Counter(
            "keyplane_key_cache_misses",
            "Key lookups the key cache could not answer (off, not cached, or too old).",
            registry=registry,
        )
        self.cache_negative_hits = Counter(
            "keyplane_key_cache_negative_hits",
            "Misses answered by the cache of unknown keys, without a database read.",
            registry=registry,
        )
        self.invalidations_applied = Counter(
            "keyplane_invalidations_applied",
            "Invalidations applied to a key cache (a key, a user's keys, or everything).",
            registry=registry,
        )
        self.confirmation_wait = Histogram(
            "keyplane_invalidation_confirmation_seconds",
            "How long a change waited for the other instances to confirm its invalidation.",
            ["outcome"],
            buckets=CONFIRMATION_BUCKETS,
            registry=registry,
        )
        self.invalidation_delay = Histogram(
            "keyplane_invalidation_delay_seconds",
            "From a change's publication to this worker applying its invalidation.",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.cache_entries = Gauge(
            "keyplane_key_cache_entries",
            "Keys in the key caches.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.cache_negative_entries = Gauge(
            "keyplane_key_cache_negative_entries",
            "Unknown keys remembered by the key caches.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.cache_enabled = Gauge(
            "keyplane_key_cache_enabled",
            "Workers whose key cache is on (it is off while the invalidation channel is down).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.pool_checked_out = Gauge(
            "keyplane_db_pool_checked_out_connections",
            "Pooled database connections in use.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.rate_limit_store_unavailable = Counter(
            "keyplane_rate_limit_store_unavailable",
            "Rate-limit checks answered without the shared store (Redis unreachable or "
            "slow): the request was let through (rate limits fail open).",
            registry=registry,
        )
        # Children made once: labels() on every request would look them up under a lock.
        self._request_duration = {kind: self.request_duration.labels(kind) for kind in ROUTE_KINDS}
        self._authentications: dict[tuple[str, str], Counter] = {}
        self._verifications: dict[str, Counter] = {}
        # The cache's integers as last added to the counters above.
        self._synced: dict[str, int] = {}

    # The hot path: a dictionary lookup and a lock-protected addition each.

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        kind = route_kind(path)
        self._request_duration[kind].observe(seconds)
        if status == 429:
            self.auth_failure_refusals.labels(kind).inc()

    def observe_authentication(self, method: str, outcome: str) -> None:
        child = self._authentications.get((method, outcome))
        if child is None:
            child = self._authentications.setdefault(
                (method, outcome), self.authentications.labels(method, outcome)
            )
        child.inc()

    def observe_verification(self, code: str) -> None:
        child = self._verifications.get(code)
        if child is None:
            child = self._verifications.setdefault(code, self.verifications.labels(code))
        child.inc()

    def observe_confirmation_wait(self, seconds: float, outcome: str = "confirmed") -> None:
        """For the revocation confirmation across instances: how long a change waited,
        and how the wait ended (``confirmed``, or e.g. ``timed_out``)."""
        self.confirmation_wait.labels(outcome).observe(seconds)

    def observe_invalidation_delay(self, seconds: float) -> None:
        self.invalidation_delay.observe(seconds)

    # Scrape time.

    def update(self, sources: Sources | None) -> None:
        """Takes what lives elsewhere (the cache, the pool) into this process's metrics."""
        if sources is None:
            return
        cache = sources.key_cache
        for counter, name in (
            (self.cache_hits, "hits"),
            (self.cache_misses, "misses"),
            (self.cache_negative_hits, "negative_hits"),
            (self.invalidations_applied, "invalidations_applied"),
        ):
            current = int(getattr(cache, name))
            added = current - self._synced.get(name, 0)
            if added > 0:
                counter.inc(added)
            self._synced[name] = current
        unavailable = int(getattr(sources.limiter, "unavailable_total", 0))
        added = unavailable - self._synced.get("limiter_unavailable", 0)
        if added > 0:
            self.rate_limit_store_unavailable.inc(added)
        self._synced["limiter_unavailable"] = unavailable
        self.cache_entries.set(len(cache))
        self.cache_negative_entries.set(cache.negative_size)
        self.cache_enabled.set(1 if cache.enabled else 0)
        checkedout = getattr(sources.engine.pool, "checkedout", None)
        self.pool_checked_out.set(checkedout() if callable(checkedout) else 0)

    def render(self) -> bytes:
        """The Prometheus text format: this app's registry, or every worker's files."""
        if self.registry is not None:
            return generate_latest(self.registry)
        assert self.multiprocess_dir is not None
        self._forget_dead_workers()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    async def keep_current(self, sources: Sources) -> None:
        """The lifespan task of each worker in multiprocess mode: its gauges stay at most
        a second old for scrapes that other workers answer; at exit, they are dropped."""
        if self.multiprocess_dir is None:
            return
        try:
            while True:
                self.update(sources)
                await asyncio.sleep(GAUGE_REFRESH_SECONDS)
        finally:
            self.update(sources)
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def _forget_dead_workers(self) -> None:
        # A worker killed outright never dropped its gauges itself; its counters stay.
        assert self.multiprocess_dir is not None
        for pid in _pids_with_live_gauges(Path(self.multiprocess_dir)):
            if not _alive(pid):
                mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]


def _pids_with_live_gauges(directory: Path) -> set[int]:
    found = (_LIVE_GAUGE_FILE.fullmatch(path.name) for path in directory.iterdir())
    return {int(match.group(1)) for match in found if match}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_from_environment() -> Metrics:
    """Multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` names a directory (as
    ``keyplane serve --workers N`` sets it for its workers), else a registry of its own."""
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory and Path(directory).is_dir():
        return Metrics(directory)
    return Metrics()


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """For ``keyplane serve --workers N``: a fresh directory for this run, named in the
    environment the workers inherit (set before they start, and before any of them imports
    prometheus-client, which reads it once), and removed with its files at the end."""
    directory = tempfile.mkdtemp(prefix="keyplane-metrics-")
    previous = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        else:
            os.environ[MULTIPROCESS_DIR_VARIABLE] = previous
        shutil.rmtree(directory, ignore_errors=True)


def metrics_of(scope: Scope) -> Metrics | None:
    """The metrics of the app serving this request (None before the app is reached)."""
    app = scope.get("app")
    # Keyplane's app keeps them as an attribute too: a State lookup per call costs more.
    metrics = getattr(app, "metrics", None)
    if metrics is None:
        metrics = getattr(getattr(app, "state", None), "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


# The one-line calls at the instrumentation points.


def observe_request(scope: Scope, status: int, started: float) -> None:
    """In the request middleware, once the response is sent (``started``: perf_counter)."""
    metrics = metrics_of(scope)
    if metrics is not None:
        metrics.observe_request(scope["path"], status, time.perf_counter() - started)


def observe_authentication(request: Request, method: str) -> None:
    """In a ``finally`` around a credential check: the exception on its way out, if any,
    is the outcome (its code), else the check succeeded."""
    metrics = metrics_of(request.scope)
    if metrics is not None:
        metrics.observe_authentication(method, _outcome(sys.exc_info()[1]))


def observe_verification(request: Request, code: str) -> None:
    metrics = metrics_of(request.scope)
    if metrics is not None:
        metrics.observe_verification(code)


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    if not isinstance(error, Exception):
        return "Cancelled"
    if isinstance(error, KeyplaneError):
        return error.code
    failure = database_failure(error)
    return failure.code if failure is not None else "InternalError"
