"""Plumbing shared by the benchmark scripts: databases, seeding, servers, wrk, RSS.

Everything a script starts is stopped in a ``finally`` (servers are killed by process
group, temporary PostgreSQL databases are dropped), and ``run`` makes sure that those
``finally`` blocks also run when the script itself is stopped (Ctrl-C, SIGTERM). Load goes
only to 127.0.0.1. Key values are written to files in a temporary directory for wrk to read
and are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from keyplane.kit.ids import new_uid
from keyplane.kit.keys import (
    API_KEY_PREFIX,
    BASE62_ALPHABET,
    RANDOM_LENGTH,
    SecretHasher,
    checksum,
    is_well_formed_api_key,
)
from keyplane.kit.passwords import PasswordHasher
from keyplane.models import AuditEvent

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk_keys.lua"
HOST = "127.0.0.1"
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Cheap argon2 so that seeding 10,000 users costs one hash, and logins stay cheap.
PASSWORD_TIME_COST = 1
PASSWORD_MEMORY_KIB = 8


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs a script's ``main``. Ctrl-C cancels it and SIGTERM raises SystemExit inside it,
    so that every ``finally`` (server kill, DROP DATABASE) runs either way."""

    def _exit(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, _exit)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        log("interrupted: everything this script started has been stopped")
        raise SystemExit(130) from None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True, slots=True)
class Database:
    backend: str  # "sqlite" or "postgresql"
    url: str  # as Keyplane takes it (KEYPLANE_DATABASE_URL); asyncpg takes it too
    sqlite_path: Path | None = None


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[Database]:
    """A fresh ``bench_<random>`` database on the local server, dropped at the end."""
    name = f"bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield Database("postgresql", f"{base}/{name}")
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def sqlite_database(directory: Path) -> AsyncIterator[Database]:
    path = directory / f"bench-{secrets.token_hex(4)}.db"
    try:
        yield Database("sqlite", f"sqlite:///{path}", sqlite_path=path)
    finally:
        _remove_sqlite_files(path)


def _sqlite_files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]


def _remove_sqlite_files(path: Path) -> None:
    for file in _sqlite_files(path):
        file.unlink(missing_ok=True)


def _sqlite_size(path: Path) -> int:
    return sum(file.stat().st_size for file in _sqlite_files(path)[:2] if file.exists())


@contextlib.asynccontextmanager
async def database(backend: str, directory: Path) -> AsyncIterator[Database]:
    if backend == "sqlite":
        async with sqlite_database(directory) as found:
            yield found
    elif backend == "postgresql":
        async with postgres_database() as found:
            yield found
    else:
        raise ValueError(f"unknown backend {backend!r}")


async def database_size_bytes(db: Database) -> int:
    if db.sqlite_path is not None:
        return _sqlite_size(db.sqlite_path)
    connection = await asyncpg.connect(db.url)
    try:
        size: int = await connection.fetchval("SELECT pg_database_size(current_database())")
        return size
    finally:
        await connection.close()


async def table_sizes_bytes(db: Database, tables: Sequence[str]) -> dict[str, int]:
    """PostgreSQL: each table with its indexes and TOAST."""
    connection = await asyncpg.connect(db.url)
    try:
        return {
            table: int(await connection.fetchval("SELECT pg_total_relation_size($1)", table))
            for table in tables
        }
    finally:
        await connection.close()


async def key_lookups(db: Database) -> int | None:
    """PostgreSQL: index scans of ``api_keys.key_hash`` so far, i.e. keys read from the
    database (None on SQLite, which keeps no such count). A backend reports its counts
    when it exits at the latest: read this after the server has stopped."""
    if db.sqlite_path is not None:
        return None
    connection = await asyncpg.connect(db.url)
    try:
        scans = await connection.fetchval(
            "SELECT COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_indexes "
            "WHERE relname = 'api_keys' AND indexrelname LIKE '%key_hash%'"
        )
        return int(scans)
    finally:
        await connection.close()


# --------------------------------------------------------------------------- environment


