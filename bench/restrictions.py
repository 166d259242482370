"""Benchmark 6: what a key's restrictions cost ``POST /v1/apiKeys/verify``.

One ``keyplane serve`` worker on PostgreSQL (``--keys`` keys seeded over 10 tenants and
100 users), with ``KEYPLANE_REDIS_URL`` pointing at a local Redis under a key prefix of
its own (removed from Redis at the end). Before the server starts, four disjoint groups of
``--distinct-keys`` seeded keys are given, straight in the database, the restrictions
of one case each (what ``PATCH /v1/apiKeys/{uid}`` would have stored):

1. **plain**: none; body ``{"key"}``;
2. **permission query and address range**: permissions ``invoices.read`` and
   ``invoices.write`` (defined for every tenant), address range ``10.0.0.0/8``; body
   ``{"key", "permissions": "invoices.read AND (invoices.write OR admin)",
   "clientAddress": "10.1.2.3"}``;
3. **Redis rate limit**: one limit of 1,000,000,000 per 60 s (never refused: this
   measures the check, one Redis round trip per call); body ``{"key"}``;
4. **credits**: 1,000,000,000 remaining uses (each valid answer spends one, in one
   ``UPDATE`` on the key's row); body ``{"key"}``.

wrk then loads each case in turn (one key of its group at random per request, in
``ApiKey`` the tenant admin's key of the verified key's tenant). Before and after each
run, a sample of the case's keys is verified with httpx and every answer must be
``VALID`` (with the rate limit or the credits counted); the permission case is also
checked to refuse an address outside the range and a query the key does not satisfy.
A run also fails if the server answered any rate-limit check without Redis (they fail
open: the figure would not be Redis's).

Goals, as ratios of case 1's rps: case 2 at least 90 %, case 3 at least 60 %; case 4 is
reported without a goal (one database write per call).

    .venv/bin/python bench/restrictions.py
    .venv/bin/python bench/restrictions.py --keys 2000 --distinct-keys 200 --duration 2 --warmup 1

Needs wrk, PostgreSQL (as the other scripts) and Redis on 127.0.0.1:6379
(``BENCH_REDIS_URL=redis://host:port/db`` to use another).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
from common import (
    Database,
    Load,
    SeededKey,
    SeedPlan,
    Server,
    Workspace,
    WrkResult,
    goal,
    log,
    machine_summary,
    migrate,
    postgres_database,
    run,
    run_wrk,
    seed,
    table,
    workspace,
    wrk_version,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

from keyplane.kit.ids import new_uid

VERIFY = "/v1/apiKeys/verify"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TENANTS = 10
USERS = 100
PERMISSIONS = ("invoices.read", "invoices.write")
QUERY = "invoices.read AND (invoices.write OR admin)"
ALLOWED_CIDRS = ("10.0.0.0/8",)
CLIENT_ADDRESS = "10.1.2.3"
RATE_LIMIT = {"name": "big", "limit": 1_000_000_000, "windowSeconds": 60}
CREDITS = 1_000_000_000
CHECKED = 20  # keys of each case verified with httpx before and after its run
UNAVAILABLE_METRIC = "keyplane_rate_limit_store_unavailable_total"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    what: str
    body: dict[str, str]  # besides "key"
    target: float | None  # goal: at least this share of the plain case's rps
    no_goal: str = ""


CASES = (
    Case("plain", "plain verify", {}, None),
    Case(
        "permissions",
        "permission query + address range",
        {"permissions": QUERY, "clientAddress": CLIENT_ADDRESS},
        0.90,
    ),
    Case("rate-limit", "Redis rate limit", {}, 0.60),
    Case("credits", "credits", {}, None, "no goal: one database write per call"),
)


@dataclass(frozen=True, slots=True)
class Measured:
    case: Case
    result: WrkResult
    answers: int  # VALID answers counted: warm-up, measured run and the httpx checks


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000, help="keys seeded")
    parser.add_argument(
        "--distinct-keys",
        type=int,
        default=1_000,
        help="keys each case's load is spread over (a group of its own per case)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    needed = USERS + len(CASES) * args.distinct_keys
    if args.distinct_keys < 1 or args.keys < needed:
        parser.error(
            f"--keys must be at least {needed:,}: {len(CASES)} groups of --distinct-keys "
            f"plus one key per user ({USERS})"
        )
    return args


def _ms(value: float) -> str:
    return f"{value:.2f}"


# --------------------------------------------------------------------------- preparing


async def _redis_or_exit() -> tuple[Redis, str]:
    """A client of the Redis the server will use, and its version; exits clearly when
    there is none."""
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = await client.info("server")
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise SystemExit(
            f"Redis is not reachable at {REDIS_URL} ({exc}). Start one (Debian: apt-get install "
            "redis-server) or set BENCH_REDIS_URL."
        ) from None
    return client, str(info.get("redis_version", "?"))


async def _redis_keys(client: Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]


async def _remove_prefix(client: Redis, prefix: str) -> int:
    keys = await _redis_keys(client, prefix)
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])
    return len(keys)


async def _restrict(db: Database, groups: dict[str, list[SeededKey]]) -> str:
    """Gives each case's keys its restrictions, as the API stores them (permission names
    defined for every tenant first); returns PostgreSQL's version and commit setting."""
    connection = await asyncpg.connect(db.url)
    try:
        now = datetime.now(UTC)
        tenants = await connection.fetch("SELECT uid FROM tenants")
        await connection.executemany(
            "INSERT INTO permissions (uid, tenant_uid, name, description, created_at) "
            "VALUES ($1, $2, $3, '', $4)",
            [(new_uid(), row["uid"], name, now) for row in tenants for name in PERMISSIONS],
        )
        updates: dict[str, tuple[str, Sequence[object]]] = {
            "permissions": (
                "permissions = $2::json, allowed_cidrs = $3::json",
                (json.dumps(list(PERMISSIONS)), json.dumps(list(ALLOWED_CIDRS))),
            ),
            "rate-limit": ("rate_limits = $2::json", (json.dumps([RATE_LIMIT]),)),
            "credits": ("credits_remaining = $2, credits_refilled_at = $3", (CREDITS, now)),
        }
        for name, (assignments, values) in updates.items():
            await connection.execute(
                f"UPDATE api_keys SET {assignments}, modified_at = now() "  # noqa: S608
                "WHERE uid = ANY($1::text[])",
                [key.uid for key in groups[name]],
                *values,
            )
        # What autovacuum would have done after the edits.
        await connection.execute("VACUUM ANALYZE api_keys")
        version: str = await connection.fetchval("SHOW server_version")
        commit: str = await connection.fetchval("SHOW synchronous_commit")
        return f"PostgreSQL {version.split()[0]} (synchronous_commit {commit})"
    finally:
        await connection.close()


