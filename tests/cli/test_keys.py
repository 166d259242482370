"""``keyplane keys`` with restrictions, as a real subprocess against a real server."""

from __future__ import annotations

import json
import re

from keyplane.client import Credits
from tests.cli.helpers import Cli, error_code, sdk_for, use_key_of
from tests.live import LiveServer

RESTRICTION_LABELS = (
    "Scopes",
    "Permissions",
    "Permission roles",
    "Allowed from",
    "Rate limits",
    "Credits",
    "Owner ID",
    "Meta",
)


def _row(shown: str, label: str) -> str:
    found = re.search(rf"^{label}\s{{2,}}(.+)$", shown, flags=re.MULTILINE)
    assert found, shown
    return found.group(1)


def test_create_show_update_and_remove_restrictions(cli: Cli, live: LiveServer) -> None:
    admin = live.world.admin
    use_key_of(cli, live, admin)
    with sdk_for(live, admin) as sdk:
        for name in ("invoices.read", "invoices.write"):
            sdk.create_permission(name)
        sdk.create_permission_role("billing", ["invoices.write"])

    value = cli.ok(
        "keys", "create", "svc",
        "--scope", "apiKeys:read", "--scope", "verify",
        "--allow", "10.0.0.0/8", "--allow", "2001:db8::/32",
        "--rate", "100/s", "--rate", "burst=1000/10m",
        "--credits", "1000", "--refill", "monthly:1000:15",
        "--permission", "invoices.read", "--role", "billing",
        "--owner-id", "cus_1", "--meta", '{"plan": "pro"}',
        "--quiet",
    ).stdout.strip()  # fmt: skip
    cli.secrets.append(value)
    key = next(key for key in cli.json("keys", "list") if key["name"] == "svc")
    uid = key["uid"]
    assert key["restricted"] is True
    assert key["scopes"] == ["apiKeys:read", "verify"]
    assert (key["permissions"], key["permission_roles"]) == (["invoices.read"], ["billing"])
    assert key["allowed_cidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert sorted(key["rate_limits"], key=lambda limit: limit["limit"]) == [
        {"limit": 100, "window_seconds": 1, "name": "100/1s"},
        {"limit": 1000, "window_seconds": 600, "name": "burst"},
    ]
    assert key["credits"]["remaining"] == 1000
    assert key["credits"]["refill"] == {"interval": "monthly", "amount": 1000, "day": 15}
    assert (key["owner_id"], key["meta"]) == ("cus_1", {"plan": "pro"})

    # Shown in the notation the options take.
    shown = cli.ok("keys", "show", uid).stdout
    assert _row(shown, "Scopes") == "apiKeys:read, verify"
    assert _row(shown, "Permissions") == "invoices.read"
    assert _row(shown, "Permission roles") == "billing"
    assert _row(shown, "Allowed from") == "10.0.0.0/8, 2001:db8::/32"
    assert set(_row(shown, "Rate limits").split(", ")) == {"100/1s", "burst=1000/10m"}
    assert re.fullmatch(
        r"1000 left, refill monthly:1000:15 \(next \d{4}-\d\d-15 00:00 UTC\)",
        _row(shown, "Credits"),
    )
    assert _row(shown, "Owner ID") == "cus_1"
    assert json.loads(_row(shown, "Meta")) == {"plan": "pro"}

    # Given: replaced; --no-...: removed; the rest: kept. `update` is `edit`.
    edited = cli.json(
        "keys", "update", uid, "--no-scopes", "--no-allow", "--rate", "5/h", "--no-meta"
    )
    assert (edited["scopes"], edited["allowed_cidrs"], edited["meta"]) == (None, None, None)
    assert edited["rate_limits"] == [{"limit": 5, "window_seconds": 3600, "name": "5/3600s"}]
    assert (edited["permissions"], edited["owner_id"]) == (["invoices.read"], "cus_1")
    assert edited["credits"]["remaining"] == 1000
    assert edited["restricted"] is True
    edited = cli.json("keys", "edit", uid, "--credits", "3", "--role", "billing")
    assert (edited["credits"]["remaining"], edited["credits"]["refill"]) == (3, None)

    cleared = cli.json(
        "keys", "edit", uid,
        "--no-permissions", "--no-roles", "--no-rate", "--no-credits", "--no-owner-id",
    )  # fmt: skip
    assert cleared["restricted"] is False
    assert (cleared["credits"], cleared["owner_id"], cleared["rate_limits"]) == (None, None, [])
    plain = cli.ok("keys", "show", uid).stdout
    assert not [label for label in RESTRICTION_LABELS if re.search(rf"^{label}\s", plain, re.M)]

    # The server's refusals are API errors (1) with their code.
    unknown = cli("keys", "edit", uid, "--permission", "nope.undefined")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert error_code(unknown) == "UnknownPermission"


def test_a_user_sets_scopes_and_ranges_but_not_what_the_tenant_sells(
    cli: Cli, live: LiveServer
) -> None:
    alice = live.world.alice
    use_key_of(cli, live, alice)
    created = cli.json("keys", "create", "narrow", "--scope", "apiKeys:read", "--allow", "::1/128")
    cli.secrets.append(created["value"])
    shown = cli.ok("keys", "show", created["uid"]).stdout
    assert _row(shown, "Scopes") == "apiKeys:read"
    assert _row(shown, "Allowed from") == "::1/128"
    refused = cli("keys", "create", "rich", "--credits", "1000000")
    assert refused.returncode == 1
    assert error_code(refused) == "TenantAdminOnly"
    with sdk_for(live, live.world.admin) as admin:
        assert admin.get_api_key(created["uid"]).credits is None
        uid = admin.create_api_key("metered", user_uid=alice.uid, credits=Credits(remaining=5)).uid
    kept = cli("keys", "edit", uid, "--no-credits")
    assert kept.returncode == 1
    assert error_code(kept) == "TenantAdminOnly"
