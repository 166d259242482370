"""What the CLI's tests share: ``Cli`` runs ``python -m keyplane`` as a real subprocess and
checks every run for what must never happen (a traceback; a password or key value printed
where it should not be)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyplane.client import Client
from tests.live import LiveServer
from tests.users.helpers import Actor


@dataclass
class Cli:
    """Runs ``python -m keyplane`` with a clean environment of its own."""

    env: dict[str, str]
    config_dir: Path
    # Values that must appear in no output (passwords; key values once they were shown).
    secrets: list[str] = field(default_factory=list)

    def __call__(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "keyplane", *args],
            env={**self.env, **(env or {})},
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.check(result.stdout, result.stderr)
        return result

    def check(self, stdout: str, stderr: str) -> None:
        assert "Traceback" not in stderr, stderr
        for secret in self.secrets:
            assert secret not in stdout
            assert secret not in stderr

    def json(self, *args: str, stdin: str | None = None) -> Any:
        result = self(*args, "--output", "json", stdin=stdin)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def ok(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result

    @property
    def session_file(self) -> Path:
        return self.config_dir / "session.json"


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KEYPLANE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["KEYPLANE_CONFIG_DIR"] = str(tmp_path / "config")
    return env


def sdk_for(live: LiveServer, actor: Actor) -> Client:
    return Client(live.url, email=actor.email, org=actor.tenant_name, password=actor.password)


def use_key_of(cli: Cli, live: LiveServer, actor: Actor) -> str:
    """Point the command at the server with a fresh API key of ``actor``."""
    with sdk_for(live, actor) as sdk:
        value = sdk.create_api_key("cli").value
    cli.env.update({"KEYPLANE_URL": live.url, "KEYPLANE_API_KEY": value})
    cli.secrets += [value, actor.password]
    return value


def error_code(result: subprocess.CompletedProcess[str]) -> str:
    match = re.match(r"Error \[(\w+)\]: \S", result.stderr)
    assert match, result.stderr
    return match.group(1)
