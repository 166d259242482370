"""Benchmark 4: latency at scale on PostgreSQL.

Seeds 1,000,000 keys across 100 tenants and 10,000 users (10,000 keys per tenant, 100 per
user) with one ``apiKey.create`` audit event per key, then measures with wrk against one
``keyplane serve``:

- verification (``GET /v1/users/info`` with ``ApiKey``) with a cold cache: a fresh server,
  every request carrying a key not used before (``--cold-keys`` of them, walked in order);
- verification with a warm cache: ``--warm-keys`` keys at random, after a warm-up;
- the first page of a 10,000-key tenant's key list (``GET /v1/apiKeys?limit=50`` as that
  tenant's admin);
- the first page of that tenant's audit list (``GET /v1/audits?limit=50``).

Also reported: database and table sizes, and the worker's resident memory (RSS) when idle
and after the runs. Goal: each p99 under 50 ms.

    .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --keys 100000 --users 1000 --duration 3   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    Load,
    SeedPlan,
    Server,
    WrkResult,
    database_size_bytes,
    goal,
    key_lookups,
    log,
    machine_summary,
    mib,
    migrate,
    postgres_database,
    run,
    run_wrk,
    seed,
    table,
    table_sizes_bytes,
    workspace,
    wrk_version,
)

INFO = "/v1/users/info"
KEYS_PAGE = "/v1/apiKeys?limit=50"
AUDIT_PAGE = "/v1/audits?limit=50"
GOAL_P99_MS = 50.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--audit-events", type=int, default=None, help="default: one per key (as created)"
    )
    parser.add_argument("--cold-keys", type=int, default=100_000, help="distinct cold keys")
    parser.add_argument("--warm-keys", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    return parser.parse_args()


def _per_request(before: int | None, after: int | None, requests: int) -> float | None:
    if before is None or after is None or not requests:
        return None
    return (after - before) / requests


@dataclass(frozen=True, slots=True)
class Phase:
    single: WrkResult  # one connection: the time a request takes
    loaded: WrkResult  # --connections: the server saturated
    reads: float | None  # keys read from the database per request (warm-up included)


async def _run(url: str, path: str, keys_file: Path, load: Load, mode: str = "random") -> WrkResult:
    result = await run_wrk(url, path, keys_file, load, mode=mode)
    log(
        f"  {path} ({load.connections} conn., {mode}): {result.rps:,.0f} rps, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms, "
        f"failed {result.failed}"
    )
    if result.failed:
        raise RuntimeError(f"{result.failed} failed requests on {path}: {result.errors}")
    return result


async def _check_lists(url: str, admin_key: str, keys: int, events: int) -> None:
    """The pages are what they claim to be: 50 items of the tenant's full count."""
    async with httpx.AsyncClient(base_url=url, headers={"ApiKey": admin_key}) as http:
        for path, expected in ((KEYS_PAGE, keys), (AUDIT_PAGE, events)):
            response = await http.get(path)
            response.raise_for_status()
            body = response.json()
            count = body["listmeta"]["count"]
            if len(body["items"]) != min(50, expected) or count != expected:
                raise RuntimeError(f"{path}: {len(body['items'])} items of {count}, not {expected}")


