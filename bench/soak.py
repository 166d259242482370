"""Soak: mixed traffic against a real ``keyplane serve`` for a bounded time, failing on
errors or on memory that keeps growing.

    python bench/soak.py [--seconds 180] [--workers 4] [--database-url URL]

It starts its own server on 127.0.0.1 (a SQLite file in a temporary directory unless
``--database-url`` names a PostgreSQL database, which gets a tenant of its own), creates a
tenant admin and one user per worker, and runs the workers until the time is up. Each
worker loops over: create a key, use it, have the tenant admin verify it, list keys (as
the user and as the admin), read the audit log, revoke it (and check that it is refused),
delete old keys, and fail to authenticate with a made-up key (401, or 429 once the
per-address limiter steps in: both expected).

Every ``--sample-seconds`` (10) it prints the requests, the unexpected answers (any status
an operation should not give, 5xx, or no answer at all) and the server's resident memory.
It exits 1 when there was more than ``--max-errors`` (0) unexpected answer, when the
second half of the run had over twice as many as the first, or when the memory at the end
(median of the last three samples) exceeds the highest sample of the warm-up (the first
third of the run) by more than ``--rss-tolerance`` (10 %) plus ``--rss-slack-mib`` (16).

Self-contained on purpose: it needs only the installed ``keyplane`` and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
PASSWORD_LENGTH = 24
KEYS_KEPT_PER_WORKER = 4
BASE62 = string.digits + string.ascii_letters


@dataclass
class Window:
    """What happened between two samples."""

    requests: int = 0
    errors: int = 0
    operations: Counter[str] = field(default_factory=Counter)


@dataclass
class Sample:
    at: float
    requests: int
    errors: int
    rss_mib: float


@dataclass
class Soak:
    url: str
    admin_headers: dict[str, str]
    window: Window = field(default_factory=Window)
    samples: list[Sample] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    total_requests: int = 0
    total_errors: int = 0

    def count(self, operation: str, ok: bool, detail: str) -> None:
        self.window.requests += 1
        self.window.operations[operation] += 1
        self.total_requests += 1
        if not ok:
            self.window.errors += 1
            self.total_errors += 1
            if len(self.error_examples) < 10:
                self.error_examples.append(f"{operation}: {detail}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """Resident memory of the server process and its children (uvicorn workers), in MiB."""
    total_kib = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(child) for child in children)
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def made_up_key() -> str:
    """Well-formed-looking but unknown: the checksum is wrong, so it never reaches the
    database; a failed authentication all the same."""
    return "kp_" + "".join(secrets.choice(BASE62) for _ in range(38))


@contextlib.contextmanager
def keyplane_server(environment: dict[str, str], log_path: Path) -> Iterator[tuple[int, str]]:
    """``keyplane serve`` in its own process group; yields its pid and URL."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (a fixed argument list)
            [sys.executable, "-m", "keyplane", "serve", "--host", HOST, "--port", str(port)],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"keyplane serve exited:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("keyplane serve did not start within 30 s")
            time.sleep(0.1)
        yield process.pid, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def login(http: httpx.AsyncClient, email: str, org: str, password: str) -> dict[str, str]:
    response = await http.post(
        "/v1/auth/authenticate", json={"emailId": email, "org": org, "password": password}
    )
    response.raise_for_status()
    return {"Authorization": response.json()["Authorization"]}


async def worker(soak: Soak, index: int, headers: dict[str, str], deadline: float) -> None:
    rng = random.Random(index)  # noqa: S311 (a traffic mix, not a secret)
    keys: list[tuple[str, str]] = []  # (uid, value), oldest first
    serial = 0
    admin = soak.admin_headers
    async with httpx.AsyncClient(base_url=soak.url, timeout=30) as http:

        async def call(
            operation: str, expected: set[int], method: str, path: str, **options: Any
        ) -> httpx.Response | None:
            try:
                response = await http.request(method, path, **options)
            except httpx.HTTPError as exc:
                soak.count(operation, False, repr(exc))
                return None
            ok = response.status_code in expected
            soak.count(operation, ok, f"{response.status_code} {response.text[:200]}")
            return response if ok else None

        while time.monotonic() < deadline:
            serial += 1
            body = {"metadata": {"name": f"soak-{index}-{serial}"}, "spec": {}}
            created = await call("create", {201}, "POST", "/v1/apiKeys", json=body, headers=headers)
            if created is not None:
                keys.append((created.json()["uid"], created.json()["apiKey"]))
            if not keys:
                continue
            uid, value = keys[-1]
            for _ in range(rng.randint(1, 5)):
                await call("use", {200}, "GET", "/v1/users/info", headers={"ApiKey": value})
            verified = await call(
                "verify", {200}, "POST", "/v1/apiKeys/verify", json={"key": value}, headers=admin
            )
            if verified is not None and verified.json()["code"] != "VALID":
                soak.count("verify-result", False, verified.text[:200])
            await call("list", {200}, "GET", "/v1/apiKeys", headers=headers)
            await call("list-admin", {200}, "GET", "/v1/apiKeys?limit=50", headers=admin)
            if rng.random() < 0.2:
                await call("audits", {200}, "GET", "/v1/audits?limit=20", headers=admin)
            for _ in range(rng.randint(1, 3)):
                bad = {"ApiKey": made_up_key()}
                await call("failed-auth", {401, 429}, "GET", "/v1/users/info", headers=bad)
            if rng.random() < 0.5:
                revoke = {"isActive": False}
                path = f"/v1/apiKeys/{uid}"
                await call("revoke", {204}, "PATCH", path, json=revoke, headers=headers)
                # 401, or 429 once this address has failed too often: refused either way.
                refused = await call(
                    "use-revoked", {401, 429}, "GET", "/v1/users/info", headers={"ApiKey": value}
                )
                if refused is not None and refused.json()["code"] not in {
                    "ApiKeyRevoked",
                    "TooManyAuthFailures",
                }:
                    soak.count("use-revoked-code", False, refused.text[:200])
            while len(keys) > KEYS_KEPT_PER_WORKER:
                old_uid, _ = keys.pop(0)
                await call("delete", {204}, "DELETE", f"/v1/apiKeys/{old_uid}", headers=headers)


