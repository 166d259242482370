"""Schemathesis against ``/openapi.json``: every operation, as a tenant admin and as a user,
over real HTTP to a real server on a SQLite file. Its examples, coverage, fuzzing and
stateful phases run (the stateful one follows the links it infers, e.g. from a created key's
``uid`` to ``GET/PUT/PATCH/DELETE /v1/apiKeys/{uid}``). No answer may be a 5xx; every answer
must be a status the document lists, with the documented content type, headers and body;
a deleted resource must stay gone, a created one must be there, and an operation that needs
credentials must refuse a request without them.

Schemathesis runs as its own command (its CLI is its stable interface) against a server in
this process. ``KEYPLANE_FUZZ_EXAMPLES`` sets the examples per operation (default 15: a
bounded run inside ``make test``; ``make fuzz`` raises it), ``KEYPLANE_FUZZ_SEED`` replays a
run (every run prints its seed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from keyplane.app import create_app
from keyplane.kit.db import create_engine
from keyplane.kit.migrations import upgrade_to_head
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from tests.conftest import TABLES, _execute, make_settings
from tests.helpers import World
from tests.live import free_port, seed
from tests.matrix import count
from tests.users.helpers import Actor

FUZZ_EXAMPLES = int(os.environ.get("KEYPLANE_FUZZ_EXAMPLES", "15"))
FUZZ_SEED = os.environ.get("KEYPLANE_FUZZ_SEED")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
]


@dataclass
class FuzzTarget:
    url: str
    world: World
    data_dir: Path
    database: str


@contextmanager
def _uvicorn_thread(settings: Settings) -> Iterator[str]:
    """``tests.live.serving`` for a synchronous test: the server gets its own thread."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the Keyplane server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


async def _seed(settings: Settings) -> World:
    engine = create_engine(settings.resolved_database_url)
    try:
        return await seed(Runtime.build(settings, engine))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        database_url = f"sqlite:///{data_dir / 'keyplane.db'}"
        upgrade_to_head(database_url)
    else:
        # The run's PostgreSQL database, emptied; the next test empties it again.
        database_url = request.getfixturevalue("postgres_url")
        asyncio.run(_execute(database_url, f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    settings = make_settings(
        database_url,
        data_dir,
        # The fuzzer sends garbage credentials on purpose, and wrong passwords for the very
        # accounts it logs in with; the limiter and the lockout are tested elsewhere.
        auth_failure_rate_per_second=10_000,
        auth_failure_burst=100_000,
        login_lockout_threshold=1_000_000,
        # Hundreds of creates: the per-user limit would soon turn them all into 409s.
        api_key_default_per_user_limit=1000,
    )
    world = asyncio.run(_seed(settings))
    with _uvicorn_thread(settings) as url:
        yield FuzzTarget(url=url, world=world, data_dir=data_dir, database=request.param)


def _toml_string(value: str) -> str:
    # A JSON string of printable ASCII is a TOML basic string.
    assert value.isascii()
    assert value.isprintable()
    return json.dumps(value)


def _config(caller: Actor, user_uid: str) -> str:
    """Schemathesis' configuration: log in as ``caller`` (again whenever a 401 says the
    session ended, e.g. after the fuzzer's own logout), and use real identifiers where a
    made-up one would only ever meet 404: the caller's tenant, and ``user_uid`` for
    ``/v1/users/{uid}``."""
    login = {"emailId": caller.email, "org": caller.tenant_name, "password": caller.password}
    payload = ", ".join(f"{name} = {_toml_string(value)}" for name, value in login.items())
    return f"""\
[generation]
with-security-parameters = false
database = "none"
max-examples = {FUZZ_EXAMPLES}

[auth.dynamic.openapi.Authorization]
path = "/v1/auth/authenticate"
payload = {{ {payload} }}
extract_selector = "/Authorization"

[[operations]]
include-path = "/v1/tenants/{{tenantUid}}/resourceLimits"
include-method = "GET"
parameters = {{ tenantUid = {_toml_string(caller.tenant_uid)} }}

[[operations]]
include-path = "/v1/users/{{uid}}"
parameters = {{ uid = {_toml_string(user_uid)} }}

# The invalidation feed is an endless event stream: Schemathesis reads a response to its
# end, so a 200 would hang the run. Its authorisation is swept by test_credential_matrix.
[[operations]]
include-path = "/v1/apiKeys/invalidations"
enabled = false
"""


def _run_schemathesis(target: FuzzTarget, caller: Actor, user_uid: str, name: str) -> None:
    config_path = target.data_dir / f"schemathesis-{name}.toml"
    config_path.write_text(_config(caller, user_uid))
    command = [
        *[sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_path)],
        *["run", f"{target.url}/openapi.json", "--checks", ",".join(CHECKS)],
        *["--workers", "1", "--warnings", "off"],
        *(["--seed", FUZZ_SEED] if FUZZ_SEED else []),
    ]
    environment = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=max(600, FUZZ_EXAMPLES * 30),
        env=environment,
        cwd=target.data_dir,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"Schemathesis as {name} found problems:\n{output}"
    counted = re.search(r"Test cases:\s*\n\s*(\d+) generated", output)
    seed_used = re.search(r"Seed: (\d+)", output)
    assert counted is not None, output
    count(f"schemathesis cases as {name} on {target.database} (fuzz)", int(counted.group(1)))
    # The figure the README reports (shown with -s or -rP).
    print(
        f"schemathesis as {name}: {counted.group(1)} cases, "
        f"{FUZZ_EXAMPLES} examples per operation, seed {seed_used.group(1) if seed_used else '?'}"
    )


def test_fuzz_as_tenant_admin(fuzz_target: FuzzTarget) -> None:
    # Bob is the admin's to edit, deactivate and delete; nobody else relies on him here.
    world = fuzz_target.world
    _run_schemathesis(fuzz_target, world.admin, world.bob.uid, "tenant-admin")


def test_fuzz_as_user(fuzz_target: FuzzTarget) -> None:
    # A user may read themselves and nobody else, and change no one.
    world = fuzz_target.world
    _run_schemathesis(fuzz_target, world.alice, world.alice.uid, "user")
