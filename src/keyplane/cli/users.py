"""``keyplane users``: the tenant's users, over the API (tenant admins)."""

from __future__ import annotations

from typing import Annotated

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
    read_secret_from_stdin,
)
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import User
from keyplane.roles import Role

app = KeyplaneTyper(no_args_is_help=True, help="Users of the tenant (tenant admins).")

UserUid = Annotated[str, typer.Argument(help="The user's UID.", show_default=False)]


def _describe_user(user: User) -> str:
    return f"user {user.email} ({user.uid})"


@app.command("list")
def users_list(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Every user of the tenant."""
    with connected(url, api_key) as client:
        users = list(client.list_users())
    if output_format is OutputFormat.JSON:
        output.emit_json([output.user_json(user) for user in users])
    else:
        output.users_table(users)


@app.command("show")
def users_show(
    uid: UserUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """One user."""
    with connected(url, api_key) as client:
        user = client.get_user(uid)
    output.show_user(user, output_format)


@app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The new user's email address.")],
    first_name: Annotated[str, typer.Option(help="First name.")] = "",
    last_name: Annotated[str, typer.Option(help="Last name.")] = "",
    role: Annotated[
        Role,
        typer.Option(
            case_sensitive=False,
            metavar="ROLE",
            help=f"The user's role, one of: {', '.join(Role)}.",
        ),
    ] = Role.USER,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read an initial password from stdin; without one the user cannot log in "
            "but can be given API keys.",
        ),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create a user in the tenant."""
    password = read_secret_from_stdin("password") if password_stdin else None
    with connected(url, api_key) as client:
        user = client.create_user(
            email, first_name=first_name, last_name=last_name, role=role.value, password=password
        )
    output.show_user(user, output_format)


@app.command("deactivate")
def users_deactivate(
    uid: UserUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Deactivate a user: their API keys and sessions stop working at once."""
    ensure_can_confirm(yes, f"deactivate user {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: (
                f"Deactivate {_describe_user(client.get_user(uid))}? "
                "Their API keys and sessions stop working at once."
            ),
        )
        client.deactivate_user(uid)
        user = client.get_user(uid) if output_format is OutputFormat.JSON else None
    if user is not None:
        output.show_user(user, output_format)
    else:
        output.say(f"Deactivated user {uid}.")


@app.command("reactivate")
def users_reactivate(
    uid: UserUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Re-activate a deactivated user."""
    with connected(url, api_key) as client:
        client.reactivate_user(uid)
        user = client.get_user(uid) if output_format is OutputFormat.JSON else None
    if user is not None:
        output.show_user(user, output_format)
    else:
        output.say(f"Re-activated user {uid}.")


@app.command("delete")
def users_delete(
    uid: UserUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a user and every API key they own."""
    ensure_can_confirm(yes, f"delete user {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: (
                f"Delete {_describe_user(client.get_user(uid))} and all their API keys? "
                "This cannot be undone."
            ),
        )
        client.delete_user(uid)
    output.deleted(uid, f"Deleted user {uid} and their API keys.", output_format)
