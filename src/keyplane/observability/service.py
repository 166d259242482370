"""Who may read the metrics, and whether this instance is ready for traffic."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass

from sqlalchemy import text

from keyplane.kit.client_address import parse_address
from keyplane.kit.errors import Forbidden, NotFound, Unauthorized, Unavailable, database_failure
from keyplane.kit.migrations import current_revision, head_revision
from keyplane.runtime import Runtime
from keyplane.settings import MetricsAccess, Settings

# Beyond the database's own bound, for a wait that somehow escaped it.
_MARGIN_SECONDS = 1.0
RETRY_AFTER_SECONDS = 5


class NotReady(Unavailable):
    default_code = "NotReady"


def authorize_scrape(settings: Settings, address: str, authorization: str | None) -> None:
    """Raises unless this client may read ``/metrics`` (``KEYPLANE_METRICS``)."""
    if settings.metrics is MetricsAccess.OFF:
        # As if there were no such route: nothing to learn about this server from it.
        raise NotFound("No such endpoint.")
    if settings.metrics is MetricsAccess.LOOPBACK:
        # The address as resolved through trusted proxies: a request a proxy forwards
        # from elsewhere is not a loopback one, even though its peer is. A Unix socket
        # (no address) may be a proxy too, so it does not count as loopback either.
        parsed = parse_address(address)
        if parsed is None or not parsed.is_loopback:
            raise Forbidden(
                "Metrics are served to clients on this host only (KEYPLANE_METRICS=loopback); "
                "set KEYPLANE_METRICS=token to let a scraper elsewhere read them with a token.",
                code="MetricsLoopbackOnly",
            )
        return
    scheme, _, token = (authorization or "").strip().partition(" ")
    expected = settings.metrics_token.get_secret_value().encode()
    # Constant time: the comparison must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized(
            "Metrics need the metrics token: send Authorization: Bearer <KEYPLANE_METRICS_TOKEN>.",
            code="MetricsTokenInvalid",
            headers={"WWW-Authenticate": "Bearer"},
        )


@dataclass
class ReadinessCache:
    """A schema once found at head stays so: migrations are run before a deploy, not
    under a running server, and the check costs a connection and a table read."""

    head: str | None = None
    schema_current: bool = False


async def readiness_checks(runtime: Runtime, cache: ReadinessCache) -> dict[str, str]:
    """Each check and "ok", or what is wrong; nothing here waits past the database bound."""
    bound = runtime.settings.database_timeout_seconds + _MARGIN_SECONDS
    checks = {"database": "ok", "schema": "ok", "invalidation": "ok"}
    try:
        async with asyncio.timeout(bound):
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:
        failure = database_failure(exc)
        checks["database"] = failure.code if failure is not None else type(exc).__name__
        checks["schema"] = "not checked: no database"
    if checks["database"] == "ok" and not cache.schema_current:
        if cache.head is None:
            cache.head = await asyncio.to_thread(head_revision)
        try:
            async with asyncio.timeout(bound):
                current = await current_revision(runtime.engine)
        except Exception as exc:
            failure = database_failure(exc)
            checks["schema"] = f"not checked: {failure.code if failure else type(exc).__name__}"
        else:
            if current == cache.head:
                cache.schema_current = True
            else:
                checks["schema"] = (
                    f"at revision {current or 'none'}, not {cache.head}: run `keyplane db upgrade`"
                )
    if not runtime.key_cache.channel_healthy:
        checks["invalidation"] = "channel down: the key cache is off until it is back"
    return checks


def require_ready(checks: dict[str, str]) -> None:
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        reasons = "; ".join(f"{name}: {checks[name]}" for name in failed)
        raise NotReady(
            f"Not ready for traffic ({reasons}).",
            details={"failed": failed, "checks": checks},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
