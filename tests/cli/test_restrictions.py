"""The restriction options of ``keyplane keys create|edit``: read into the SDK's terms, and
malformed values refused in Keyplane's words before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyplane.cli.main import app
from keyplane.cli.output import rate_text
from keyplane.cli.restrictions import parse_rate, parse_refill
from keyplane.client import CreditsRefill, RateLimit
from tests.live import free_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", RateLimit(limit=100, window_seconds=1)),
        ("1000/10m", RateLimit(limit=1000, window_seconds=600)),
        ("5/h", RateLimit(limit=5, window_seconds=3600)),
        ("10000/2d", RateLimit(limit=10000, window_seconds=172800)),
        ("burst=20/1s", RateLimit(limit=20, window_seconds=1, name="burst")),
    ],
)
def test_rates(text: str, expected: RateLimit) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("limit", "shown"),
    [
        (RateLimit(limit=100, window_seconds=1, name="100/1s"), "100/1s"),
        (RateLimit(limit=1000, window_seconds=600, name="1000/600s"), "1000/10m"),
        (RateLimit(limit=9, window_seconds=90, name="9/90s"), "9/90s"),
        (RateLimit(limit=5, window_seconds=86400, name="daily"), "daily=5/1d"),
    ],
)
def test_rates_are_shown_as_they_are_written(limit: RateLimit, shown: str) -> None:
    assert rate_text(limit) == shown


def test_refills() -> None:
    assert parse_refill("monthly:1000") == CreditsRefill(interval="monthly", amount=1000)
    assert parse_refill("monthly:1000:15") == CreditsRefill(interval="monthly", amount=1000, day=15)
    assert parse_refill("daily:500") == CreditsRefill(interval="daily", amount=500)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--rate", "fast"], "Invalid value for '--rate': 'fast' is not a rate: give uses per"),
        (["--rate", "100/w"], "'100/w' is not a rate"),
        (["--rate", "0/s"], "'0/s': the uses and the window must be at least 1."),
        (["--refill", "weekly:10"], "Invalid value for '--refill': 'weekly:10' is not a refill"),
        (["--refill", "daily:5:3"], "'daily:5:3': a daily refill takes no day of the month."),
        (["--refill", "monthly:5:32"], "the day of the month must be from 1 to 31."),
        (["--meta", "[1, 2]"], "Invalid value for '--meta': '[1, 2]' is not a JSON object"),
        (["--meta", "{plan: pro}"], "is not a JSON object: give one such as"),
        (["--scope", "everything"], "'everything' is not a scope: give one of apiKeys:read,"),
        (["--credits", "-1"], "Invalid value for '--credits': must be at least 0."),
        (["--refill", "monthly:10"], "Error: --refill needs --credits"),
    ],
)
@pytest.mark.parametrize("command", ["create", "edit"])
def test_malformed_values_are_refused_before_anything_is_sent(
    command: str, arguments: list[str], expected: str, tmp_path: Path
) -> None:
    env = {
        "KEYPLANE_CONFIG_DIR": str(tmp_path),
        "KEYPLANE_URL": f"http://127.0.0.1:{free_port()}",
        "KEYPLANE_API_KEY": "kp_" + "A" * 38,
        "COLUMNS": "200",
    }
    target = "new-key" if command == "create" else "0" * 24
    result = CliRunner().invoke(app, ["keys", command, target, *arguments], env=env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert expected in " ".join(result.output.split())
    assert "Input should" not in result.output


@pytest.mark.parametrize(
    "arguments",
    [
        ["--scope", "verify", "--no-scopes"],
        ["--allow", "10.0.0.0/8", "--no-allow"],
        ["--rate", "1/s", "--no-rate"],
        ["--credits", "5", "--no-credits"],
        ["--meta", "{}", "--no-meta"],
    ],
)
def test_a_value_and_its_removal_are_not_given_together(
    arguments: list[str], tmp_path: Path
) -> None:
    env = {
        "KEYPLANE_CONFIG_DIR": str(tmp_path),
        "KEYPLANE_URL": f"http://127.0.0.1:{free_port()}",
        "KEYPLANE_API_KEY": "kp_" + "A" * 38,
    }
    result = CliRunner().invoke(app, ["keys", "edit", "0" * 24, *arguments], env=env)
    assert result.exit_code == 2, result.output
    flag = next(argument for argument in arguments if argument.startswith("--no-"))
    assert f"Give {arguments[0]} or {flag}, not both." in result.stderr
