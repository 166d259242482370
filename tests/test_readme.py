"""The README's terminal session, curl walk-through and SDK snippet, run as written against
a real server, and what they print compared with what the README shows.

Only the server address changes (the README says 127.0.0.1:8000; the test's server listens
on a free port) and ``PW`` holds the tenant admin's password, as ``make run`` prints it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
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
        # As `make run` creates it.
        await make_user(
            runtime,
            demo,
            "admin@demo.keyplane.local",
            role="tenant-admin",
            first_name="Demo",
            last_name="Admin",
            password=PASSWORD,
        )
    finally:
        await engine.dispose()
    async with server_process(settings) as url:
        yield url


async def run(
    command: list[str],
    stdin: str,
    url: str,
    tmp_path: Path,
    *,
    merge_stderr: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")},
        "PW": PASSWORD,
        "KEYPLANE_CONFIG_DIR": str(tmp_path / "config"),
        # `keyplane` and `python3` as a newcomer's shell finds them after `make run`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        # Merged as a terminal shows them, in the order they were written.
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env=environment,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.replace(README_URL, url).encode()), 120
    )
    assert process.returncode is not None
    return process.returncode, out.decode(), (err or b"").decode()


# What changes from one run to the next; the rest of the output must be as the README shows.
# Each value is replaced by a placeholder of the same width, so table columns stay aligned.
_VARYING = [
    (re.compile(r"\b[0-9a-f]{24}\b"), "<uid>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"), "<date>"),
    (re.compile(r'"ref":"[0-9a-f]+"'), '"ref":"<ref>"'),
    (re.compile(r"kp_…[0-9A-Za-z]{4}"), "kp_…<hint>"),
    (re.compile(r"Session stored in \S+/session\.json\."), "Session stored in <path>."),
]


def _same_width(placeholder: str) -> Callable[[re.Match[str]], str]:
    return lambda found: placeholder.ljust(len(found.group()))


def _stable(lines: list[str]) -> list[str]:
    stable = []
    for line in lines:
        for pattern, placeholder in _VARYING:
            line = pattern.sub(_same_width(placeholder), line)
        stable.append(line.rstrip())
    return stable


def _session(block: str) -> list[tuple[str, list[str]]]:
    """The README's ``$ command`` lines, each with the lines it shows as that command's output."""
    session: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            session.append((line.removeprefix("$ "), []))
        else:
            session[-1][1].append(line)
    return session


async def test_the_terminal_session_prints_what_the_readme_shows(
    demo_server: str, tmp_path: Path
) -> None:
    session = _session(readme_block("cli"))
    assert len(session) >= 10
    # A separator line before each command, to tell their outputs apart.
    script = "".join(
        f"printf '\\n\\036%d\\n' {number}\n{command}\n"
        for number, (command, _) in enumerate(session)
    )
    returncode, out, _ = await run(
        ["bash", "-u", "-o", "pipefail"], script, demo_server, tmp_path, merge_stderr=True
    )
    assert returncode == 0, out
    outputs = re.split(r"\n*\036\d+\n", out)
    assert outputs[0].strip() == "", out
    assert len(outputs) == len(session) + 1, out
    for (command, shown), printed in zip(session, outputs[1:], strict=True):
        expected = _stable([line.replace(README_URL, demo_server) for line in shown])
        assert _stable(printed.rstrip("\n").splitlines()) == expected, command
    # The key was printed only into $KEY: nothing on the terminal looks like one.
    assert not re.search(r"\bkp_[0-9A-Za-z]{38}\b", out)


# `# {...}` and `# 204` comments right after a command show what it prints; `...` elides.
_SHOWN_OUTPUT = re.compile(r"# (\{.*\}|\d{3})")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through needs curl")
async def test_the_curl_walk_through_prints_what_the_readme_shows(
    demo_server: str, tmp_path: Path
) -> None:
    block = readme_block("curl")
    placeholder = "PW='the password make run printed'"
    assert block.count(placeholder) == 1
    # Observe the key file just before the walk-through removes it.
    removal = 'rm -f "$KEY_FILE"'
    assert block.count(removal) == 1
    script = (
        block.replace(placeholder, f"PW='{PASSWORD}'")
        .replace(README_URL, demo_server)
        .replace(removal, f'stat -c "%a" "$KEY_FILE"\n{removal}')
    )
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    returncode, out, err = await run(
        ["bash", "-e", "-u", "-o", "pipefail"],
        script,
        demo_server,
        tmp_path,
        env={"TMPDIR": str(temporary)},
    )
    assert returncode == 0, err
    *printed, key_file_mode = out.splitlines()
    shown = [found.group(1) for found in map(_SHOWN_OUTPUT.fullmatch, block.splitlines()) if found]
    assert len(shown) >= 7
    assert len(printed) == len(shown), out
    for line, expected in zip(printed, shown, strict=True):
        pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
        assert re.fullmatch(pattern, line), (line, expected)
    # The key's value was in a file only its owner could read, and is gone.
    assert key_file_mode == "600"
    assert list(temporary.iterdir()) == []


async def test_the_sdk_snippet_runs_as_written(demo_server: str, tmp_path: Path) -> None:
    returncode, out, err = await run(
        [sys.executable, "-"], readme_block("sdk"), demo_server, tmp_path
    )
    assert returncode == 0, err
    lines = out.splitlines()
    assert lines[1] == "demo"
    assert lines[2] == "ApiKeyRevoked"
    assert lines[3].startswith("nightly-report False ")
