"""``keyplane permissions`` and ``keyplane permission-roles``, as a real subprocess against
a real server."""

from __future__ import annotations

from tests.cli.helpers import Cli, error_code, sdk_for, use_key_of
from tests.live import LiveServer


def test_permissions_and_roles(cli: Cli, live: LiveServer) -> None:
    admin = live.world.admin
    use_key_of(cli, live, admin)

    read = cli.json("permissions", "create", "invoices.read", "--description", "Read invoices")
    assert (read["name"], read["description"]) == ("invoices.read", "Read invoices")
    write = cli.json("permissions", "create", "invoices.write")
    taken = cli("permissions", "create", "invoices.read")
    assert (taken.returncode, error_code(taken)) == (1, "PermissionNameTaken")
    header, *rows = cli.ok("permissions", "list").stdout.splitlines()
    assert header.split() == ["UID", "NAME", "DESCRIPTION", "CREATED"]
    assert [row.split()[:2] for row in rows] == [
        [read["uid"], "invoices.read"],
        [write["uid"], "invoices.write"],
    ]

    role = cli.json(
        "permission-roles", "create", "billing",
        "--permission", "invoices.read", "--permission", "invoices.write",
        "--description", "Billing",
    )  # fmt: skip
    assert role["permissions"] == ["invoices.read", "invoices.write"]
    # What is not given is kept; the --permission options given replace the list.
    updated = cli.json(
        "permission-roles", "update", role["uid"], "--name", "accounts",
        "--permission", "invoices.read",
    )  # fmt: skip
    assert (updated["name"], updated["description"], updated["permissions"]) == (
        "accounts",
        "Billing",
        ["invoices.read"],
    )
    header, row = cli.ok("permission-roles", "list").stdout.splitlines()
    assert header.split() == ["UID", "NAME", "PERMISSIONS", "DESCRIPTION"]
    assert row.split() == [role["uid"], "accounts", "invoices.read", "Billing"]
    with sdk_for(live, admin) as sdk:
        holder = sdk.create_api_key("holder", permission_roles=["accounts"])
        assert sdk.verify_api_key(holder.value).permissions == ["invoices.read"]

    # Deleting asks for confirmation; a permission goes from every role that had it.
    unconfirmed = cli("permissions", "delete", read["uid"])
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    deleted = cli.ok("permissions", "delete", read["uid"], "--yes").stdout
    assert deleted == f"Deleted permission {read['uid']}.\n"
    assert cli.json("permission-roles", "list")[0]["permissions"] == []
    assert cli.json("permission-roles", "delete", role["uid"], "--yes") == {
        "uid": role["uid"],
        "deleted": True,
    }
    assert cli.json("permission-roles", "list") == []
    assert "No permission roles." in cli.ok("permission-roles", "list").stderr
    missing = cli("permission-roles", "update", role["uid"], "--name", "gone")
    assert (missing.returncode, error_code(missing)) == (1, "PermissionRoleNotFound")


def test_only_tenant_admins_manage_permissions(cli: Cli, live: LiveServer) -> None:
    use_key_of(cli, live, live.world.alice)
    for args in (("permissions", "list"), ("permission-roles", "create", "billing")):
        refused = cli(*args)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert error_code(refused) == "Forbidden"
    nothing = cli("permission-roles", "update", "0" * 24)
    assert nothing.returncode == 2
    assert "Nothing to change" in nothing.stderr
