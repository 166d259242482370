"""The remote commands (``keyplane keys|users|audit|limits|login|logout|whoami``) run as a
real subprocess against a real server on loopback, on SQLite and on PostgreSQL.

Every run is checked for what must never happen: a traceback, or a password or key value
printed where it should not be (see ``Cli``)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from keyplane.cli.main import app
from keyplane.client import AuthenticationError, Client, NotFound
from keyplane.kit.db import create_engine
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.models import ApiKey
from keyplane.settings import Settings
from tests.cli.helpers import Cli, error_code, sdk_for, use_key_of
from tests.live import LiveServer, free_port

DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")


def _answer_on_a_terminal(cli: Cli, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdin on a pseudo-terminal, so that confirmation prompts are asked."""
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "keyplane", *args],
            env=cli.env,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            os.close(terminal)
            terminal = -1
            os.write(controller, answer.encode())
            stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    cli.check(stdout, stderr)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def _expire_now(settings: Settings, uid: str) -> None:
    """Moves a key's expiry into the past, as time passing would (the API refuses past
    expiries)."""

    async def write() -> None:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    update(ApiKey)
                    .where(ApiKey.uid == uid)
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_key_lifecycle_with_an_api_key(cli: Cli, live: LiveServer, settings: Settings) -> None:
    alice = live.world.alice
    use_key_of(cli, live, alice)

    # --quiet prints the value alone, ready for KEY=$(keyplane keys create ci --quiet).
    described = ("--description", "CI [bold]x[/bold]")
    quiet = cli.ok("keys", "create", "ci", *described, "--expires-in-days", "30", "--quiet")
    value = quiet.stdout.removesuffix("\n")
    assert quiet.stdout == f"{value}\n"
    assert quiet.stderr == ""
    assert is_well_formed_api_key(value)
    with Client(live.url, api_key=value) as by_key:
        assert by_key.whoami().user_uid == alice.uid
    cli.secrets.append(value)

    # Without --quiet: the value once on stdout, and a warning on stderr.
    expiry = (datetime.now(UTC) + timedelta(days=100)).replace(second=0, microsecond=0)
    second = cli("keys", "create", "second", "--expires-at", expiry.isoformat(), "-o", "json")
    assert second.returncode == 0, second.stderr
    assert "shown only this once" in second.stderr
    created = json.loads(second.stdout)
    assert is_well_formed_api_key(created["value"])
    assert created["name"] == "second"

    # Tables for people: aligned columns, UTC dates, no colour, the markup shown as text.
    keys = {key["name"]: key for key in cli.json("keys", "list")}
    assert set(keys) == {"cli", "ci", "second"}
    assert {key["user_uid"] for key in keys.values()} == {alice.uid}
    assert {key["state"] for key in keys.values()} == {"active"}
    assert datetime.fromisoformat(keys["second"]["expires_at"]) == expiry
    uid = keys["ci"]["uid"]
    table = cli.ok("keys", "list").stdout
    assert "\x1b[" not in table
    header, *rows = table.splitlines()
    assert header.split() == ["UID", "NAME", "KEY", "OWNER", "STATE", "EXPIRES", "LAST", "USED"]
    assert len(rows) == 3
    for column in ("NAME", "KEY", "OWNER", "STATE", "EXPIRES"):
        starts = {row[header.index(column)] for row in rows}
        assert " " not in starts, f"{column} is not aligned:\n{table}"
    ci_row = next(row for row in rows if row.startswith(uid))
    # The key is recognisable by its last 4 characters, and no more of it is shown.
    assert ci_row.split()[1:5] == ["ci", f"kp_…{value[-4:]}", alice.email, "Active"]
    assert keys["ci"]["key_hint"] == value[-4:]
    assert value[:-4] not in table
    assert DATE.search(ci_row)
    assert not any(line != line.rstrip() for line in table.splitlines())
    shown = cli.ok("keys", "show", uid).stdout
    assert "CI [bold]x[/bold]" in shown
    assert f"Alice Liddell <{alice.email}>" in shown
    assert re.search(rf"Key\s+kp_…{re.escape(value[-4:])}\n", shown)

    new_expiry = (datetime.now(UTC) + timedelta(days=10)).replace(second=0, microsecond=0)
    naive = new_expiry.replace(tzinfo=None).isoformat()  # read as UTC
    edited = cli.json("keys", "edit", uid, "--name", "ci-2", "--expires-at", naive)
    assert (edited["name"], edited["description"]) == ("ci-2", "CI [bold]x[/bold]")
    assert datetime.fromisoformat(edited["expires_at"]) == new_expiry

    assert "Revoked" in cli.ok("keys", "revoke", uid).stdout
    with Client(live.url, api_key=value, max_retries=0) as by_key:
        with pytest.raises(AuthenticationError):
            by_key.whoami()
        assert [key["uid"] for key in cli.json("keys", "list", "--inactive")] == [uid]
        assert cli.json("keys", "reactivate", uid)["state"] == "active"
        assert by_key.whoami().user_uid == alice.uid

    # One state per key: an expired key is Expired (not Active too); revoked and expired,
    # Inactive (revoked).
    old = cli.ok("keys", "create", "old", "--quiet").stdout.strip()
    cli.secrets.append(old)
    uids = {key["name"]: key["uid"] for key in cli.json("keys", "list")}
    for name in ("old", "second"):
        _expire_now(settings, uids[name])
    assert cli.ok("keys", "revoke", uids["second"]).returncode == 0
    states = {key["name"]: key["state"] for key in cli.json("keys", "list")}
    assert states == {"cli": "active", "ci-2": "active", "old": "expired", "second": "inactive"}
    cells = {line.split()[1]: line.split() for line in cli.ok("keys", "list").stdout.splitlines()}
    named = ("Active", "Expired", "Inactive")
    assert [state for state in named if state in cells["old"]] == ["Expired"]
    assert [state for state in named if state in cells["second"]] == ["Inactive"]

    # Destructive: no prompt possible on a non-terminal stdin, and "n" on a terminal.
    refused = cli("keys", "delete", uid)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    declined = _answer_on_a_terminal(cli, "n\n", "keys", "delete", uid)
    assert declined.returncode == 1
    assert "Delete API key 'ci-2'" in declined.stderr
    with sdk_for(live, alice) as sdk:
        assert sdk.get_api_key(uid).name == "ci-2"

    assert cli.json("keys", "delete", uid, "--yes") == {"uid": uid, "deleted": True}
    missing = cli("keys", "show", uid)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert error_code(missing) == "ApiKeyNotFound"