async def _credits_spent(db: Database, keys: Sequence[SeededKey]) -> int:
    connection = await asyncpg.connect(db.url)
    try:
        left = await connection.fetchval(
            "SELECT SUM(credits_remaining) FROM api_keys WHERE uid = ANY($1::text[])",
            [key.uid for key in keys],
        )
        return CREDITS * len(keys) - int(left)
    finally:
        await connection.close()


# --------------------------------------------------------------------------- checking


def _body(case: Case, key: SeededKey, **overrides: str) -> str:
    return json.dumps({"key": key.value, **case.body, **overrides})


async def _check_answers(
    http: httpx.AsyncClient, case: Case, keys: Sequence[SeededKey], admins: dict[str, str]
) -> int:
    """Verifies up to CHECKED keys of the case; each answer must be VALID and show the
    case's restriction. Returns how many were verified."""
    for key in keys[:CHECKED]:
        answer = await http.post(
            VERIFY,
            content=_body(case, key),
            headers={"ApiKey": admins[key.tenant_uid], "Content-Type": "application/json"},
        )
        data = answer.json() if answer.status_code == 200 else {}
        problem = ""
        if data.get("valid") is not True or data.get("code") != "VALID":
            problem = "not VALID"
        elif case.name == "permissions" and data.get("permissions") != sorted(PERMISSIONS):
            problem = "without the key's permissions"
        elif case.name == "rate-limit" and (
            (data.get("rateLimit") or {}).get("name") != RATE_LIMIT["name"]
            or data["rateLimit"]["remaining"] >= RATE_LIMIT["limit"]
        ):
            problem = "without the rate limit counted"
        elif case.name == "credits" and not 0 < (data.get("remaining") or 0) < CREDITS:
            problem = "without a credit spent"
        elif case.name == "plain" and (data.get("rateLimit") or data.get("remaining")):
            problem = "with a restriction on a plain key"
        if problem:
            raise RuntimeError(
                f"{case.name}: verify answered {answer.status_code} {problem}: {answer.text[:300]}"
            )
    return min(CHECKED, len(keys))


