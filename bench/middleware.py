"""Benchmark 5: a tenant's own service protected by ``KeyplaneAuth``, with its one-second
cache against its invalidation-feed mode.

One ``keyplane serve`` (one worker) and two copies of ``examples/inventory_service`` (one
uvicorn process each), both verifying through that Keyplane with a tenant admin's key:

- **cache 1 s**: ``KeyplaneAuth(cache_seconds=1)``, the default: a verified key is trusted
  for a second, then asked about again;
- **feed**: ``KeyplaneAuth(invalidation_feed=True, cache_seconds=300)``: verified keys are
  kept while the service is subscribed to ``GET /v1/apiKeys/invalidations``, and dropped
  when Keyplane says they changed.

Measured for each: rps, p50 and p99 of ``GET /items`` with wrk (per-request keys over
``--keys`` keys), then ``--rounds`` revocations: warm a fresh key on the service, revoke it
through Keyplane, and poll the service until its first 401: the time from Keyplane's 204
to that 401, and how many requests the service accepted after the 204.

    .venv/bin/python bench/middleware.py
    .venv/bin/python bench/middleware.py --keys 200 --duration 3 --warmup 1 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import (
    HOST,
    Load,
    SeededKey,
    SeedPlan,
    Server,
    Workspace,
    database,
    free_port,
    log,
    machine_summary,
    migrate,
    percentile,
    run,
    run_wrk,
    seed,
    table,
    workspace,
)
from peers import ProcessServer, ReadyCheck

REPOSITORY = Path(__file__).resolve().parent.parent
ROUND_TIMEOUT_S = 5.0


@dataclass
class Outcome:
    mode: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    refusal_ms: list[float] = field(default_factory=list)
    accepted_after_answer: int = 0
    lost: int = 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--keys", type=int, default=1000, help="keys the load is spread over")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    return parser.parse_args()


def _service(
    space: Workspace, keyplane_url: str, verifier: SeededKey, *, feed: bool
) -> ProcessServer:
    """The example service under uvicorn, as its own process group."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
    env.update(
        {
            "KEYPLANE_URL": keyplane_url,
            "KEYPLANE_VERIFIER_KEY": verifier.value,
            "KEYPLANE_CACHE_SECONDS": "300" if feed else "1",
            "KEYPLANE_INVALIDATION_FEED": "1" if feed else "0",
            "PYTHONPATH": str(REPOSITORY),
        }
    )
    command = [sys.executable, "-m", "uvicorn", "examples.inventory_service.app:app"]
    command += ["--host", HOST, "--port", str(port), "--no-access-log"]
    return ProcessServer(
        "feed" if feed else "cache",
        command,
        port=port,
        env=env,
        cwd=REPOSITORY,
        log_dir=space.root,
        ready=ReadyCheck("/healthz", {}),
    )


async def _revocations(
    service_url: str,
    keyplane_url: str,
    admin: SeededKey,
    keys: list[SeededKey],
    outcome: Outcome,
) -> None:
    async with (
        httpx.AsyncClient(base_url=service_url, timeout=10) as service,
        httpx.AsyncClient(base_url=keyplane_url, timeout=10) as keyplane,
    ):
        for key in keys:
            headers = {"ApiKey": key.value}
            for _ in range(3):
                warm = await service.get("/items", headers=headers)
                if warm.status_code != 200:
                    raise RuntimeError(f"warming answered {warm.status_code}: {warm.text}")
            revoke = await keyplane.patch(
                f"/v1/apiKeys/{key.uid}", headers={"ApiKey": admin.value}, json={"isActive": False}
            )
            answered = time.perf_counter()
            if revoke.status_code != 204:
                raise RuntimeError(f"revoke answered {revoke.status_code}: {revoke.text}")
            while True:
                response = await service.get("/items", headers=headers)
                arrived = time.perf_counter()
                if response.status_code == 401:
                    outcome.refusal_ms.append((arrived - answered) * 1000)
                    break
                if response.status_code == 200:
                    outcome.accepted_after_answer += 1
                if arrived - answered > ROUND_TIMEOUT_S:
                    outcome.lost += 1
                    break


async def main() -> None:
    args = _arguments()
    print(f"Machine: {machine_summary()}")
    outcomes: list[Outcome] = []
    with workspace() as space:
        async with database(args.backend, space.root) as db:
            env = space.environment(
                db, auth_failure_burst=1_000_000, auth_failure_rate_per_second=1_000_000
            )
            await migrate(env)
            plan = SeedPlan(
                tenants=1,
                users=10,
                keys=args.keys + 2 * args.rounds + 10,
                audit_events=0,
                sample=args.keys + 2 * args.rounds,
            )
            seeded = await seed(db, plan, space.secret)
            admin = seeded.tenants[0].admin_key
            load_keys = seeded.sample[: args.keys]
            revoked = seeded.sample[args.keys :]
            keys_file = space.write_keys("load", [key.value for key in load_keys])
            async with Server(env, space.root) as keyplane:
                for index, feed in enumerate((False, True)):
                    outcome = Outcome("feed, cache 300 s" if feed else "cache 1 s")
                    async with _service(space, keyplane.url, admin, feed=feed) as service:
                        url = service.url
                        log(f"{outcome.mode}: {url}")
                        await run_wrk(url, "/items", keys_file, Load(args.warmup, args.connections))
                        result = await run_wrk(
                            url, "/items", keys_file, Load(args.duration, args.connections)
                        )
                        if result.failed:
                            raise RuntimeError(f"{outcome.mode}: {result.failed} failed requests")
                        outcome.rps = result.rps
                        outcome.p50_ms = result.p50_ms
                        outcome.p99_ms = result.p99_ms
                        mine = revoked[index * args.rounds : (index + 1) * args.rounds]
                        await _revocations(url, keyplane.url, admin, mine, outcome)
                    outcomes.append(outcome)
    print()
    print(
        f"{args.backend}, one Keyplane worker; the example service under uvicorn, one process; "
        f"wrk {args.connections} connections, {args.duration:.0f} s, keys over {args.keys}; "
        f"{args.rounds} revocations each. Latencies in ms."
    )
    print()
    rows = [
        [
            outcome.mode,
            f"{outcome.rps:,.0f}",
            f"{outcome.p50_ms:.2f}",
            f"{outcome.p99_ms:.2f}",
            f"{percentile(outcome.refusal_ms, 0.5):.1f}" if outcome.refusal_ms else "-",
            f"{percentile(outcome.refusal_ms, 0.99):.1f}" if outcome.refusal_ms else "-",
            outcome.accepted_after_answer,
            outcome.lost,
        ]
        for outcome in outcomes
    ]
    print(
        table(
            [
                "service mode",
                "rps",
                "p50",
                "p99",
                "revoke → refusal p50",
                "p99",
                "accepted after the revoke's answer",
                "never refused",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    run(main)