async def sampler(soak: Soak, pid: int, every: float, started: float, deadline: float) -> None:
    print(f"{'time':>6} {'requests':>9} {'req/s':>7} {'errors':>7} {'RSS MiB':>8}")
    next_at = started + every
    while next_at <= deadline + 0.5:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        window, soak.window = soak.window, Window()
        sample = Sample(next_at - started, window.requests, window.errors, rss_mib(pid))
        soak.samples.append(sample)
        print(
            f"{sample.at:>5.0f}s {sample.requests:>9} {sample.requests / every:>7.0f} "
            f"{sample.errors:>7} {sample.rss_mib:>8.1f}",
            flush=True,
        )
        next_at += every


async def soak_run(arguments: argparse.Namespace, pid: int, url: str, org: str, pw: str) -> Soak:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        admin = await login(http, f"admin@{org}.example", org, pw)
        users = []
        for index in range(arguments.workers):
            email = f"user{index}@{org}.example"
            response = await http.post(
                "/v1/users",
                json={"spec": {"emailId": email, "roles": ["user"], "password": pw}},
                headers=admin,
            )
            response.raise_for_status()
            users.append(await login(http, email, org, pw))
    soak = Soak(url=url, admin_headers=admin)
    started = time.monotonic()
    deadline = started + arguments.seconds
    await asyncio.gather(
        sampler(soak, pid, arguments.sample_seconds, started, deadline),
        *(worker(soak, index, users[index], deadline) for index in range(arguments.workers)),
    )
    return soak


def verdict(soak: Soak, arguments: argparse.Namespace) -> list[str]:
    """The reasons to fail; none when the soak passed."""
    problems = []
    if soak.total_errors > arguments.max_errors:
        problems.append(
            f"{soak.total_errors} unexpected answers (at most {arguments.max_errors} allowed); "
            f"first ones: {soak.error_examples}"
        )
    half = len(soak.samples) // 2
    first, second = soak.samples[:half], soak.samples[half:]
    if sum(s.errors for s in second) > 2 * sum(s.errors for s in first) + arguments.max_errors:
        problems.append("unexpected answers grew: the second half had over twice the first")
    if len(soak.samples) < 6:
        problems.append("too few samples to judge memory: run for at least 6 sample periods")
        return problems
    warmup = soak.samples[: max(2, len(soak.samples) // 3)]
    baseline = max(s.rss_mib for s in warmup)
    final = statistics.median(s.rss_mib for s in soak.samples[-3:])
    allowed = baseline * (1 + arguments.rss_tolerance) + arguments.rss_slack_mib
    print(
        f"memory: {baseline:.1f} MiB after warm-up, {final:.1f} MiB at the end "
        f"(at most {allowed:.1f} MiB allowed)"
    )
    if final > allowed:
        problems.append(f"memory grew from {baseline:.1f} MiB to {final:.1f} MiB")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long (default 180)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument(
        "--database-url", default="", help="a PostgreSQL database (default: a SQLite file)"
    )
    parser.add_argument("--max-errors", type=int, default=0)
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    parser.add_argument("--rss-slack-mib", type=float, default=16.0)
    arguments = parser.parse_args()

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(1)

    # So that the server is stopped (the finally blocks run) when the soak itself is.
    signal.signal(signal.SIGTERM, stop)
    org = f"soak{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(PASSWORD_LENGTH)
    with tempfile.TemporaryDirectory(prefix="keyplane-soak-") as directory:
        data_dir = Path(directory)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
        environment.update(
            KEYPLANE_ENV="production",
            KEYPLANE_SECRET_KEY=secrets.token_urlsafe(48),
            KEYPLANE_DATA_DIR=str(data_dir),
            KEYPLANE_DATABASE_URL=arguments.database_url or f"sqlite:///{data_dir / 'soak.db'}",
        )
        # The password goes by the environment, not the command line (visible in ps).
        subprocess.run(  # noqa: S603 (a fixed argument list)
            [
                *[sys.executable, "-m", "keyplane", "init", "--tenant", org],
                *["--admin-email", f"admin@{org}.example"],
            ],
            env=environment | {"KEYPLANE_ADMIN_PASSWORD": password},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(
            f"soak: {arguments.seconds:.0f} s, {arguments.workers} workers, "
            f"{'PostgreSQL' if arguments.database_url else 'SQLite'}",
            flush=True,
        )
        with keyplane_server(environment, data_dir / "serve.log") as (pid, url):
            soak = asyncio.run(soak_run(arguments, pid, url, org, password))
    problems = verdict(soak, arguments)
    print(f"{soak.total_requests} requests, {soak.total_errors} unexpected answers")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("PASS: no unexpected answers, memory flat")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
