"""``keyplane scan`` as a person, a script and a pre-commit hook run it: a real subprocess
over real files, and ``--report`` against a real HTTP server on loopback that records what
it was sent. No run ever prints a key's whole value."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyplane.client import AsyncClient
from keyplane.kit.db import transaction
from keyplane.kit.keys import generate_api_key
from keyplane.models import Notification
from keyplane.settings import Settings
from tests.cli.helpers import clean_env
from tests.live import free_port, running_server


@dataclass
class Scan:
    env: dict[str, str]
    cwd: Path
    # Key values that must appear in no output.
    keys: list[str] = field(default_factory=list)

    def key(self) -> str:
        value = generate_api_key()
        self.keys.append(value)
        return value

    def __call__(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "keyplane", "scan", *args],
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=60,
            check=False,
        )
        stdout, stderr = result.stdout.decode(), result.stderr.decode()
        assert "Traceback" not in stderr, stderr
        for value in self.keys:
            assert value not in stdout
            assert value not in stderr
        return subprocess.CompletedProcess(result.args, result.returncode, stdout, stderr)


@pytest.fixture
def scan(tmp_path: Path) -> Scan:
    work = tmp_path / "work"
    work.mkdir()
    return Scan(env=clean_env(tmp_path), cwd=work)


def hint(value: str) -> str:
    return f"kp_…{value[-4:]}"


# --- files, folders, standard input ---------------------------------------------------------


def test_a_file_with_a_key_prints_where_it_is_and_exits_1(scan: Scan) -> None:
    key = scan.key()
    (scan.cwd / "settings.py").write_text(f'DEBUG = True\nAPI_KEY = "{key}"\n')
    result = scan("settings.py")
    assert result.returncode == 1, result.stderr
    assert result.stdout == f"settings.py:2:12: {hint(key)}\n"
    assert "Found 1 Keyplane API key(s) in 1 file(s)" in result.stderr


def test_clean_files_exit_0_and_print_nothing(scan: Scan) -> None:
    (scan.cwd / "clean.py").write_text("token = 'kp_notakey'\n" * 100)
    near_miss = scan.key()[:-1]
    (scan.cwd / "short.env").write_text(f"KEYPLANE_API_KEY={near_miss}\n")
    result = scan("clean.py", "short.env")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_folders_are_walked_skipping_git_and_links(scan: Scan, tmp_path: Path) -> None:
    first, second, in_git, outside = scan.key(), scan.key(), scan.key(), scan.key()
    (scan.cwd / "src" / "app").mkdir(parents=True)
    (scan.cwd / "src" / "app" / "config.json").write_text(f'{{\n  "apiKey": "{first}"\n}}\n')
    (scan.cwd / ".env").write_text(f"A=1\nB={second}\n")
    (scan.cwd / ".git").mkdir()
    (scan.cwd / ".git" / "COMMIT_EDITMSG").write_text(in_git)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text(outside)
    os.symlink(elsewhere, scan.cwd / "linked")
    os.symlink(elsewhere / "secret.txt", scan.cwd / "linked.txt")
    result = scan(".")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f".env:2:3: {hint(second)}",
        f"src/app/config.json:2:14: {hint(first)}",
    ]
    assert "in 2 file(s)" in result.stderr
    # A link given by name is followed, as cat would.
    assert scan("linked.txt").stdout == f"linked.txt:1:1: {hint(outside)}\n"


def test_binary_files_are_scanned(scan: Scan) -> None:
    key = scan.key()
    (scan.cwd / "module.pyc").write_bytes(b"\x00\x01\xff" * 1000 + b"\xda\x29" + key.encode())
    result = scan("module.pyc")
    assert result.returncode == 1
    assert result.stdout == f"module.pyc:1:3003: {hint(key)}\n"


@pytest.mark.parametrize("args", [(), ("-",)])
def test_standard_input(scan: Scan, args: tuple[str, ...]) -> None:
    key = scan.key()
    result = scan(*args, stdin=f"log line\ncreated {key}\n".encode())
    assert result.returncode == 1
    assert result.stdout == f"<stdin>:2:9: {hint(key)}\n"
    assert (scan(*args, stdin=b"nothing\n").returncode, scan(*args, stdin=b"").returncode) == (0, 0)


def test_json_output(scan: Scan) -> None:
    key = scan.key()
    (scan.cwd / "a.txt").write_text(f"x {key}\n")
    result = scan("a.txt", "-o", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == [
        {"path": "a.txt", "line": 1, "column": 3, "keyHint": key[-4:]}
    ]
    clean = scan("--output", "json", stdin=b"none")
    assert (clean.returncode, json.loads(clean.stdout)) == (0, [])


def test_an_unreadable_path_is_exit_2_after_scanning_the_rest(scan: Scan) -> None:
    key = scan.key()
    (scan.cwd / "a.txt").write_text(key)
    result = scan("missing.txt", "a.txt")
    assert result.returncode == 2
    assert result.stdout == f"a.txt:1:1: {hint(key)}\n"
    assert "Error: missing.txt: No such file or directory" in result.stderr


def test_wrong_usage_is_exit_2(scan: Scan) -> None:
    assert scan("--no-such-option").returncode == 2
    result = scan("--report", "not a url", stdin=b"")
    assert result.returncode == 2
    assert "is not a server URL" in result.stderr


# --- --report against a real server -------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP server on loopback that records each request and answers as told."""

    url: str
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    status: int = 202
    answer: dict[str, Any] | None = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorded = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorded.requests.append((self.path, self.headers["Content-Type"], body))
            answer = recorded.answer or {"received": len(body["leaks"])}
            payload = json.dumps(answer).encode()
            self.send_response(recorded.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorded.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_report_sends_each_key_to_the_leak_endpoint(scan: Scan, receiver: Receiver) -> None:
    first, second = scan.key(), scan.key()
    (scan.cwd / "a.env").write_text(f"KEY={first}\nSAME={first}\n")
    (scan.cwd / "b.py").write_text(f"key = '{second}'\n")
    result = scan("a.env", "b.py", "--report", receiver.url + "/")
    assert result.returncode == 1, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert f"Reported 2 leaked key(s) to {receiver.url}/v1/apiKeys/leaks (2 received)" in (
        result.stderr
    )
    # The same key twice in one file is one leak.
    assert receiver.requests == [
        (
            "/v1/apiKeys/leaks",
            "application/json",
            {
                "leaks": [
                    {"value": first, "url": "a.env", "source": "keyplane-scan"},
                    {"value": second, "url": "b.py", "source": "keyplane-scan"},
                ]
            },
        )
    ]


def test_report_with_a_source_url(scan: Scan, receiver: Receiver) -> None:
    key = scan.key()
    source = "https://github.com/acme/shop/blob/main/deploy.sh"
    result = scan("--report", receiver.url, "--source-url", source, stdin=key.encode())
    assert result.returncode == 1, result.stderr
    (request,) = receiver.requests
    assert request[2] == {"leaks": [{"value": key, "url": source, "source": "keyplane-scan"}]}


def test_many_keys_are_reported_in_batches(scan: Scan, receiver: Receiver) -> None:
    values = [scan.key() for _ in range(150)]
    result = scan("--report", receiver.url, stdin="\n".join(values).encode())
    assert result.returncode == 1, result.stderr
    assert [len(body["leaks"]) for _, _, body in receiver.requests] == [100, 50]
    sent = [leak["value"] for _, _, body in receiver.requests for leak in body["leaks"]]
    assert sent == values


def test_nothing_found_sends_nothing(scan: Scan, receiver: Receiver) -> None:
    result = scan("--report", receiver.url, stdin=b"clean\n")
    assert (result.returncode, receiver.requests) == (0, [])


def test_a_refused_report_is_exit_3_and_never_shows_the_value(
    scan: Scan, receiver: Receiver
) -> None:
    key = scan.key()
    receiver.status = 429
    # Even a server that echoes the value in its error gets it shown as the hint only.
    receiver.answer = {"code": "RateLimited", "message": f"Too many reports ({key})."}
    result = scan("--report", receiver.url, stdin=key.encode())
    assert result.returncode == 3
    assert result.stdout == f"<stdin>:1:1: {hint(key)}\n"
    assert (
        f"Error: could not report to {receiver.url}/v1/apiKeys/leaks: HTTP 429 [RateLimited] "
        f"Too many reports ({hint(key)})." in result.stderr
    )


def test_an_unreachable_server_is_exit_3(scan: Scan) -> None:
    key = scan.key()
    url = f"http://127.0.0.1:{free_port()}"
    result = scan("--report", url, stdin=key.encode())
    assert result.returncode == 3
    assert f"Error: could not report to {url}/v1/apiKeys/leaks:" in result.stderr


# --- against a real Keyplane server -----------------------------------------------------


async def test_a_reported_key_stops_working_and_its_owner_is_told(
    scan: Scan, settings: Settings
) -> None:
    """``keyplane scan --report`` against Keyplane itself: the key found in a file is
    revoked before the report answers, and its owner gets a notification naming it by its
    hint, never its value."""
    async with running_server(settings) as server:
        world = server.world
        async with AsyncClient(
            server.url, email=world.alice.email, org="acme", password=world.alice.password
        ) as alice:
            created = await alice.create_api_key("leaky")
            scan.keys.append(created.value)
            (scan.cwd / "deploy.sh").write_text(f"export KEYPLANE_KEY={created.value}\n")
            result = await asyncio.to_thread(scan, "deploy.sh", "--report", server.url)
            assert result.returncode == 1, result.stderr
            assert f"deploy.sh:1:21: {hint(created.value)}" in result.stdout

            async with httpx.AsyncClient(base_url=server.url) as http:
                refused = await http.get("/v1/users/info", headers={"ApiKey": created.value})
            assert refused.status_code == 401
            assert refused.json()["code"] == "ApiKeyRevoked"
            async with transaction(server.runtime.sessionmaker, writes=False) as session:
                notices = (
                    await session.scalars(
                        select(Notification).where(Notification.user_uid == world.alice.uid)
                    )
                ).all()
            assert notices, "the owner was not told"
            assert all(created.value not in notice.body for notice in notices)
            assert any(created.value[-4:] in notice.body for notice in notices)
