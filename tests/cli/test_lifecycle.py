"""``keyplane keys rotate`` and ``keyplane policy``, as a real subprocess against a real
server."""

from __future__ import annotations

import pytest

from keyplane.client import AuthenticationError, Client
from tests.cli.helpers import Cli, error_code, use_key_of
from tests.live import LiveServer


def test_rotate_a_key_and_set_the_policy(cli: Cli, live: LiveServer) -> None:
    admin = live.world.admin
    use_key_of(cli, live, admin)
    created = cli.json("keys", "create", "deploy")
    cli.secrets.append(created["value"])

    rotated = cli.json("keys", "rotate", created["uid"], "--grace", "24h")
    cli.secrets.append(rotated["value"])
    assert rotated["rotated_from"] == created["uid"]
    with Client(live.url, api_key=created["value"]) as by_old:
        assert by_old.whoami().user_uid == admin.uid
    shown = cli.json("keys", "show", created["uid"])
    assert shown["rotated_to"] == rotated["uid"]

    now = cli("keys", "rotate", rotated["uid"], "--grace", "0", "--quiet")
    assert now.returncode == 0, now.stderr
    with (
        Client(live.url, api_key=rotated["value"]) as by_rotated,
        pytest.raises(AuthenticationError) as refused_old,
    ):
        by_rotated.whoami()
    assert refused_old.value.code == "ApiKeyRotated"
    cli.secrets.append(now.stdout.strip())
    bad = cli("keys", "rotate", created["uid"], "--grace", "soon")
    assert bad.returncode == 2
    again = cli("keys", "rotate", created["uid"], "--grace", "1m")
    assert (again.returncode, error_code(again)) == (1, "ApiKeyAlreadyRotated")

    policy = cli.json(
        "policy", "set", "--max-lifetime", "90", "--allow", "127.0.0.0/8", "--allow", "::1/128",
        "--inactivity", "60", "--key-creation", "admins", "--notice", "14", "--notice", "2",
    )  # fmt: skip
    assert policy["max_lifetime_days"] == 90
    assert policy["allowed_cidrs"] == ["127.0.0.0/8", "::1/128"]
    assert (policy["inactivity_days"], policy["key_creation"]) == (60, "admins")
    assert policy["expiry_notice_days"] == [14, 2]
    kept = cli.json("policy", "set", "--no-inactivity")
    assert (kept["inactivity_days"], kept["max_lifetime_days"]) == (None, 90)
    shown_policy = cli.ok("policy", "show").stdout
    assert "90 days" in shown_policy
    assert "revoke at once" in shown_policy
    flagged = cli.json("policy", "set", "--leak-action", "flag")
    assert (flagged["leak_action"], flagged["max_lifetime_days"]) == ("flag", 90)
    assert "flag only" in cli.ok("policy", "show").stdout
    wrong = cli("policy", "set", "--leak-action", "ignore")
    assert wrong.returncode == 2
    refused = cli("policy", "set", "--max-lifetime", "400")
    assert (refused.returncode, error_code(refused)) == (1, "PolicyMaxLifetimeTooLong")