async def _check_refusals(
    http: httpx.AsyncClient, case: Case, key: SeededKey, admins: dict[str, str]
) -> None:
    """The permission case's checks do refuse: outside the range, and a query the key
    does not satisfy."""
    for overrides, code in (
        ({"clientAddress": "192.0.2.1"}, "FORBIDDEN_ADDRESS"),
        ({"permissions": "invoices.read AND admin"}, "INSUFFICIENT_PERMISSIONS"),
    ):
        answer = await http.post(
            VERIFY,
            content=_body(case, key, **overrides),
            headers={"ApiKey": admins[key.tenant_uid], "Content-Type": "application/json"},
        )
        if answer.status_code != 200 or answer.json().get("code") != code:
            raise RuntimeError(f"expected {code}, verify answered {answer.text[:300]}")


async def _store_unavailable(http: httpx.AsyncClient) -> float | None:
    """Rate-limit checks the server answered without Redis so far (None: not exposed)."""
    answer = await http.get("/metrics")
    if answer.status_code != 200:
        return None
    for line in answer.text.splitlines():
        if line.startswith(UNAVAILABLE_METRIC):
            return float(line.split()[-1])
    return None


# --------------------------------------------------------------------------- running


async def main() -> None:
    args = _arguments()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    redis, redis_version = await _redis_or_exit()
    prefix = f"keyplane-bench-{secrets.token_hex(6)}:"
    load = Load(args.duration, args.connections)
    warmup = Load(args.warmup, args.connections)
    print(f"Machine: {machine_summary()}")
    print(
        f"Load generator: {wrk_version()}, 1 thread, {args.connections} connections, "
        f"{args.duration:g} s per run after {args.warmup:g} s of warm-up"
    )
    try:
        with workspace() as space:
            async with postgres_database() as db:
                env = space.environment(db, redis_url=REDIS_URL, redis_key_prefix=prefix)
                await migrate(env)
                plan = SeedPlan(
                    tenants=TENANTS,
                    users=USERS,
                    keys=args.keys,
                    audit_events=0,
                    sample=len(CASES) * args.distinct_keys,
                )
                seeded = await seed(db, plan, space.secret)
                log(f"seeded {args.keys:,} keys in {seeded.seconds:.1f} s")
                count = args.distinct_keys
                groups = {
                    case.name: seeded.sample[index * count : (index + 1) * count]
                    for index, case in enumerate(CASES)
                }
                postgres = await _restrict(db, groups)
                log(f"restricted {len(CASES) - 1} groups of {count:,} keys")
                admins = {tenant.uid: tenant.admin_key.value for tenant in seeded.tenants}
                measured = await _measure_cases(space, env, groups, admins, load, warmup, redis)
                spent = await _credits_spent(db, groups["credits"])
    finally:
        removed = await _remove_prefix(redis, prefix)
        await redis.aclose()
        log(f"removed {removed:,} keys under {prefix!r} from Redis")
    _report(args, measured, postgres, redis_version, spent)


