"""``keyplane permissions`` and ``keyplane permission-roles``: the tenant's own permission
names and the roles that bundle them, over the API (tenant admins). Keys carry them
(``keys create --permission/--role``) and verify returns them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from keyplane.cli import output
from keyplane.cli.connection import (
    ApiKeyOption,
    OutputOption,
    UrlOption,
    YesOption,
    confirm,
    connected,
    ensure_can_confirm,
    usage_error,
)
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import Permission, PermissionRole

app = KeyplaneTyper(
    no_args_is_help=True, help="The tenant's permission names, for keys (tenant admins)."
)
roles_app = KeyplaneTyper(
    no_args_is_help=True, help="The tenant's permission roles: named sets of permissions."
)

PermissionUid = Annotated[str, typer.Argument(help="The permission's UID.", show_default=False)]
RoleUid = Annotated[str, typer.Argument(help="The role's UID.", show_default=False)]
DescriptionOption = Annotated[str | None, typer.Option(help="What it is for.")]
RolePermissionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--permission",
        metavar="NAME",
        show_default=False,
        help="A permission of the tenant's the role grants (repeatable).",
    ),
]


# --- permissions ------------------------------------------------------------------------


def _permission_json(permission: Permission) -> dict[str, Any]:
    return permission.model_dump(mode="json")


def _show_permission(permission: Permission, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        output.emit_json(_permission_json(permission))
        return
    output.details(
        [
            ("UID", permission.uid),
            ("Name", permission.name),
            ("Description", permission.description or "-"),
            ("Created", output.when(permission.created_at)),
        ]
    )


@app.command("list")
def permissions_list(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's permission names."""
    with connected(url, api_key) as client:
        permissions = list(client.list_permissions())
    if output_format is OutputFormat.JSON:
        output.emit_json([_permission_json(permission) for permission in permissions])
        return
    if not permissions:
        output.note("No permissions.")
        return
    output.table(
        ["UID", "NAME", "DESCRIPTION", "CREATED"],
        ([p.uid, p.name, p.description or "-", output.when(p.created_at)] for p in permissions),
    )


@app.command("create")
def permissions_create(
    name: Annotated[str, typer.Argument(help="The name, e.g. invoices.read.")],
    description: DescriptionOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Define a permission name, for keys and roles to carry."""
    with connected(url, api_key) as client:
        permission = client.create_permission(name, description=description)
    _show_permission(permission, output_format)


@app.command("delete")
def permissions_delete(
    uid: PermissionUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a permission: every role and API key of the tenant loses it."""
    ensure_can_confirm(yes, f"delete permission {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: (
                f"Delete permission {uid}? Every role and API key of the tenant loses it. "
                "This cannot be undone."
            ),
        )
        client.delete_permission(uid)
    output.deleted(uid, f"Deleted permission {uid}.", output_format)


# --- permission roles -------------------------------------------------------------------


def _role_json(role: PermissionRole) -> dict[str, Any]:
    return role.model_dump(mode="json")


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) or "-"


def _show_role(role: PermissionRole, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        output.emit_json(_role_json(role))
        return
    output.details(
        [
            ("UID", role.uid),
            ("Name", role.name),
            ("Description", role.description or "-"),
            ("Permissions", _listed(role.permissions)),
            ("Created", output.when(role.created_at)),
            ("Modified", output.when(role.modified_at)),
        ]
    )


@roles_app.command("list")
def roles_list(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's permission roles."""
    with connected(url, api_key) as client:
        roles = list(client.list_permission_roles())
    if output_format is OutputFormat.JSON:
        output.emit_json([_role_json(role) for role in roles])
        return
    if not roles:
        output.note("No permission roles.")
        return
    output.table(
        ["UID", "NAME", "PERMISSIONS", "DESCRIPTION"],
        ([r.uid, r.name, _listed(r.permissions), r.description or "-"] for r in roles),
    )


@roles_app.command("create")
def roles_create(
    name: Annotated[str, typer.Argument(help="The role's name, e.g. billing.")],
    permission: RolePermissionsOption = None,
    description: DescriptionOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Define a role granting some of the tenant's permissions."""
    with connected(url, api_key) as client:
        role = client.create_permission_role(name, permission or [], description=description)
    _show_role(role, output_format)


@roles_app.command("update")
def roles_update(
    uid: RoleUid,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    description: Annotated[
        str | None, typer.Option(help='A new description ("" for none).')
    ] = None,
    permission: RolePermissionsOption = None,
    no_permissions: Annotated[
        bool, typer.Option("--no-permissions", help="Grant no permission at all.")
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change a role; what is not given is kept. The --permission options given replace
    its permissions. Keys holding the role follow it at once."""
    if permission and no_permissions:
        usage_error("Give --permission or --no-permissions, not both.")
    permissions = [] if no_permissions else (permission or None)
    if name is None and description is None and permissions is None:
        usage_error(
            "Nothing to change: give --name, --description, --permission or --no-permissions."
        )
    with connected(url, api_key) as client:
        role = client.update_permission_role(
            uid, name=name, description=description, permissions=permissions
        )
    _show_role(role, output_format)


@roles_app.command("delete")
def roles_delete(
    uid: RoleUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a role: every API key of the tenant loses it."""
    ensure_can_confirm(yes, f"delete permission role {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: (
                f"Delete permission role {client.get_permission_role(uid).name!r} ({uid})? "
                "Every API key of the tenant loses it. This cannot be undone."
            ),
        )
        client.delete_permission_role(uid)
    output.deleted(uid, f"Deleted permission role {uid}.", output_format)
