"""``keyplane keys``: API keys, over the API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from keyplane.cli import output
from keyplane.cli.connection import (
    ApiKeyOption,
    ExpiresAtOption,
    ExpiresInDaysOption,
    OutputOption,
    UrlOption,
    YesOption,
    confirm,
    connected,
    ensure_can_confirm,
    expiry_from,
    usage_error,
)
from keyplane.cli.durations import parse_duration
from keyplane.cli.output import OutputFormat
from keyplane.cli.restrictions import (
    AllowOption,
    CreditsOption,
    Given,
    MetaOption,
    NoAllowOption,
    NoCreditsOption,
    NoMetaOption,
    NoOwnerIdOption,
    NoPermissionsOption,
    NoRateOption,
    NoRolesOption,
    NoScopesOption,
    OwnerIdOption,
    PermissionOption,
    RateOption,
    RefillOption,
    RoleOption,
    ScopeOption,
)
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import ApiKey

app = KeyplaneTyper(no_args_is_help=True, help="API keys.")

KeyUid = Annotated[str, typer.Argument(help="The key's UID.", show_default=False)]


def _describe_key(key: ApiKey) -> str:
    return f"API key {key.name!r} ({key.uid}) of {key.user_email}"


@app.command("list")
def keys_list(
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="UID", help="This user's keys (tenant admins)."),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Only active, or only revoked, keys."),
    ] = None,
    tenant_scope: Annotated[
        bool,
        typer.Option("--tenant-scope", help="Every key of the tenant (tenant admins)."),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Your own API keys; with --user or --tenant-scope, other users' (tenant admins)."""
    if user and tenant_scope:
        usage_error("Give --user or --tenant-scope, not both.")
    with connected(url, api_key) as client:
        owner = user if user or tenant_scope else client.whoami().user_uid
        keys = list(client.list_api_keys(user_uid=owner, active=active))
    if output_format is OutputFormat.JSON:
        output.emit_json([output.key_json(key) for key in keys])
    else:
        output.keys_table(keys)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name, unique among the owner's keys.")],
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    expires_in_days: ExpiresInDaysOption = None,
    expires_at: ExpiresAtOption = None,
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="UID", help="Create it for this user (tenant admins)."),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print the key's value alone: KEY=$(keyplane ...)."),
    ] = False,
    scope: ScopeOption = None,
    permission: PermissionOption = None,
    role: RoleOption = None,
    allow: AllowOption = None,
    rate: RateOption = None,
    credits: CreditsOption = None,
    refill: RefillOption = None,
    owner_id: OwnerIdOption = None,
    meta: MetaOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create an API key and print its value: the only time it is shown.

    Restrictions are optional: without any the key may do all its owner may do.
    """
    expiry = expiry_from(expires_in_days, expires_at)
    given = Given(scope, permission, role, allow, rate, credits, refill, owner_id, meta)
    restrictions = given.for_create()
    with connected(url, api_key) as client:
        created = client.create_api_key(
            name, description=description, expires_at=expiry, user_uid=user, **restrictions
        )
    if quiet:
        sys.stdout.write(f"{created.value}\n")
        sys.stdout.flush()
        return
    output.warn("the key's value is shown only this once: store it now.")
    if output_format is OutputFormat.JSON:
        output.emit_json({"uid": created.uid, "name": name, "value": created.value})
    else:
        output.say(f"Created API key {name!r} ({created.uid}):")
        output.say(created.value)


@app.command("show")
def keys_show(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """One API key, with its restrictions (never its value: that is only shown when it is
    created)."""
    with connected(url, api_key) as client:
        key = client.get_api_key(uid)
    output.show_key(key, output_format)


# ``update`` is the API's word; ``edit`` the command's since before there were restrictions.
@app.command("update", hidden=True)
@app.command("edit")
def keys_edit(
    uid: KeyUid,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    expires_in_days: ExpiresInDaysOption = None,
    expires_at: ExpiresAtOption = None,
    scope: ScopeOption = None,
    no_scopes: NoScopesOption = False,
    permission: PermissionOption = None,
    no_permissions: NoPermissionsOption = False,
    role: RoleOption = None,
    no_roles: NoRolesOption = False,
    allow: AllowOption = None,
    no_allow: NoAllowOption = False,
    rate: RateOption = None,
    no_rate: NoRateOption = False,
    credits: CreditsOption = None,
    refill: RefillOption = None,
    no_credits: NoCreditsOption = False,
    owner_id: OwnerIdOption = None,
    no_owner_id: NoOwnerIdOption = False,
    meta: MetaOption = None,
    no_meta: NoMetaOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change a key's name, description, expiry or restrictions; what is not given is kept.

    A restriction given replaces the key's (every --scope, --permission, --role, --allow and
    --rate given, together); --no-... removes one.
    """
    expiry = expiry_from(expires_in_days, expires_at)
    given = Given(scope, permission, role, allow, rate, credits, refill, owner_id, meta)
    restrictions = given.for_update(
        {
            "scopes": no_scopes,
            "permissions": no_permissions,
            "permission_roles": no_roles,
            "allowed_cidrs": no_allow,
            "rate_limits": no_rate,
            "credits": no_credits,
            "owner_id": no_owner_id,
            "meta": no_meta,
        }
    )
    if name is None and description is None and expiry is None and not restrictions:
        usage_error(
            "Nothing to change: give --name, --description, --expires-in-days, --expires-at "
            "or a restriction (see --help)."
        )
    with connected(url, api_key) as client:
        key = client.update_api_key(
            uid, name=name, description=description, expires_at=expiry, **restrictions
        )
    output.show_key(key, output_format)