def test_a_tenant_admin_logged_in_with_a_stored_session(cli: Cli, live: LiveServer) -> None:
    world = live.world
    admin, bob = world.admin, world.bob
    cli.secrets.append(admin.password)

    login = cli.ok(
        "login",
        "--url",
        f"{live.url}/",
        "--email",
        admin.email,
        "--org",
        "acme",
        "--password-stdin",
        stdin=f"{admin.password}\n",
    )
    assert "Logged in to acme" in login.stdout
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_dir.stat().st_mode) == 0o700
    stored = json.loads(cli.session_file.read_text())
    assert stored["url"] == live.url
    token = stored["token"]
    assert token.startswith("kps_")
    cli.secrets.append(token)

    me = cli.json("whoami")
    assert (me["user_uid"], me["org_name"], me["auth"], me["url"]) == (
        admin.uid,
        "acme",
        "session",
        live.url,
    )

    # Keys of another user: --user to create and list them, --tenant-scope for all.
    bobs = cli.ok("keys", "create", "for-bob", "--user", bob.uid, "--quiet").stdout.strip()
    with Client(live.url, api_key=bobs) as by_key:
        assert by_key.whoami().user_uid == bob.uid
    cli.secrets.append(bobs)
    assert cli.json("keys", "list") == []
    assert [key["name"] for key in cli.json("keys", "list", "--user", bob.uid)] == ["for-bob"]
    tenant = cli.json("keys", "list", "--tenant-scope", "--active")
    assert {key["user_email"] for key in tenant} == {bob.email}

    # Users.
    carol = cli.json(
        "users",
        "create",
        "carol@acme.example",
        "--first-name",
        "Carol",
        "--last-name",
        "Jones",
        "--password-stdin",
        stdin="carols long password\n",
    )
    cli.secrets.append("carols long password")
    assert (carol["name"], carol["role"], carol["state"]) == ("Carol Jones", "user", "active")
    with Client(
        live.url, email="carol@acme.example", org="acme", password="carols long password"
    ) as as_carol:
        assert as_carol.whoami().user_uid == carol["uid"]
    listing = cli.ok("users", "list").stdout
    assert listing.splitlines()[0].split()[:3] == ["UID", "EMAIL", "NAME"]
    for email in (admin.email, world.alice.email, bob.email, "carol@acme.example"):
        assert email in listing
    assert "globex" not in listing
    shown = cli.ok("users", "show", carol["uid"]).stdout
    assert "Carol Jones" in shown
    assert re.search(rf"Last sign-in\s+{DATE.pattern}", shown)

    deactivated = cli.json("users", "deactivate", carol["uid"], "--yes")
    assert deactivated["state"] == "inactive"
    assert "Re-activated" in cli.ok("users", "reactivate", carol["uid"]).stdout

    # The audit log and the limit.
    events = cli.json("audit", "list", "--resource-kind", "user", "--resource-uid", carol["uid"])
    assert {event["action"] for event in events} >= {
        "user.create",
        "user.deactivate",
        "user.reactivate",
    }
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    recent = cli.ok("audit", "list", "--since", since, "--limit", "2").stdout.splitlines()
    assert recent[0].split()[:2] == ["TIME", "ACTION"]
    assert len(recent) == 3
    assert DATE.match(recent[1])

    assert cli.json("limits", "set", "20")["limit"] == 20
    assert re.search(r"API keys per user\s+20\n", cli.ok("limits", "show").stdout)

    assert cli.json("users", "delete", carol["uid"], "--yes") == {
        "uid": carol["uid"],
        "deleted": True,
    }
    with sdk_for(live, admin) as sdk, pytest.raises(NotFound):
        sdk.get_user(carol["uid"])

    # Logout ends the session on the server and removes the file.
    assert cli.ok("logout").stdout.startswith("Logged out")
    assert not cli.session_file.exists()
    with Client(live.url, token=token, max_retries=0) as old, pytest.raises(AuthenticationError):
        old.whoami()


