"""Benchmark 1: authenticated throughput and latency of ``GET /v1/users/info``.

For each database (SQLite, PostgreSQL) seeded with 100,000 keys, and for 1 and 2 workers,
wrk measures on the same running server:

- ``GET /healthz``: no authentication, no database (the unauthenticated ceiling);
- ``GET /v1/users/info`` with an ``ApiKey`` header (key cache on, the default);

and then, on a server started with ``KEYPLANE_KEY_CACHE_ENABLED=false``, the same
authenticated request (every request reads the key from the database).

Every request carries a key picked at random from ``--distinct-keys`` seeded keys (the
``/healthz`` requests carry the same header, so that both sides send the same bytes).
Goal: authenticated rps at least 85 % of ``/healthz`` rps.

    .venv/bin/python bench/throughput.py                    # the issue's sizes
    .venv/bin/python bench/throughput.py --keys 10000 --duration 3   # a quick check
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from common import (
    Load,
    SeedPlan,
    Server,
    WrkResult,
    database,
    goal,
    key_lookups,
    log,
    machine_summary,
    migrate,
    run,
    run_wrk,
    seed,
    table,
    workspace,
    wrk_version,
)

AUTHENTICATED = "/v1/users/info"
UNAUTHENTICATED = "/healthz"
GOAL_RATIO = 0.85


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    workers: int
    healthz: WrkResult
    cached: WrkResult
    one_key: WrkResult  # every request with the same key: every request a cache hit
    uncached: WrkResult
    # PostgreSQL only: keys read from the database per authenticated request.
    cached_reads: float | None
    uncached_reads: float | None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--keys", type=int, default=100_000, help="keys seeded")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument(
        "--distinct-keys", type=int, default=1_000, help="keys the load is spread over"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    return parser.parse_args()


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _reads(cached: float | None, uncached: float | None) -> str:
    if cached is None or uncached is None:
        return "n/a"
    return f"{cached:.2f} (no cache: {uncached:.2f})"


@dataclass(frozen=True, slots=True)
class Measured:
    result: WrkResult
    # All requests sent, warm-up included (to relate database reads to).
    sent: int


async def _measure(url: str, path: str, keys_file: Path, load: Load, warmup: Load) -> Measured:
    warm = await run_wrk(url, path, keys_file, warmup)
    result = await run_wrk(url, path, keys_file, load)
    log(
        f"  {path}: {result.rps:,.0f} rps, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, failed {result.failed}"
    )
    if result.failed or warm.failed:
        raise RuntimeError(f"failed requests on {path}: {result.errors} {warm.errors}")
    return Measured(result, warm.requests + result.requests)


def _reads_per_request(before: int | None, after: int | None, measured: Measured) -> float | None:
    if before is None or after is None:
        return None
    return (after - before) / measured.sent


async def main() -> None:
    args = _arguments()
    load = Load(args.duration, args.connections, args.threads)
    warmup = Load(args.warmup, args.connections, args.threads)
    rows: list[Row] = []
    print(f"Machine: {machine_summary()}")
    print(
        f"Load generator: {wrk_version()}, {args.threads} thread(s), {args.connections} "
        f"connections, {args.duration:g} s per run after {args.warmup:g} s of warm-up"
    )
    with workspace() as space:
        for backend in args.backends.split(","):
            async with database(backend, space.root) as db:
                env = space.environment(db)
                await migrate(env)
                plan = SeedPlan(
                    tenants=args.tenants,
                    users=args.users,
                    keys=args.keys,
                    audit_events=0,
                    sample=args.distinct_keys,
                )
                seeded = await seed(db, plan, space.secret)
                log(f"{backend}: seeded {args.keys:,} keys in {seeded.seconds:.1f} s")
                keys_file = space.write_keys(
                    f"keys-{backend}.txt", [key.value for key in seeded.sample]
                )
                one_key_file = space.write_keys(f"key-{backend}.txt", [seeded.sample[0].value])
                for workers in (int(w) for w in args.workers.split(",")):
                    log(f"{backend}, {workers} worker(s), key cache on")
                    before = await key_lookups(db)
                    async with Server(env, space.root, workers=workers) as server:
                        healthz = await _measure(
                            server.url, UNAUTHENTICATED, keys_file, load, warmup
                        )
                        # One key first: it adds a handful of key reads (one per cache
                        # max age per worker) to the count below, which is for the next run.
                        one_key = await _measure(
                            server.url, AUTHENTICATED, one_key_file, load, warmup
                        )
                        cached = await _measure(server.url, AUTHENTICATED, keys_file, load, warmup)
                    between = await key_lookups(db)
                    log(f"{backend}, {workers} worker(s), key cache off")
                    no_cache_env = space.environment(db, key_cache_enabled=False)
                    async with Server(no_cache_env, space.root, workers=workers) as server:
                        uncached = await _measure(
                            server.url, AUTHENTICATED, keys_file, load, warmup
                        )
                    after = await key_lookups(db)
                    rows.append(
                        Row(
                            backend,
                            workers,
                            healthz.result,
                            cached.result,
                            one_key.result,
                            uncached.result,
                            _reads_per_request(before, between, cached),
                            _reads_per_request(between, after, uncached),
                        )
                    )

    print()
    print(
        f"`GET {AUTHENTICATED}` with `ApiKey` ({args.keys:,} keys seeded, load over "
        f"{args.distinct_keys:,} of them at random) against `GET {UNAUTHENTICATED}` on the "
        "same server; latencies in ms. DB key reads: PostgreSQL's index scans on "
        "api_keys.key_hash per authenticated request, warm-up included (a cached key is read "
        "again after KEYPLANE_KEY_CACHE_MAX_AGE_SECONDS, per worker). 1-key: the same "
        "request with one key only, every request a cache hit."
    )
    print()
    print(
        table(
            [
                "database",
                "workers",
                "healthz rps",
                "p50",
                "p99",
                "auth rps",
                "p50",
                "p99",
                "auth / healthz",
                "DB key reads / auth request",
                "1-key auth rps",
                "/ healthz",
                "no-cache rps",
                "p50",
                "p99",
                "cache / no-cache",
                f"goal >= {GOAL_RATIO:.0%}",
            ],
            [
                [
                    row.backend,
                    row.workers,
                    f"{row.healthz.rps:,.0f}",
                    _ms(row.healthz.p50_ms),
                    _ms(row.healthz.p99_ms),
                    f"{row.cached.rps:,.0f}",
                    _ms(row.cached.p50_ms),
                    _ms(row.cached.p99_ms),
                    f"{row.cached.rps / row.healthz.rps:.0%}",
                    _reads(row.cached_reads, row.uncached_reads),
                    f"{row.one_key.rps:,.0f}",
                    f"{row.one_key.rps / row.healthz.rps:.0%}",
                    f"{row.uncached.rps:,.0f}",
                    _ms(row.uncached.p50_ms),
                    _ms(row.uncached.p99_ms),
                    f"{row.cached.rps / row.uncached.rps:.2f}x",
                    goal(row.cached.rps >= GOAL_RATIO * row.healthz.rps),
                ]
                for row in rows
            ],
        )
    )


if __name__ == "__main__":
    run(main)