def _set_key_active(
    uid: str, active: bool, url: str | None, api_key: str | None, output_format: OutputFormat
) -> None:
    with connected(url, api_key) as client:
        if active:
            client.reactivate_api_key(uid)
        else:
            client.revoke_api_key(uid)
        key = client.get_api_key(uid) if output_format is OutputFormat.JSON else None
    if key is not None:
        output.show_key(key, output_format)
    elif active:
        output.say(f"Re-activated API key {uid}.")
    else:
        output.say(f"Revoked API key {uid}: it no longer authenticates.")


@app.command("revoke")
def keys_revoke(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke a key: it stops authenticating at once (re-activate it with `reactivate`)."""
    _set_key_active(uid, False, url, api_key, output_format)


@app.command("reactivate")
def keys_reactivate(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Re-activate a revoked key."""
    _set_key_active(uid, True, url, api_key, output_format)


@app.command("rotate")
def keys_rotate(
    uid: KeyUid,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            metavar="DURATION",
            help="How long the old key keeps working: 0 (stops at once), or a number with "
            "s, m, h or d, e.g. 24h (at most the server's maximum, 7 days by default).",
        ),
    ] = "0",
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print the new key's value alone."),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Replace a key with a new one (same name, owner, expiry and restrictions) and print
    the new value: the only time it is shown. The old key works until the grace period
    ends, then is refused with ApiKeyRotated."""
    try:
        seconds = parse_duration(grace)
    except ValueError as exc:
        usage_error(f"--grace: {exc}")
    with connected(url, api_key) as client:
        rotated = client.rotate_api_key(uid, grace_period_seconds=seconds)
    if quiet:
        sys.stdout.write(f"{rotated.value}\n")
        sys.stdout.flush()
        return
    output.warn("the new key's value is shown only this once: store it now.")
    if output_format is OutputFormat.JSON:
        output.emit_json(
            {
                "uid": rotated.uid,
                "value": rotated.value,
                "rotated_from": rotated.rotated_from,
                "grace_ends_at": rotated.grace_ends_at.isoformat(),
            }
        )
    else:
        output.say(
            f"Rotated API key {uid}: the old key works until "
            f"{output.when(rotated.grace_ends_at)}. New key ({rotated.uid}):"
        )
        output.say(rotated.value)


@app.command("delete")
def keys_delete(
    uid: KeyUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a key for good."""
    ensure_can_confirm(yes, f"delete API key {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: f"Delete {_describe_key(client.get_api_key(uid))}? This cannot be undone.",
        )
        client.delete_api_key(uid)
    output.deleted(uid, f"Deleted API key {uid}.", output_format)