def test_api_errors_exit_1_with_their_code(cli: Cli, live: LiveServer) -> None:
    world = live.world
    use_key_of(cli, live, world.alice)

    # A user doing a tenant admin's things.
    for args in (("users", "list"), ("keys", "list", "--user", world.bob.uid)):
        result = cli(*args)
        assert (result.returncode, result.stdout) == (1, ""), args
        assert error_code(result) == "Forbidden"

    forged = "kp_" + "A" * 38
    refused = cli("whoami", env={"KEYPLANE_API_KEY": forged})
    assert refused.returncode == 1
    assert error_code(refused) == "ApiKeyMalformed"
    assert forged not in refused.stdout + refused.stderr

    # Login: a wrong password stores nothing; a password is never read from a non-terminal
    # stdin unless asked to.
    wrong = cli(
        "login", "--email", world.bob.email, "--org", "acme", "--password-stdin", stdin="nope!\n"
    )
    assert wrong.returncode == 1
    assert error_code(wrong) == "InvalidCredentials"
    assert "nope!" not in wrong.stderr
    assert not cli.session_file.exists()
    no_prompt = cli("login", "--email", world.bob.email, "--org", "acme")
    assert no_prompt.returncode == 2
    assert "--password-stdin" in no_prompt.stderr

    # A stored session (with the server from KEYPLANE_URL) is not sent to another server.
    cli.ok(
        "login",
        "--email",
        world.bob.email,
        "--org",
        "acme",
        "--password-stdin",
        stdin=world.bob.password,
    )
    del cli.env["KEYPLANE_URL"], cli.env["KEYPLANE_API_KEY"]
    other = f"http://127.0.0.1:{free_port()}"
    elsewhere = cli("whoami", "--url", other)
    assert elsewhere.returncode == 2
    assert f"No credentials for {other}" in elsewhere.stderr

    # An old stored token is renewed, and the new one stored; a dead one is reported.
    stored = json.loads(cli.session_file.read_text())
    stored["obtained_at"] -= 11 * 60
    cli.session_file.write_text(json.dumps(stored))
    assert cli.json("whoami")["user_uid"] == world.bob.uid
    renewed = json.loads(cli.session_file.read_text())
    assert renewed["token"] != stored["token"]
    assert stat.S_IMODE(cli.session_file.stat().st_mode) == 0o600
    with Client(live.url, token=renewed["token"]) as client:
        client.logout()
    ended = cli("keys", "list")
    assert ended.returncode == 1
    assert error_code(ended) == "TokenRevoked"
    assert "keyplane login" in ended.stderr
    # Logging out of a session that already ended still removes it.
    cli.ok("logout")
    assert not cli.session_file.exists()