@dataclass
class Workspace:
    """A temporary directory (data dir, logs, key files) and the server secret."""

    root: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def environment(self, db: Database, **overrides: str | int | float | bool) -> dict[str, str]:
        """What ``keyplane`` reads: the caller's environment without any KEYPLANE_* of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
        env.update(
            KEYPLANE_ENV="test",
            KEYPLANE_SECRET_KEY=self.secret,
            KEYPLANE_DATABASE_URL=db.url,
            KEYPLANE_DATA_DIR=str(self.root / "data"),
            KEYPLANE_PASSWORD_TIME_COST=str(PASSWORD_TIME_COST),
            KEYPLANE_PASSWORD_MEMORY_KIB=str(PASSWORD_MEMORY_KIB),
        )
        for name, value in overrides.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"KEYPLANE_{name.upper()}"] = text
        return env

    def write_keys(self, name: str, values: Sequence[str]) -> Path:
        """Key values for wrk, one a line, readable by this user only."""
        path = self.root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(value + "\n" for value in values)
        return path


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    with tempfile.TemporaryDirectory(prefix="keyplane-bench-") as root:
        yield Workspace(Path(root))


async def keyplane_command(env: dict[str, str], *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyplane",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"keyplane {' '.join(args)} failed:\n{output.decode(errors='replace')}")


async def migrate(env: dict[str, str]) -> None:
    await keyplane_command(env, "db", "upgrade")


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True, slots=True)
class SeedPlan:
    tenants: int
    users: int  # in all, spread evenly; the first user of each tenant is its tenant admin
    keys: int  # in all, dealt round-robin to every user (admins included)
    audit_events: int  # in all, spread evenly over the tenants
    sample: int  # how many key values (chosen at random) to keep for load


@dataclass(frozen=True, slots=True)
class SeededKey:
    uid: str
    value: str
    tenant_uid: str
    user_uid: str


@dataclass(frozen=True, slots=True)
class SeededTenant:
    uid: str
    name: str
    admin_uid: str
    admin_email: str
    # The tenant admin's first key, for calls that need a tenant admin.
    admin_key: SeededKey
    keys: int
    audit_events: int


@dataclass(frozen=True, slots=True)
class Seeded:
    tenants: list[SeededTenant]
    sample: list[SeededKey]
    password: str  # every seeded user's password
    seconds: float


class _KeyValues:
    """Well-formed key values, fast: the same format and distribution as
    ``generate_api_key`` (32 base62 characters from the OS CSPRNG, then the checksum), with
    bytes drawn in bulk (``secrets.choice`` per character is ~10x slower: 1,000,000 keys
    would take half a minute)."""

    # 248 = 4 * 62: bytes below it map uniformly onto the alphabet; the rest are dropped.
    _TABLE = bytes(ord(BASE62_ALPHABET[i % 62]) for i in range(248)) + bytes(8)
    _DROP = bytes(range(248, 256))

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def next(self) -> str:
        if self._at + RANDOM_LENGTH > len(self._buffer):
            fresh = os.urandom(1 << 16).translate(None, self._DROP).translate(self._TABLE)
            self._buffer = self._buffer[self._at :] + fresh
            self._at = 0
        body = API_KEY_PREFIX + self._buffer[self._at : self._at + RANDOM_LENGTH].decode()
        self._at += RANDOM_LENGTH
        return body + checksum(body)


_API_KEY_COLUMNS = (
    "uid",
    "tenant_uid",
    "user_uid",
    "created_by_uid",
    "name",
    "description",
    "expires_at",
    "is_active",
    "key_hash",
    "created_at",
    "modified_at",
    "last_used_at",
)
_AUDIT_COLUMNS = (
    "uid",
    "tenant_uid",
    "occurred_at",
    "actor_type",
    "actor_user_uid",
    "actor_email",
    "actor_name",
    "auth_method",
    "action",
    "action_type",
    "resource_kind",
    "resource_uid",
    "resource_name",
    "outcome",
    "client_address",
    "message",
)
# Columns newer schemas have; filled when the models have them.
_AUDIT_NAME_COLUMNS = tuple(
    name for name in ("actor_first_name", "actor_last_name") if name in AuditEvent.__table__.c
)
_USER_COLUMNS = (
    "uid",
    "tenant_uid",
    "email",
    "first_name",
    "last_name",
    "password_hash",
    "role",
    "is_active",
    "created_at",
    "modified_at",
    "last_sign_in_at",
)
_TENANT_COLUMNS = ("uid", "name", "name_key", "created_at")
_CHUNK = 50_000


class _Writer:
    """Bulk rows into either backend: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None

    async def __aenter__(self) -> _Writer:
        if self.db.sqlite_path is not None:
            self._sqlite = sqlite3.connect(self.db.sqlite_path, isolation_level=None)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = await asyncpg.connect(self.db.url)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("COMMIT" if exc_type is None else "ROLLBACK")
            if exc_type is None:
                self._sqlite.execute("ANALYZE")
            self._sqlite.close()
        if self._pg is not None:
            try:
                if exc_type is None:
                    # What autovacuum would have done on a database that grew over time:
                    # statistics, and a visibility map for index-only scans.
                    await self._pg.execute("VACUUM ANALYZE")
            finally:
                await self._pg.close()

    async def rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._sqlite is not None:
            marks = ", ".join("?" for _ in columns)
            self._sqlite.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                [tuple(_sqlite_value(value) for value in row) for row in rows],
            )
        else:
            await self._pg.copy_records_to_table(table, records=rows, columns=list(columns))


