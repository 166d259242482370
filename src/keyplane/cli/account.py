"""``keyplane login``, ``logout`` and ``whoami``: the session the other remote commands use."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from keyplane.cli import output
from keyplane.cli import session as stored_sessions
from keyplane.cli.connection import (
    PANEL,
    ApiKeyOption,
    OutputOption,
    UrlOption,
    api_errors,
    connected,
    load_session,
    read_secret_from_stdin,
    server_url,
    usage_error,
)
from keyplane.cli.output import OutputFormat
from keyplane.cli.session import StoredSession
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import AuthenticationError, Client, KeyplaneError

app = KeyplaneTyper()


@app.command(rich_help_panel=PANEL)
def login(
    email: Annotated[str, typer.Option("--email", help="Your email address.")],
    org: Annotated[
        str | None,
        typer.Option("--org", help="The organization (tenant) to log in to."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin (for scripts)."),
    ] = False,
    url: UrlOption = None,
) -> None:
    """Log in and store the session for the next commands (the password is not stored)."""
    if url:
        base = server_url(url)
    else:
        previous = load_session()
        if previous is None:
            usage_error("No Keyplane server given: pass --url or set KEYPLANE_URL.")
        base = previous.url
    if password_stdin:
        password = read_secret_from_stdin("password")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, err=True)
    else:
        usage_error("stdin is not a terminal: give the password on stdin with --password-stdin.")
    with api_errors(), Client(base, email=email, org=org, password=password) as client:
        client.login()
        info = client.whoami()
        token = client.session_token
    if token is None:
        output.error("Error: the server returned no session token.")
        raise typer.Exit(1)
    path = stored_sessions.save(
        StoredSession(url=base, token=token, obtained_at=time.time(), email=email, org=org or "")
    )
    output.say(f"Logged in to {info.org_name} at {base} as {email}.")
    output.note(f"Session stored in {path}.")


@app.command(rich_help_panel=PANEL)
def logout() -> None:
    """End the stored session on the server and delete it."""
    stored = load_session()
    if stored is None:
        output.note("Not logged in.")
        return
    failure: KeyplaneError | None = None
    try:
        with Client(stored.url, token=stored.token) as client:
            client.logout()
    except AuthenticationError:
        pass  # The session had already expired or ended.
    except KeyplaneError as exc:
        failure = exc
    stored_sessions.delete()
    if failure is not None:
        output.error(f"Error [{failure.code or type(failure).__name__}]: {failure.message}")
        output.note("The stored session was deleted; it expires on the server by itself.")
        raise typer.Exit(1)
    output.say(f"Logged out of {stored.url}.")


@app.command(rich_help_panel=PANEL)
def whoami(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Who the credentials act as: organization, tenant and user."""
    with connected(url, api_key) as client:
        info = client.whoami()
        base = client.base_url
        auth = "session" if client.session_token else "api-key"
    if output_format is OutputFormat.JSON:
        output.emit_json({"url": base, **info.model_dump(mode="json"), "auth": auth})
        return
    output.details(
        [
            ("Server", base),
            ("Organization", info.org_name),
            ("Tenant UID", info.tenant_uid),
            ("User UID", info.user_uid),
            ("Signed in with", "a stored session" if auth == "session" else "an API key"),
        ]
    )