def test_usage_errors_exit_2_before_any_request(cli: Cli) -> None:
    """No server is running: these are refused before anything is sent."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    missing = cli("keys", "list")
    assert missing.returncode == 2
    assert "Not logged in" in missing.stderr
    no_key = cli("keys", "list", "--url", nowhere)
    assert no_key.returncode == 2
    assert "No credentials" in no_key.stderr

    cli.env.update({"KEYPLANE_URL": nowhere, "KEYPLANE_API_KEY": "kp_" + "A" * 38})
    bad_option = cli("keys", "list", "--bogus")
    assert (bad_option.returncode, bad_option.stdout) == (2, "")
    # An unreachable server is an API error (1), not a crash.
    unreachable = cli("limits", "set", "3")
    assert unreachable.returncode == 1
    assert error_code(unreachable) == "ConnectionFailed"


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "list", "-o", "yaml"],
        ["keys", "list", "--user", "x", "--tenant-scope"],
        ["keys", "create", "x", "--expires-in-days", "3", "--expires-at", "2030-01-01"],
        ["keys", "create", "x", "--expires-in-days", "0"],
        ["keys", "create", "x", "--expires-at", "next tuesday"],
        ["keys", "edit", "0" * 24],
        ["keys", "delete", "0" * 24],
        ["users", "deactivate", "0" * 24],
        ["users", "delete", "0" * 24],
        ["users", "create", "x@example.com", "--password-stdin"],
        ["whoami", "--url", "ftp://example.com"],
    ],
)
def test_more_usage_errors_in_process(args: list[str], tmp_path: Path) -> None:
    """The same, without a subprocess each (stdin is not a terminal here either)."""
    env = {
        "KEYPLANE_CONFIG_DIR": str(tmp_path),
        "KEYPLANE_URL": f"http://127.0.0.1:{free_port()}",
        "KEYPLANE_API_KEY": "kp_" + "A" * 38,
    }
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert isinstance(result.exception, SystemExit)


def test_a_damaged_session_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "session.json").write_text("{not json")
    env = {"KEYPLANE_CONFIG_DIR": str(tmp_path), "KEYPLANE_URL": None, "KEYPLANE_API_KEY": None}
    result = CliRunner().invoke(app, ["whoami"], env=env)
    assert result.exit_code == 2
    assert "damaged" in result.stderr
