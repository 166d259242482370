"""What one running Keyplane holds for its lifetime; created by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from keyplane.api_keys.last_used import LastUsedRecorder
from keyplane.auth.key_cache import KeyCache
from keyplane.kit.db import create_sessionmaker, is_sqlite, normalise_database_url
from keyplane.kit.invalidation import (
    CONFIRM,
    DELIVER,
    Confirmations,
    Lease,
    Membership,
    PostgresListener,
    SqliteWatcher,
    install_local_delivery,
    new_instance_id,
)
from keyplane.kit.invalidation_feed import InvalidationFeed
from keyplane.kit.keys import SecretHasher
from keyplane.kit.passwords import PasswordHasher
from keyplane.kit.rate_limit import FailureLimiter, Periodic
from keyplane.kit.shared_limits import SharedLimiter, build_limiter
from keyplane.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    # For the hot path's one-statement work (``kit.db.single_read`` and ``single_statement``:
    # key reads, spending credits): on PostgreSQL a pool of its own without the liveness
    # ping, which would double each statement's round trips.
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret_hasher: SecretHasher
    password_hasher: PasswordHasher
    last_used: LastUsedRecorder
    auth_failures: FailureLimiter
    key_cache: KeyCache
    # This worker's lease on its key cache, and the wait of its changes for the other
    # workers' (keyplane.kit.invalidation); both under one id, its cache_instances row.
    instance_id: str
    lease: Lease
    confirmations: Confirmations
    # This worker's open ``GET /v1/apiKeys/invalidations`` streams; every invalidation the
    # worker applies goes through ``invalidation_feed.deliver`` to them and its key cache.
    invalidation_feed: InvalidationFeed
    # When this instance last cleared stale login-failure counts (see auth.throttling).
    login_failure_pruning: Periodic
    # Keys' rate limits: shared through Redis when KEYPLANE_REDIS_URL is set, else per
    # process (kit.shared_limits). The lifespan closes it.
    limiter: SharedLimiter

    @classmethod
    def build(
        cls, settings: Settings, engine: AsyncEngine, read_engine: AsyncEngine | None = None
    ) -> Runtime:
        key_cache = KeyCache(
            max_entries=settings.key_cache_size,
            max_age_seconds=settings.key_cache_max_age_seconds,
            max_negative_entries=settings.key_cache_negative_size,
            negative_ttl_seconds=settings.key_cache_negative_ttl_seconds,
        )
        install_local_delivery()
        instance_id = new_instance_id()
        lease = Lease(settings.invalidation_lease_seconds)
        key_cache.lease_valid = lease.valid
        confirmations = Confirmations(engine, instance_id, settings.invalidation_lease_seconds)
        invalidation_feed = InvalidationFeed(key_cache.apply, key_cache.tenant_of)
        return cls(
            settings=settings,
            engine=engine,
            read_engine=read_engine or engine,
            sessionmaker=create_sessionmaker(
                engine, {DELIVER: invalidation_feed.deliver, CONFIRM: confirmations}
            ),
            secret_hasher=SecretHasher(settings.load_secret_key()),
            password_hasher=PasswordHasher(
                time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
            ),
            last_used=LastUsedRecorder(),
            auth_failures=FailureLimiter(
                settings.auth_failure_rate_per_second,
                settings.auth_failure_burst,
                report_interval=settings.auth_failure_report_interval_seconds,
            ),
            key_cache=key_cache,
            instance_id=instance_id,
            lease=lease,
            confirmations=confirmations,
            invalidation_feed=invalidation_feed,
            login_failure_pruning=Periodic(60.0),
            limiter=build_limiter(
                settings.redis_url,
                prefix=settings.redis_key_prefix,
                timeout_seconds=settings.redis_timeout_seconds,
            ),
        )


def invalidation_listener(runtime: Runtime) -> PostgresListener | SqliteWatcher:
    """The background task that keeps this worker's key cache in step with the others."""
    settings, cache, feed = runtime.settings, runtime.key_cache, runtime.invalidation_feed
    url = normalise_database_url(settings.resolved_database_url)

    def set_healthy(healthy: bool) -> None:
        cache.channel_healthy = healthy
        cache.set_enabled(healthy and settings.key_cache_enabled)
        # Feeds that may miss invalidations from now on end (``resync``, then closed).
        feed.set_healthy(healthy)

    def forget() -> None:
        cache.clear()
        feed.resync()

    membership = Membership(runtime.instance_id, runtime.lease, forget)
    if is_sqlite(url):
        assert url.database is not None
        return SqliteWatcher(
            url.database, feed.deliver, set_healthy, membership, settings.invalidation_poll_seconds
        )
    return PostgresListener(
        url,
        feed.deliver,
        set_healthy,
        membership,
        timeout_seconds=settings.database_timeout_seconds,
    )


async def get_runtime(request: Request) -> Runtime:
    # async: a plain function would be sent to the thread pool on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
