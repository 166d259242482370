"""The ``keyplane`` command as an operator uses it, against a real server on loopback."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from keyplane import __version__
from keyplane.cli.main import app
from keyplane.models import Role


def _env(data_dir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPLANE_")}
    env.update(
        {
            "KEYPLANE_ENV": "development",
            "KEYPLANE_DATA_DIR": str(data_dir),
            "KEYPLANE_DATABASE_URL": database_url,
            "KEYPLANE_PASSWORD_TIME_COST": "1",
            "KEYPLANE_PASSWORD_MEMORY_KIB": "8",
        }
    )
    return env


def _keyplane(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyplane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'keyplane.db'}")


def test_init_creates_the_tenant_and_prints_a_generated_password(env: dict[str, str]) -> None:
    result = _keyplane(env, "init", "--tenant", "acme", "--admin-email", "root@acme.example")
    assert result.returncode == 0, result.stderr
    assert "Created tenant 'acme'" in result.stdout
    assert re.search(r"Generated password \(shown once\): \S{16,}", result.stdout)

    again = _keyplane(env, "init", "--tenant", "ACME", "--admin-email", "x@acme.example")
    assert again.returncode == 1
    assert "already exists" in again.stderr

    quiet = _keyplane(env, "init", "--if-empty", "--tenant", "b", "--admin-email", "b@b.example")
    assert quiet.returncode == 0
    assert "nothing was created" in quiet.stdout


def _admins(env: dict[str, str]) -> list[tuple[str, str, str]]:
    database = env["KEYPLANE_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT email, first_name, last_name FROM users WHERE role = ?",
            (Role.TENANT_ADMIN.value,),
        ).fetchall()
    connection.close()
    return [(str(email), str(first), str(last)) for email, first, last in rows]


def test_init_stores_the_admins_name(env: dict[str, str], tmp_path: Path) -> None:
    named = _keyplane(
        env,
        *("init", "--tenant", "acme", "--admin-email", "root@acme.example"),
        *("--admin-first-name", "Ada", "--admin-last-name", "Lovelace"),
    )
    assert named.returncode == 0, named.stderr
    assert _admins(env) == [("root@acme.example", "Ada", "Lovelace")]

    # Without names, a name that is not the email, so that the console never shows
    # "root@acme.example (root@acme.example)".
    other = _env(tmp_path / "other", f"sqlite:///{tmp_path / 'other' / 'keyplane.db'}")
    unnamed = _keyplane(other, "init", "--tenant", "acme", "--admin-email", "root@acme.example")
    assert unnamed.returncode == 0, unnamed.stderr
    assert _admins(other) == [("root@acme.example", "Tenant", "Admin")]


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"keyplane {__version__}\n"


def _command_paths(group: TyperGroup, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            yield from _command_paths(command, (*path, name))
        else:
            yield (*path, name)


def test_help_shows_flags_as_flags() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    paths = list(_command_paths(root))
    assert ("keys", "delete") in paths
    assert len(paths) >= 25
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        for placeholder in ("<bool>", "BOOLEAN", "<boolean>"):
            assert placeholder not in result.output, (path, result.output)
    # The flags are still there, as flags.
    help_text = runner.invoke(app, ["keys", "delete", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--yes\s+-y\s+Do not ask for confirmation", help_text), help_text


def test_users_create_lists_every_role_the_server_accepts() -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["users", "create", "--help"], env={"COLUMNS": "200"}).output
    line = next(line for line in help_text.splitlines() if "--role" in line)
    assert f"one of: {', '.join(role.value for role in Role)}." in line
    assert {"tenant-admin", "user", "verifier"} <= {role.value for role in Role}

    refused = runner.invoke(
        app,
        ["users", "create", "x@acme.example", "--role", "owner", "--url", "http://127.0.0.1:9"],
        env={"COLUMNS": "200"},
    )
    assert refused.exit_code == 2
    assert "'tenant-admin', 'user', 'verifier'" in refused.output


def test_serve_listens_where_the_environment_says_and_prints_it(env: dict[str, str]) -> None:
    assert _keyplane(env, "db", "upgrade").returncode == 0
    port = _free_port()
    env.update({"KEYPLANE_HOST": "127.0.0.1", "KEYPLANE_PORT": str(port)})
    log = Path(env["KEYPLANE_DATA_DIR"]) / "serve.log"
    # No --host or --port: the environment alone.
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "keyplane", "serve"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait_for(f"http://127.0.0.1:{port}", process, log)
        printed = log.read_text()
        assert f"Console:       http://127.0.0.1:{port}/\n" in printed
        assert (
            f"Keyplane API:  http://127.0.0.1:{port}/v1   "
            f"(interactive docs: http://127.0.0.1:{port}/docs)\n"
        ) in printed
        assert httpx.get(f"http://127.0.0.1:{port}/v1/users/info").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for(base_url: str, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"server did not start: {log.read_text()}")
        time.sleep(0.1)


def test_production_without_a_secret_is_a_clear_error(env: dict[str, str]) -> None:
    env["KEYPLANE_ENV"] = "production"
    result = _keyplane(env, "db", "upgrade")
    assert result.returncode == 2
    assert "KEYPLANE_SECRET_KEY is required" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[str]:
    created = _keyplane(
        env,
        "init",
        "--tenant",
        "acme",
        "--admin-email",
        "root@acme.example",
        "--admin-password",
        "a long enough password",
    )
    assert created.returncode == 0, created.stderr
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "keyplane", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"server did not start: {process.stdout.read() if process.stdout else ''}"
                )
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        # The server log must never contain a credential.
        assert "kp_" not in output
        assert "kps_" not in output
        assert "a long enough password" not in output


def test_readme_walkthrough_against_a_real_server(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as http:
        login = http.post(
            "/v1/auth/authenticate",
            json={
                "emailId": "root@acme.example",
                "org": "acme",
                "password": "a long enough password",
            },
        )
        assert login.status_code == 200
        token = login.json()["Authorization"]

        created = http.post(
            "/v1/apiKeys",
            headers={"Authorization": token},
            json={"metadata": {"name": "ci", "annotations": {"description": "CI"}}, "spec": {}},
        )
        assert created.status_code == 201
        key, uid = created.json()["apiKey"], created.json()["uid"]

        assert http.get("/v1/users/info", headers={"ApiKey": key}).json()["orgName"] == "acme"
        revoke = http.patch(f"/v1/apiKeys/{uid}", headers={"ApiKey": key}, json={"isActive": False})
        assert revoke.status_code == 204
        refused = http.get("/v1/users/info", headers={"ApiKey": key})
        assert refused.status_code == 401
        assert refused.json()["code"] == "ApiKeyRevoked"

        reactivate = http.put(
            f"/v1/apiKeys/{uid}/state", headers={"Authorization": token}, json={"isActive": True}
        )
        assert reactivate.status_code == 204
        assert http.get("/v1/users/info", headers={"ApiKey": key}).status_code == 200

        assert (
            http.delete(f"/v1/apiKeys/{uid}", headers={"Authorization": token}).status_code == 204
        )
        assert http.get("/v1/users/info", headers={"ApiKey": key}).status_code == 401
        assert http.get(f"/v1/users/info?apiKey={key}").status_code == 400


def test_reset_password(env: dict[str, str]) -> None:
    _keyplane(env, "init", "--tenant", "acme", "--admin-email", "root@acme.example")
    result = _keyplane(env, "reset-password", "--tenant", "acme", "--email", "root@acme.example")
    assert result.returncode == 0, result.stderr
    assert "Generated password (shown once)" in result.stdout
    missing = _keyplane(env, "reset-password", "--tenant", "acme", "--email", "no@acme.example")
    assert missing.returncode == 1


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["keys", "create", "x", "--expires-in-days", "0"], "must be at least 1."),
        (["keys", "create", "x", "--expires-in-days", "soon"], "must be a whole number."),
        (["audit", "list", "--limit", "-3"], "must be at least 0."),
    ],
)
def test_bad_option_values_are_refused_in_keyplanes_words(
    arguments: list[str], expected: str
) -> None:
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    option = next(argument for argument in arguments if argument.startswith("--"))
    assert f"Invalid value for '{option}': {expected}" in output, output
    assert "Input should" not in output