def _sqlite_value(value: object) -> object:
    # Keyplane stores naive UTC on SQLite in SQLAlchemy's DateTime text format.
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
    return value


async def seed(db: Database, plan: SeedPlan, secret: str) -> Seeded:
    """Tenants, users, keys and audit events straight into the migrated schema, the way the
    ORM would write them. Keys are real values, hashed with the servers' ``secret``."""
    if plan.users < plan.tenants or plan.keys < plan.users:
        raise ValueError("need at least one user per tenant and one key per user")
    started = time.perf_counter()
    rng = random.Random()  # noqa: S311 (which keys to sample, not secrets)
    now = datetime.now(UTC)
    password = secrets.token_urlsafe(18)
    password_hash = PasswordHasher(
        time_cost=PASSWORD_TIME_COST, memory_kib=PASSWORD_MEMORY_KIB
    ).hash(password)

    tenant_uids = [new_uid() for _ in range(plan.tenants)]
    tenant_names = [f"bench-{index:03d}" for index in range(plan.tenants)]
    # User u belongs to tenant u % tenants; users 0..tenants-1 are the tenant admins.
    user_uids = [new_uid() for _ in range(plan.users)]
    emails = [
        f"user{index}@{tenant_names[index % plan.tenants]}.bench.example"
        for index in range(plan.users)
    ]
    sample_indexes = set(
        rng.sample(range(plan.users, plan.keys), min(plan.sample, plan.keys - plan.users))
    )

    async with _Writer(db) as writer:
        await writer.rows(
            "tenants",
            _TENANT_COLUMNS,
            [
                (uid, name, name, now - timedelta(days=400))
                for uid, name in zip(tenant_uids, tenant_names, strict=True)
            ],
        )
        users = []
        for index, uid in enumerate(user_uids):
            admin = index < plan.tenants
            created = now - timedelta(days=400) + timedelta(seconds=index)
            users.append(
                (
                    uid,
                    tenant_uids[index % plan.tenants],
                    emails[index],
                    "Admin" if admin else "User",
                    str(index),
                    password_hash,
                    "tenant-admin" if admin else "user",
                    True,
                    created,
                    created,
                    None,
                )
            )
        await writer.rows("users", _USER_COLUMNS, users)
        del users

        hasher = SecretHasher(secret.encode())
        values = _KeyValues()
        admin_keys: dict[int, SeededKey] = {}
        sample: list[SeededKey] = []
        key_uids: list[str] = []  # for the audit events' resource uids
        per_tenant = [0] * plan.tenants
        chunk: list[tuple[Any, ...]] = []
        expires = now + timedelta(days=365)
        for index in range(plan.keys):
            user = index % plan.users
            tenant = user % plan.tenants
            per_tenant[tenant] += 1
            value = values.next()
            uid = new_uid()
            created = now - timedelta(seconds=plan.keys - index)
            chunk.append(
                (
                    uid,
                    tenant_uids[tenant],
                    user_uids[user],
                    user_uids[tenant],  # created by the tenant admin
                    f"key-{index}",
                    "",
                    expires,
                    True,
                    hasher.hash(value),
                    created,
                    created,
                    None,
                )
            )
            if len(key_uids) < plan.audit_events:
                key_uids.append(uid)
            if index < plan.tenants:
                admin_keys[tenant] = SeededKey(uid, value, tenant_uids[tenant], user_uids[user])
            elif index in sample_indexes:
                sample.append(SeededKey(uid, value, tenant_uids[tenant], user_uids[user]))
            if len(chunk) >= _CHUNK:
                await writer.rows("api_keys", _API_KEY_COLUMNS, chunk)
                chunk = []
        await writer.rows("api_keys", _API_KEY_COLUMNS, chunk)
        chunk = []

        # One "key created" record per key, as the API writes them, oldest first.
        per_tenant_events = [0] * plan.tenants
        for index in range(plan.audit_events):
            key_index = index % max(1, len(key_uids))
            tenant = (key_index % plan.users) % plan.tenants
            per_tenant_events[tenant] += 1
            chunk.append(
                (
                    new_uid(),
                    tenant_uids[tenant],
                    now - timedelta(seconds=plan.audit_events - index),
                    "user",
                    user_uids[tenant],
                    emails[tenant],
                    f"Admin {tenant}",
                    "session",
                    "apiKey.create",
                    "create",
                    "apiKey",
                    key_uids[key_index],
                    f"key-{key_index}",
                    "success",
                    HOST,
                    "",
                    *("Admin", str(tenant))[: len(_AUDIT_NAME_COLUMNS)],
                )
            )
            if len(chunk) >= _CHUNK:
                await writer.rows("audit_events", _AUDIT_COLUMNS + _AUDIT_NAME_COLUMNS, chunk)
                chunk = []
        await writer.rows("audit_events", _AUDIT_COLUMNS + _AUDIT_NAME_COLUMNS, chunk)

    rng.shuffle(sample)
    assert all(is_well_formed_api_key(key.value) for key in sample[:100])
    tenants = [
        SeededTenant(
            uid=tenant_uids[index],
            name=tenant_names[index],
            admin_uid=user_uids[index],
            admin_email=emails[index],
            admin_key=admin_keys[index],
            keys=per_tenant[index],
            audit_events=per_tenant_events[index],
        )
        for index in range(plan.tenants)
    ]
    return Seeded(tenants, sample, password, time.perf_counter() - started)