async def main() -> None:
    args = _arguments()
    audit_events = args.keys if args.audit_events is None else args.audit_events
    load = Load(args.duration, args.connections, args.threads)
    one = Load(args.duration, 1, 1)
    warmup = Load(args.warmup, args.connections, args.threads)
    print(f"Machine: {machine_summary()}")
    print(
        f"Load generator: {wrk_version()}, {args.threads} thread(s), {args.connections} "
        f"connections, {args.duration:g} s per run"
    )
    results: dict[str, Phase] = {}
    rss: dict[str, list[int]] = {}
    with workspace() as space:
        async with postgres_database() as db:
            env = space.environment(db)
            await migrate(env)
            plan = SeedPlan(
                tenants=args.tenants,
                users=args.users,
                keys=args.keys,
                audit_events=audit_events,
                sample=args.cold_keys + args.warm_keys,
            )
            log(f"seeding {args.keys:,} keys, {args.users:,} users, {audit_events:,} events")
            seeded = await seed(db, plan, space.secret)
            log(f"seeded in {seeded.seconds:.0f} s")
            half = args.cold_keys // 2
            cold_single = space.write_keys("cold-1.txt", [k.value for k in seeded.sample[:half]])
            cold_loaded = space.write_keys(
                "cold-n.txt", [k.value for k in seeded.sample[half : args.cold_keys]]
            )
            warm_file = space.write_keys(
                "warm.txt", [k.value for k in seeded.sample[args.cold_keys :]]
            )
            tenant = seeded.tenants[0]
            admin_file = space.write_keys("admin.txt", [tenant.admin_key.value])
            size = await database_size_bytes(db)
            tables = await table_sizes_bytes(db, ["api_keys", "audit_events", "users"])

            # Three servers, so that database key reads can be counted per phase (a server's
            # database sessions report their counts when they end).
            before = await key_lookups(db)
            async with Server(env, space.root, workers=args.workers) as server:
                await asyncio.sleep(1)
                rss["idle after start"] = server.worker_rss_bytes()
                # Each run walks its own keys in order: every request a key not seen before.
                single = await _run(server.url, INFO, cold_single, one, "sequential")
                loaded = await _run(server.url, INFO, cold_loaded, load, "sequential")
                cached = min(single.requests, half) + min(loaded.requests, half)
                rss[f"after the cold runs ({cached:,} keys cached)"] = server.worker_rss_bytes()
            if max(single.requests, loaded.requests) > half:
                log(f"  a cold run wrapped round its {half:,} keys: raise --cold-keys")
            after_cold = await key_lookups(db)
            results["verification, cold cache"] = Phase(
                single, loaded, _per_request(before, after_cold, single.requests + loaded.requests)
            )

            async with Server(env, space.root, workers=args.workers) as server:
                warmed = await run_wrk(server.url, INFO, warm_file, warmup)
                single = await _run(server.url, INFO, warm_file, one)
                loaded = await _run(server.url, INFO, warm_file, load)
            after_warm = await key_lookups(db)
            results["verification, warm cache"] = Phase(
                single,
                loaded,
                _per_request(
                    after_cold, after_warm, warmed.requests + single.requests + loaded.requests
                ),
            )

            async with Server(env, space.root, workers=args.workers) as server:
                await _check_lists(
                    server.url, tenant.admin_key.value, tenant.keys, tenant.audit_events
                )
                for path, label in (
                    (KEYS_PAGE, f"{tenant.keys:,} keys"),
                    (AUDIT_PAGE, f"{tenant.audit_events:,} events"),
                ):
                    await run_wrk(server.url, path, admin_file, warmup)
                    single = await _run(server.url, path, admin_file, one)
                    loaded = await _run(server.url, path, admin_file, load)
                    results[f"`GET {path}` ({label})"] = Phase(single, loaded, None)
                rss["after the list runs"] = server.worker_rss_bytes()

    print()
    print(
        f"PostgreSQL, {args.keys:,} keys, {args.tenants} tenants, {args.users:,} users, "
        f"{audit_events:,} audit events; {args.workers} worker(s). Latencies in ms, under "
        f"{args.connections} connections (the server saturated) and under 1 connection."
    )
    print()
    print(
        table(
            [
                "what",
                f"rps ({args.connections} conn.)",
                "p50",
                "p90",
                "p99",
                "max",
                "rps (1 conn.)",
                "p50",
                "p99",
                "DB key reads / request",
                f"goal p99 < {GOAL_P99_MS:.0f} ms: {args.connections} conn.",
                "1 conn.",
            ],
            [
                [
                    name,
                    f"{phase.loaded.rps:,.0f}",
                    f"{phase.loaded.p50_ms:.2f}",
                    f"{phase.loaded.p90_ms:.2f}",
                    f"{phase.loaded.p99_ms:.2f}",
                    f"{phase.loaded.max_ms:.1f}",
                    f"{phase.single.rps:,.0f}",
                    f"{phase.single.p50_ms:.2f}",
                    f"{phase.single.p99_ms:.2f}",
                    "-" if phase.reads is None else f"{phase.reads:.3f}",
                    goal(phase.loaded.p99_ms < GOAL_P99_MS),
                    goal(phase.single.p99_ms < GOAL_P99_MS),
                ]
                for name, phase in results.items()
            ],
        )
    )
    print()
    print(
        f"Cold runs: every request a key not used before ({half:,} keys available per run). "
        f"Warm runs: {args.warm_keys:,} keys at random, after {args.warmup:g} s of warm-up."
    )
    print()
    print(
        table(
            ["measure", "value"],
            [
                ["database size (pg_database_size)", mib(size)],
                *([f"`{name}` with indexes", mib(bytes_)] for name, bytes_ in tables.items()),
                *(
                    [f"worker RSS, {when}", ", ".join(mib(size) for size in sizes)]
                    for when, sizes in rss.items()
                ),
            ],
        )
    )


if __name__ == "__main__":
    run(main)
