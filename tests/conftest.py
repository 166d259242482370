"""Fixtures shared by every test: real databases (SQLite files and a PostgreSQL server),
migrated by Alembic, and the real app driven through httpx."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import httpx
import pytest
import redis
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url

from keyplane.app import create_app
from keyplane.kit.migrations import upgrade_to_head
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.helpers import World, build_world

POSTGRES_URL = os.environ.get(
    "KEYPLANE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TABLES = [
    "audit_events",
    "auth_sessions",
    "api_keys",
    "cache_instances",
    "cache_invalidations",
    "key_leaks",
    "login_lockouts",
    "notifications",
    "permission_roles",
    "permissions",
    "resource_limits",
    "tenant_policies",
    "users",
    "webhook_deliveries",
    "webhook_events",
    "webhook_endpoints",
    "tenants",
]


# Property tests: a bounded number of examples in `make test`; HYPOTHESIS_PROFILE=long for
# a deeper search. Examples share the test's database (the function-scoped fixtures), so
# each example cleans up after itself; deadline=None because a request to PostgreSQL on a
# busy machine may take a while without anything being wrong.
hypothesis_settings.register_profile(
    "keyplane",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
hypothesis_settings.register_profile(
    "long", parent=hypothesis_settings.get_profile("keyplane"), max_examples=2000
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "keyplane"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(message: str) -> NoReturn:
    """Skips, with the reason; under CI=true, fails instead (the tests must run there)."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run)")
    pytest.skip(message)


# Redis for the shared-limit tests: synchronous on purpose (redis-py's blocking client),
# so that async fixtures can use them too, inside the running event loop.
REDIS_URL = os.environ.get("KEYPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1) as client:
            client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        yield client


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of the test's own; what it wrote under it is deleted afterwards."""
    prefix = f"keyplane-test:{secrets.token_hex(8)}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


async def _connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        timeout=5,
    )


async def _execute(url: str, statement: str) -> None:
    connection = await _connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


# The fixtures below are synchronous on purpose: they run their own short event loop with
# asyncio.run, outside the loop the tests share.
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run on the PostgreSQL server, migrated once."""
    try:
        asyncio.run(_execute(POSTGRES_URL, "SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"keyplane_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """Each test runs once on a copy of a migrated SQLite file and once on PostgreSQL with
    every table emptied."""
    if request.param == "sqlite":
        target = tmp_path / "keyplane.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_execute(url, f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    return url


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_key": "test-secret-" + "x" * 40,
        # Cheap argon2 for tests; production defaults are exercised in tests/kit.
        "password_time_cost": 1,
        "password_memory_kib": 8,
        # Background work runs when a test calls it (or turns this on): deterministic.
        "background_jobs_enabled": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://keyplane.test") as http:
        yield http


@pytest.fixture
async def world(client: httpx.AsyncClient, runtime: Runtime) -> World:
    return await build_world(client, runtime)


# The matrices count their cells in the process that ran them (tests.matrix.CASES); the
# count travels with each test's report, so that the summary adds up every process's cells
# when the suite runs in several (pytest-xdist, as `make test` runs it).
_MATRIX_PROPERTY = "matrix_cases"
_MATRIX_TOTALS: Counter[str] = Counter()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    from tests.matrix import CASES

    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "teardown" and CASES:
        report.user_properties.append((_MATRIX_PROPERTY, dict(CASES)))
        CASES.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == _MATRIX_PROPERTY and isinstance(value, dict):
            _MATRIX_TOTALS.update({str(matrix): int(count) for matrix, count in value.items()})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    cases = _MATRIX_TOTALS
    passed = terminalreporter.stats.get("passed", [])
    permission_cells = sum(
        1 for report in passed if "tests/api_keys/test_permissions.py" in report.nodeid
    )
    if permission_cells:
        cases["permission table (API keys, by actor and credential)"] += permission_cells
    if cases:
        terminalreporter.write_sep("-", "cases this run checked")
        for matrix, count in sorted(cases.items()):
            terminalreporter.write_line(f"{matrix}: {count}")
        matrices = sum(
            count for matrix, count in cases.items() if not matrix.endswith(("(fuzz)", "(faults)"))
        )
        if matrices:
            terminalreporter.write_line(f"authorization matrix cells in all: {matrices}")
