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

``--compare`` (the verification plane's goals) measures instead, on PostgreSQL with
``--keys`` keys and one worker each, under load over ``--distinct-keys`` keys and over one
hot key: Keyplane's ``GET /healthz``, ``GET /v1/users/info`` (``ApiKey``) and
``POST /v1/apiKeys/verify`` (a tenant admin's ``ApiKey``, body ``{"key": ...}`` with a key
of the same tenant); a bare Starlette and a bare FastAPI route returning the same JSON; and
djangorestframework-api-key's ``HasAPIKey`` on a DRF view over the same number of keys in
PostgreSQL (see ``peers.py``: each in a venv of its own, built on the first run). Goals:
users/info and verify each at least 8x the peer's rps, at least 85 % of ``/healthz``, at
least 40 % of bare Starlette, and p99 over the many keys within 2x of the one-key p99.

    .venv/bin/python bench/throughput.py                    # the issue's sizes
    .venv/bin/python bench/throughput.py --keys 10000 --duration 3   # a quick check
    .venv/bin/python bench/throughput.py --compare          # the verification plane's goals
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import peers
from common import (
    Database,
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
    postgres_database,
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
    parser.add_argument(
        "--compare",
        action="store_true",
        help="Keyplane's users/info and verify against bare Starlette and FastAPI routes "
        "and djangorestframework-api-key (PostgreSQL, 1 worker; --backends and --workers "
        "are ignored)",
    )
    parser.add_argument(
        "--peer-worker-class",
        choices=peers.PEER_WORKER_CLASSES,
        default="gthread",
        help="--compare: gunicorn worker class for the peer",
    )
    parser.add_argument(
        "--peer-threads",
        type=int,
        default=peers.PEER_THREADS,
        help="--compare: gunicorn threads for the peer (gthread)",
    )
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


async def _measure(
    url: str,
    path: str,
    keys_file: Path,
    load: Load,
    warmup: Load,
    *,
    method: str = "GET",
    header: str = "ApiKey",
) -> Measured:
    warm = await run_wrk(url, path, keys_file, warmup, method=method, header=header)
    result = await run_wrk(url, path, keys_file, load, method=method, header=header)
    log(
        f"  {method} {path} ({keys_file.name}): {result.rps:,.0f} rps, "
        f"p50 {result.p50_ms:.2f} ms, "
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
    if args.compare:
        await compare(args)
        return
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


# --------------------------------------------------------------------------- --compare

VERIFY = "/v1/apiKeys/verify"
PEER_GOAL = 8.0  # users/info and verify rps, each at least this many times the peer's
HEALTHZ_GOAL = 0.85  # ... and at least this share of Keyplane's /healthz rps
STARLETTE_GOAL = 0.40  # ... and of a bare Starlette route's
P99_GOAL = 2.0  # p99 over the many keys at most this many times the one-key p99


@dataclass(frozen=True, slots=True)
class Case:
    server: str
    request: str
    keys: str
    result: WrkResult


async def _keyplane_checks(url: str, key: str, verify_line: str) -> object:
    """The requests measured answer as they should; returns users/info's JSON."""
    verifier, body = verify_line.split("\t", 1)
    async with httpx.AsyncClient(base_url=url) as http:
        info = await http.get(AUTHENTICATED, headers={"ApiKey": key})
        refused = await http.get(AUTHENTICATED)
        verified = await http.post(
            VERIFY,
            content=body,
            headers={"ApiKey": verifier, "Content-Type": "application/json"},
        )
    if info.status_code != 200 or refused.status_code != 401:
        raise RuntimeError(f"users/info answered {info.status_code}, no key {refused.status_code}")
    if verified.status_code != 200 or verified.json().get("valid") is not True:
        raise RuntimeError(f"verify answered {verified.status_code} {verified.text[:300]}")
    payload: object = info.json()
    return payload


async def _postgres_version(db: Database) -> str:
    connection = await asyncpg.connect(db.url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version.split()[0]
    finally:
        await connection.close()


def _ratio_row(what: str, value: float, target: str, met: bool, fmt: str) -> list[str]:
    shown = f"{value:.2f}x" if fmt == "x" else f"{value:.0%}"
    return [what, shown, target, goal(met)]


async def compare(args: argparse.Namespace) -> None:
    load = Load(args.duration, args.connections, args.threads)
    warmup = Load(args.warmup, args.connections, args.threads)
    many = f"{args.distinct_keys:,}"
    print(f"Machine: {machine_summary()}")
    print(
        f"Load generator: {wrk_version()}, {args.threads} thread(s), {args.connections} "
        f"connections, {args.duration:g} s per run after {args.warmup:g} s of warm-up"
    )
    started = time.perf_counter()
    starlette_venv = await peers.ensure_venv(
        "bare-starlette", peers.keyplane_pins(peers.BARE_STARLETTE), constrained=True
    )
    fastapi_venv = await peers.ensure_venv(
        "bare-fastapi", peers.keyplane_pins(peers.BARE_FASTAPI), constrained=True
    )
    peer_venv = await peers.ensure_venv("peer-drf", peers.PEER_PINS)
    log(f"venvs ready in {time.perf_counter() - started:.0f} s")
    cases: list[Case] = []
    with workspace() as space:
        async with postgres_database() as db:
            postgres = await _postgres_version(db)
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
            log(f"Keyplane: seeded {args.keys:,} keys in {seeded.seconds:.1f} s")
            admins = {tenant.uid: tenant.admin_key.value for tenant in seeded.tenants}
            keys_file = space.write_keys("keys.txt", [key.value for key in seeded.sample])
            one_key_file = space.write_keys("key.txt", [seeded.sample[0].value])
            verify_lines = [
                f"{admins[key.tenant_uid]}\t{json.dumps({'key': key.value})}"
                for key in seeded.sample
            ]
            verify_file = space.write_keys("verify.txt", verify_lines)
            one_verify_file = space.write_keys("verify-1.txt", verify_lines[:1])
            async with Server(env, space.root, workers=1) as server:
                payload = await _keyplane_checks(
                    server.url, seeded.sample[0].value, verify_lines[0]
                )
                for request, path, file, method, keys in (
                    ("GET /healthz", UNAUTHENTICATED, keys_file, "GET", f"{many} (unused)"),
                    ("GET /v1/users/info", AUTHENTICATED, keys_file, "GET", many),
                    ("GET /v1/users/info", AUTHENTICATED, one_key_file, "GET", "1"),
                    ("POST /v1/apiKeys/verify", VERIFY, verify_file, "POST", many),
                    ("POST /v1/apiKeys/verify", VERIFY, one_verify_file, "POST", "1"),
                ):
                    measured = await _measure(server.url, path, file, load, warmup, method=method)
                    cases.append(Case("Keyplane", request, keys, measured.result))
        payload_file = peers.write_payload(space.root, payload)
        bare_post: Case | None = None
        for kind, venv, name in (
            ("starlette", starlette_venv, "bare Starlette"),
            ("fastapi", fastapi_venv, "bare FastAPI"),
        ):
            log(name)
            headers = {"ApiKey": seeded.sample[0].value}
            async with peers.bare_server(kind, venv, space.root, payload_file, headers) as bare:
                measured = await _measure(bare.url, AUTHENTICATED, keys_file, load, warmup)
                cases.append(
                    Case(name, "GET /v1/users/info, no auth", f"{many} (unused)", measured.result)
                )
                if kind == "starlette":
                    # Not a goal's baseline: what reading a POST body costs the bare route.
                    measured = await _measure(
                        bare.url, VERIFY, verify_file, load, warmup, method="POST"
                    )
                    bare_post = Case(
                        name, "POST, reads the JSON body, no auth", f"{many}", measured.result
                    )
        assert bare_post is not None
        cases.append(bare_post)
        async with postgres_database() as peer_db:
            peer = await peers.prepare_peer(
                peer_venv,
                peer_db,
                space.root,
                payload_file,
                keys=args.keys,
                sample=args.distinct_keys,
            )
            log(f"peer: seeded {args.keys:,} keys in {peer.seed_seconds:.1f} s")
            peer_keys = space.write_keys("peer-keys.txt", [f"Api-Key {k}" for k in peer.sample])
            peer_one = space.write_keys("peer-key.txt", [f"Api-Key {peer.sample[0]}"])
            async with peer.server(
                space.root, worker_class=args.peer_worker_class, threads=args.peer_threads
            ) as server:
                await peers.check_peer(server.url, peer.sample[0])
                for file, keys in ((peer_keys, many), (peer_one, "1")):
                    measured = await _measure(
                        server.url, AUTHENTICATED, file, load, warmup, header="Authorization"
                    )
                    cases.append(
                        Case("DRF + HasAPIKey", "GET /v1/users/info", keys, measured.result)
                    )
    _report_comparison(
        args,
        cases,
        postgres,
        seeded.seconds,
        peer.seed_seconds,
        (starlette_venv, fastapi_venv, peer_venv),
    )


def _report_comparison(
    args: argparse.Namespace,
    cases: list[Case],
    postgres: str,
    keyplane_seed_seconds: float,
    peer_seed_seconds: float,
    venvs: tuple[peers.Venv, peers.Venv, peers.Venv],
) -> None:
    healthz, info, info_1, verify, verify_1, starlette, _fastapi, starlette_post, peer, _ = (
        case.result for case in cases
    )
    starlette_venv, fastapi_venv, peer_venv = venvs
    print()
    print(
        f"PostgreSQL {postgres}; {args.keys:,} keys in each database (Keyplane: seeded in "
        f"{keyplane_seed_seconds:.1f} s; the peer: {peer_seed_seconds:.1f} s). One worker "
        f"each, {args.connections} connections. Load over {args.distinct_keys:,} keys at "
        "random, or one key (every request the same). Verify: the tenant admin's ApiKey of "
        'the verified key\'s tenant, body {"key": ...}. Latencies in ms.'
    )
    print(f"- bare Starlette: {peers.frozen(starlette_venv, peers.BARE_STARLETTE)}")
    print(f"- bare FastAPI: {peers.frozen(fastapi_venv, peers.BARE_FASTAPI)}")
    print(
        "- peer: "
        + peers.frozen(
            peer_venv,
            (
                "Django",
                "djangorestframework",
                "djangorestframework-api-key",
                "psycopg",
                "psycopg-binary",
                "gunicorn",
            ),
        )
        + f"; {peers.peer_serving(args.peer_worker_class, args.peer_threads)}"
    )
    print()
    print(
        table(
            ["server", "request", "keys", "rps", "p50", "p90", "p99", "max"],
            [
                [
                    case.server,
                    case.request,
                    case.keys,
                    f"{case.result.rps:,.0f}",
                    _ms(case.result.p50_ms),
                    _ms(case.result.p90_ms),
                    _ms(case.result.p99_ms),
                    _ms(case.result.max_ms),
                ]
                for case in cases
            ],
        )
    )
    many = f"{args.distinct_keys:,} keys"
    rows = []
    for name, result, one in (("users/info", info, info_1), ("verify", verify, verify_1)):
        rows += [
            _ratio_row(
                f"{name} rps / peer rps ({many} each)",
                result.rps / peer.rps,
                f">= {PEER_GOAL:g}x",
                result.rps >= PEER_GOAL * peer.rps,
                "x",
            ),
            _ratio_row(
                f"{name} rps / Keyplane /healthz rps",
                result.rps / healthz.rps,
                f">= {HEALTHZ_GOAL:.0%}",
                result.rps >= HEALTHZ_GOAL * healthz.rps,
                "%",
            ),
            _ratio_row(
                f"{name} rps / bare Starlette rps",
                result.rps / starlette.rps,
                f">= {STARLETTE_GOAL:.0%}",
                result.rps >= STARLETTE_GOAL * starlette.rps,
                "%",
            ),
            _ratio_row(
                f"{name} p99, {many} / 1 key",
                result.p99_ms / one.p99_ms,
                f"<= {P99_GOAL:g}x",
                result.p99_ms <= P99_GOAL * one.p99_ms,
                "x",
            ),
        ]
    print()
    print(table(["goal", "measured", "target", "met"], rows))
    print()
    print(
        f"Context, not a goal: bare Starlette answers a POST that reads its JSON body at "
        f"{starlette_post.rps / starlette.rps:.0%} of its GET rate; verify runs at "
        f"{verify.rps / starlette_post.rps:.0%} of that POST route."
    )


if __name__ == "__main__":
    run(main)
