"""Benchmark 2: in-process cost of verifying one API key, in microseconds per call.

Next to a bare ``hashlib.sha256`` of a key value, in this process (no HTTP):

- the keyed hash alone (``SecretHasher.hash``: HMAC-SHA256 with the server secret);
- the format check (``is_well_formed_api_key``: prefix, alphabet, CRC32 checksum);
- ``authenticate_api_key`` with a warm key cache (no database session at all), and the same
  wrapped in a read transaction (what every request paid before authentication stopped
  opening the request's session);
- ``authenticate_api_key`` with the cache disabled: one indexed read per call, on SQLite
  (aiosqlite) and on PostgreSQL (asyncpg), each in its own read transaction.

Each figure is the median of ``--repeats`` passes over ``--distinct-keys`` seeded keys.

    .venv/bin/python bench/verify_cost.py
    .venv/bin/python bench/verify_cost.py --keys 10000 --calls 2000   # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from common import (
    Database,
    SeedPlan,
    database,
    log,
    machine_summary,
    median,
    migrate,
    run,
    seed,
    table,
    workspace,
)
from pydantic import SecretStr

from keyplane.auth.service import authenticate_api_key
from keyplane.kit.db import create_engine, transaction
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.runtime import Runtime
from keyplane.settings import Settings

CLIENT = "127.0.0.1"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--keys", type=int, default=100_000, help="keys seeded per database")
    parser.add_argument("--distinct-keys", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per pass (CPU-only)")
    parser.add_argument(
        "--db-calls", type=int, default=3_000, help="calls per pass that read the database"
    )
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def _time_sync(
    function: Callable[[str], object], values: Sequence[str], calls: int, repeats: int
) -> float:
    """Median over ``repeats`` passes of the mean µs per call."""
    chosen = [values[i % len(values)] for i in range(calls)]
    passes = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for value in chosen:
            function(value)
        passes.append((time.perf_counter_ns() - started) / calls / 1000)
    return median(passes)


async def _time_async(
    function: Callable[[str], Awaitable[object]],
    values: Sequence[str],
    calls: int,
    repeats: int,
) -> float:
    chosen = [values[i % len(values)] for i in range(calls)]
    passes = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for value in chosen:
            await function(value)
        passes.append((time.perf_counter_ns() - started) / calls / 1000)
    return median(passes)


async def _database_figures(
    db: Database, secret: str, data_dir: Path, values: Sequence[str], args: argparse.Namespace
) -> dict[str, float]:
    settings = Settings(
        env="test",
        secret_key=SecretStr(secret),
        database_url=db.url,
        data_dir=data_dir,
    )
    engine = create_engine(settings.resolved_database_url)
    try:
        runtime = Runtime.build(settings, engine)
        cache = runtime.key_cache
        figures: dict[str, float] = {}

        async def check(value: str) -> object:
            return await authenticate_api_key(runtime, value, CLIENT)

        async def in_transaction(value: str) -> object:
            # How requests paid for it before authentication stopped opening a request
            # session: the same check wrapped in a read transaction.
            async with transaction(runtime.sessionmaker, writes=False):
                return await check(value)

        # Warm the connection pool and the database's own caches first.
        cache.set_enabled(False)
        for value in values:
            await check(value)
        figures["cache off, read transaction per call"] = await _time_async(
            check, values, args.db_calls, args.repeats
        )

        cache.set_enabled(True)
        for value in values:
            await check(value)
        assert len(cache) == len(values)
        figures["warm cache"] = await _time_async(check, values, args.calls, args.repeats)
        figures["warm cache, wrapped in a read transaction"] = await _time_async(
            in_transaction, values, args.calls, args.repeats
        )
        return figures
    finally:
        await engine.dispose()


async def main() -> None:
    args = _arguments()
    print(f"Machine: {machine_summary()}")
    per_backend: dict[str, dict[str, float]] = {}
    values: list[str] = []
    secret = ""
    with workspace() as space:
        secret = space.secret
        for backend in args.backends.split(","):
            async with database(backend, space.root) as db:
                await migrate(space.environment(db))
                plan = SeedPlan(
                    tenants=1,
                    users=100,
                    keys=args.keys,
                    audit_events=0,
                    sample=args.distinct_keys,
                )
                seeded = await seed(db, plan, space.secret)
                log(f"{backend}: seeded {args.keys:,} keys in {seeded.seconds:.1f} s")
                values = [key.value for key in seeded.sample]
                per_backend[backend] = await _database_figures(
                    db, space.secret, space.root / "data", values, args
                )
                log(f"{backend}: {per_backend[backend]}")

    from keyplane.kit.keys import SecretHasher

    hasher = SecretHasher(secret.encode())
    cpu_only = {
        "hashlib.sha256(key).hexdigest()": _time_sync(
            lambda value: hashlib.sha256(value.encode()).hexdigest(),
            values,
            args.calls,
            args.repeats,
        ),
        "keyed hash (HMAC-SHA256, SecretHasher.hash)": _time_sync(
            hasher.hash, values, args.calls, args.repeats
        ),
        "format check (is_well_formed_api_key)": _time_sync(
            is_well_formed_api_key, values, args.calls, args.repeats
        ),
    }
    baseline = cpu_only["hashlib.sha256(key).hexdigest()"]
    rows: list[list[object]] = [
        ["-", name, f"{micro:.2f}", f"{micro / baseline:.1f}x"] for name, micro in cpu_only.items()
    ]
    for backend, figures in per_backend.items():
        for name, micro in figures.items():
            rows.append(
                [
                    backend,
                    f"authenticate_api_key, {name}",
                    f"{micro:.1f}",
                    f"{micro / baseline:.0f}x",
                ]
            )
    print()
    print(
        f"Per call, median of {args.repeats} passes ({args.calls:,} calls per CPU-only pass, "
        f"{args.db_calls:,} per database pass, over {len(values):,} keys of {args.keys:,})."
    )
    print()
    print(table(["database", "what", "µs per call", "vs sha256"], rows))


if __name__ == "__main__":
    run(main)