async def _measure_cases(
    space: Workspace,
    env: dict[str, str],
    groups: dict[str, list[SeededKey]],
    admins: dict[str, str],
    load: Load,
    warmup: Load,
    redis: Redis,
) -> list[Measured]:
    prefix = env["KEYPLANE_REDIS_KEY_PREFIX"]
    found: list[Measured] = []
    async with (
        Server(env, space.root, workers=1) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        for case in CASES:
            keys = groups[case.name]
            checked = await _check_answers(http, case, keys, admins)
            if case.name == "permissions":
                await _check_refusals(http, case, keys[0], admins)
            if case.name == "rate-limit" and not await _redis_keys(redis, prefix):
                raise RuntimeError("the rate-limit checks left nothing in Redis")
            lines = [f"{admins[key.tenant_uid]}\t{_body(case, key)}" for key in keys]
            keys_file = space.write_keys(f"verify-{case.name}.txt", lines)
            warm = await run_wrk(server.url, VERIFY, keys_file, warmup, method="POST")
            result = await run_wrk(server.url, VERIFY, keys_file, load, method="POST")
            log(
                f"  {case.name}: {result.rps:,.0f} rps, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms, failed {result.failed}"
            )
            if result.failed or warm.failed:
                raise RuntimeError(f"{case.name}: failed requests {result.errors} {warm.errors}")
            checked += await _check_answers(http, case, keys, admins)
            unavailable = await _store_unavailable(http)
            if unavailable:
                raise RuntimeError(
                    f"{unavailable:.0f} rate-limit checks were answered without Redis "
                    f"(see {server.log_path})"
                )
            found.append(Measured(case, result, warm.requests + result.requests + checked))
    return found


# --------------------------------------------------------------------------- reporting


def _report(
    args: argparse.Namespace,
    measured: list[Measured],
    postgres: str,
    redis_version: str,
    spent: int,
) -> None:
    plain = measured[0].result
    print()
    print(
        f"{postgres}, Redis {redis_version}. `POST {VERIFY}`, one worker; {args.keys:,} keys "
        f"seeded, each case's load over {args.distinct_keys:,} keys of its own at random, "
        "in `ApiKey` the tenant admin's key of the verified key's tenant. Latencies in ms."
    )
    print(
        f'1. keys without restrictions, body {{"key"}}; 2. keys with permissions '
        f"{', '.join(PERMISSIONS)} and address range {ALLOWED_CIDRS[0]}, body "
        f'{{"key", "permissions": "{QUERY}", "clientAddress": "{CLIENT_ADDRESS}"}}; '
        f"3. keys with a rate limit of {RATE_LIMIT['limit']:,} per "
        f'{RATE_LIMIT["windowSeconds"]} s (in Redis, never reached), body {{"key"}}; '
        f'4. keys with {CREDITS:,} credits (one spent per call), body {{"key"}}.'
    )
    print()
    print(
        table(
            ["case", "rps", "p50", "p90", "p99", "max"],
            [
                [
                    f"{index}. {item.case.what}",
                    f"{item.result.rps:,.0f}",
                    _ms(item.result.p50_ms),
                    _ms(item.result.p90_ms),
                    _ms(item.result.p99_ms),
                    _ms(item.result.max_ms),
                ]
                for index, item in enumerate(measured, start=1)
            ],
        )
    )
    rows = []
    for index, item in enumerate(measured[1:], start=2):
        ratio = item.result.rps / plain.rps
        case = item.case
        rows.append(
            [
                f"case {index} rps / plain verify rps ({case.name})",
                f"{ratio:.0%}",
                f">= {case.target:.0%}" if case.target is not None else case.no_goal,
                goal(ratio >= case.target) if case.target is not None else "-",
            ]
        )
    print()
    print(table(["goal", "measured", "target", "met"], rows))
    credits = measured[-1]
    print()
    print(
        "Credits: every VALID answer spends one use in a single `UPDATE api_keys ... "
        "RETURNING` on the key's row, in autocommit (a PostgreSQL round trip and a commit, "
        f"i.e. a WAL flush, per call). Spent in the database: {spent:,} for "
        f"{credits.answers:,} VALID answers counted by this script (wrk counts no answer "
        "still in flight when a run ends)."
    )


if __name__ == "__main__":
    run(main)
