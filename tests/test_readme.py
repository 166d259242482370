"""The README's terminal session and SDK snippet, run as written against a real server.

Only the server address changes (the README says 127.0.0.1:8000; the test's server listens
on a free port) and ``PW`` holds the tenant admin's password, as ``make run`` prints it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyplane.kit.db import create_engine
from keyplane.runtime import Runtime
from tests.conftest import make_settings
from tests.live import server_process
from tests.tenants.helpers import make_tenant
from tests.users.helpers import make_user

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "http://127.0.0.1:8000"
PASSWORD = "a demo password for the readme"

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def readme_block(name: str) -> str:
    """The fenced block right after ``<!-- readme-test: name -->``."""
    text = README.read_text()
    found = re.search(
        rf"<!-- readme-test: {name} -->\n```[a-z]*\n(.*?)\n```", text, flags=re.DOTALL
    )
    assert found, f"README has no block marked readme-test: {name}"
    return found.group(1)


@pytest.fixture
async def demo_server(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    settings = make_settings(database_url, tmp_path / "server")
    engine = create_engine(settings.resolved_database_url)
    try:
        runtime = Runtime.build(settings, engine)
        demo = await make_tenant(runtime, "demo")
        await make_user(
            runtime, demo, "admin@demo.keyplane.local", role="tenant-admin", password=PASSWORD
        )
    finally:
        await engine.dispose()
    async with server_process(settings) as url:
        yield url


async def run(command: list[str], stdin: str, url: str, tmp_path: Path) -> tuple[int, str, str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")},
        "PW": PASSWORD,
        "KEYPLANE_CONFIG_DIR": str(tmp_path / "config"),
        # `keyplane` and `python3` as a newcomer's shell finds them after `make run`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.replace(README_URL, url).encode()), 120
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_terminal_session_runs_as_written(demo_server: str, tmp_path: Path) -> None:
    commands = [
        line.removeprefix("$ ")
        for line in readme_block("cli").splitlines()
        if line.startswith("$ ")
    ]
    assert len(commands) >= 10
    returncode, out, err = await run(
        ["bash", "-u", "-o", "pipefail"], "\n".join(commands) + "\n", demo_server, tmp_path
    )
    assert returncode == 0, err
    assert "Logged in to demo" in out
    assert "Revoked API key" in out
    assert '"code":"ApiKeyRevoked"' in out
    assert "Re-activated API key" in out
    assert "Deleted API key" in out
    assert "Error [ApiKeyNotFound]" in err
    assert "apiKey.delete" in out
    # The key was printed only into $KEY: nothing on the terminal looks like one.
    assert not re.search(r"\bkp_[0-9A-Za-z]{38}\b", out + err)


async def test_the_sdk_snippet_runs_as_written(demo_server: str, tmp_path: Path) -> None:
    returncode, out, err = await run(
        [sys.executable, "-"], readme_block("sdk"), demo_server, tmp_path
    )
    assert returncode == 0, err
    lines = out.splitlines()
    assert lines[1] == "demo"
    assert lines[2] == "ApiKeyRevoked"
    assert lines[3].startswith("nightly-report False ")
