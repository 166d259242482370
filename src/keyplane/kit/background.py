"""Periodic background work, run by every instance; what must happen once is claimed in
the database by the job itself (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
writer on SQLite), so that running it everywhere is safe."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger("keyplane.background")

Context = TypeVar("Context")


@dataclass(frozen=True, slots=True)
class PeriodicJob(Generic[Context]):
    name: str
    run: Callable[[Context], Awaitable[None]]
    # Seconds between runs, as a multiple of KEYPLANE_BACKGROUND_INTERVAL_SECONDS.
    every: float = 1.0


async def run_periodically(job: PeriodicJob[Context], context: Context, interval: float) -> None:
    """Runs ``job`` every ``interval * job.every`` seconds (jittered, so that instances
    started together do not poll in step) until cancelled. A failing run is logged and
    retried at the next turn: background work never takes the instance down."""
    period = interval * job.every
    await asyncio.sleep(random.uniform(0, period))  # noqa: S311 (jitter, not a secret)
    while True:
        try:
            await job.run(context)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("background job %s failed; retrying next turn", job.name, exc_info=True)
        await asyncio.sleep(period * random.uniform(0.9, 1.1))  # noqa: S311