# --------------------------------------------------------------------------- servers


async def stop_process_group(process: asyncio.subprocess.Process, grace: float = 20) -> None:
    """SIGTERM to the child's whole process group (workers included), SIGKILL after
    ``grace`` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """``keyplane serve`` as a child process group; killed (group-wide) when the block ends."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, workers: int = 1) -> None:
        self.env = env
        self.workers = workers
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_dir / f"serve-{self.port}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        with self.log_path.open("wb") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "keyplane",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                # A file, not a pipe: nobody reads a pipe during a run, and a full one blocks.
                stderr=log_file,
                start_new_session=True,
            )
        try:
            await self._wait_until_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.url) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"keyplane serve exited with {self.process.returncode}:\n"
                        + self.log_path.read_text(errors="replace")[-4000:]
                    )
                started = self.log_path.read_text(errors="replace").count(
                    "Application startup complete"
                )
                if started >= self.workers:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/healthz")).status_code == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError("keyplane serve did not start within 60 s")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process_group(self.process)

    def rss_bytes(self) -> int:
        """Resident memory of the server's whole process tree (master and workers)."""
        assert self.process is not None
        return tree_rss_bytes(self.process.pid)

    def worker_rss_bytes(self) -> list[int]:
        """Resident memory of each process serving requests (the one process, or each
        uvicorn worker when there are several)."""
        assert self.process is not None
        children = _children(self.process.pid)
        pids = children if self.workers > 1 and children else [self.process.pid]
        return [_rss(pid) for pid in pids]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += _rss(current)
        pending.extend(_children(current))
    return total


# --------------------------------------------------------------------------- wrk


def wrk_version() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        return "wrk not found"
    # wrk prints its version and usage, and exits 1.
    result = subprocess.run(  # noqa: S603 (a fixed argument list)
        [wrk, "--version"], capture_output=True, text=True, check=False
    )
    return (result.stdout or result.stderr).splitlines()[0].strip()


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        """Socket errors, timeouts and HTTP statuses above 399."""
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk run's shape: how long, how many connections, over how many threads."""

    seconds: float
    connections: int
    threads: int = 1


async def run_wrk(
    url: str,
    path: str,
    keys_file: Path,
    load: Load,
    *,
    mode: str = "random",
    method: str = "GET",
    header: str = "ApiKey",
) -> WrkResult:
    """wrk against ``url + path`` with an ``ApiKey`` header per request from ``keys_file``:
    ``random`` picks one at random each time, ``sequential`` walks the file once per
    thread-slice (every request a key not used before, until the file runs out).
    ``method`` and ``header`` change the request's method and the header the line goes
    into; a line ``value<TAB>body`` also sends ``body`` as JSON."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("load goes to 127.0.0.1 only")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    seconds = max(1, round(load.seconds))
    process = await asyncio.create_subprocess_exec(
        wrk,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url + path,
        "--",
        str(keys_file),
        path,
        mode,
        str(load.threads),
        method,
        header,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds + 30)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("WRK_JSON "):
            data = json.loads(line.removeprefix("WRK_JSON "))
            return WrkResult(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
                errors={
                    name: int(data[name])
                    for name in ("connect", "read", "write", "status", "timeout")
                },
            )
    raise RuntimeError(f"wrk gave no result:\n{text}\n{err.decode(errors='replace')}")


# --------------------------------------------------------------------------- reporting


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(lines)


def mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def machine_summary() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}); load average {os.getloadavg()[0]:.2f} at start"


def goal(met: bool) -> str:
    return "met" if met else "NOT met"
