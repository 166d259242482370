"""``keyplane`` against a running server, through the SDK (``keyplane.client``).

Credentials, in this order: ``--api-key`` / ``KEYPLANE_API_KEY``, else the session stored
by ``keyplane login``. The server: ``--url`` / ``KEYPLANE_URL``, else the stored session's.
A stored session token is only ever sent to the server it was issued by.

Exit codes: 0 success; 1 the API refused or could not be reached (``Error [code]: message``
on stderr); 2 a usage error (bad option, no server or credentials, no confirmation).
"""

from __future__ import annotations

import ipaddress
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

import typer

from keyplane.cli import output
from keyplane.cli import session as stored_sessions
from keyplane.cli.output import OutputFormat
from keyplane.cli.session import SessionFileError, StoredSession
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import ApiKey, AuthenticationError, Client, KeyplaneError, User
from keyplane.roles import Role

PANEL = "Remote (a running server, over its API)"

app = KeyplaneTyper()
keys_app = KeyplaneTyper(no_args_is_help=True, help="API keys.")
users_app = KeyplaneTyper(no_args_is_help=True, help="Users of the tenant (tenant admins).")
audit_app = KeyplaneTyper(no_args_is_help=True, help="The tenant's audit log (tenant admins).")
limits_app = KeyplaneTyper(
    no_args_is_help=True, help="The tenant's limit of API keys per user (tenant admins)."
)

# --- options shared by the commands ------------------------------------------------------

_CONNECTION = "Connection"

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="KEYPLANE_URL",
        show_envvar=True,
        help="The server, e.g. https://keys.example.com (default: the stored session's).",
        rich_help_panel=_CONNECTION,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="KEYPLANE_API_KEY",
        show_envvar=True,
        show_default=False,
        help="Act with this API key instead of the stored session. Prefer the environment "
        "variable: command lines are visible to other users of the machine.",
        rich_help_panel=_CONNECTION,
    ),
]
OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _moment(value: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2030-01-31 or 2030-01-31T12:00:00Z)."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


ExpiresInDaysOption = Annotated[
    int | None,
    typer.Option("--expires-in-days", min=1, help="Expire this many days from now."),
]
ExpiresAtOption = Annotated[
    datetime | None,
    typer.Option(
        "--expires-at",
        parser=_moment,
        metavar="ISO",
        help="Expire at this moment (ISO 8601; UTC when no zone is given).",
    ),
]


def _usage_error(message: str) -> NoReturn:
    output.error(f"Error: {message}")
    raise typer.Exit(2)


# --- connecting ----------------------------------------------------------------------------


def _base_url(url: str) -> str:
    base = url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        _usage_error(f"{url!r} is not a server URL: give one like https://keys.example.com.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        output.warn(f"{base} is plain HTTP: credentials cross the network unencrypted.")
    return base


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_session() -> StoredSession | None:
    try:
        return stored_sessions.load()
    except SessionFileError as exc:
        _usage_error(str(exc))


@dataclass(frozen=True)
class _Target:
    url: str
    api_key: str | None
    stored: StoredSession | None


def _target(url: str | None, api_key: str | None) -> _Target:
    stored = None if (url and api_key) else _load_session()
    if url:
        base = _base_url(url)
    elif stored is not None:
        base = stored.url
    else:
        _usage_error(
            "Not logged in and no server given: log in with "
            "`keyplane login --url URL --email EMAIL --org ORG`, or pass --url (or set "
            "KEYPLANE_URL) with KEYPLANE_API_KEY."
        )
    if api_key:
        return _Target(base, api_key.strip(), None)
    if stored is not None and stored.url == base:
        return _Target(base, None, stored)
    if stored is not None:
        _usage_error(
            f"No credentials for {base}: the stored session is for {stored.url}. "
            "Set KEYPLANE_API_KEY (or pass --api-key), or log in to this server with "
            "`keyplane login`."
        )
    _usage_error(
        "No credentials: set KEYPLANE_API_KEY (or pass --api-key), or log in with "
        "`keyplane login --url URL --email EMAIL --org ORG`."
    )


@contextmanager
def _api_errors(session_hint: bool = False) -> Iterator[None]:
    """An API error becomes ``Error [code]: message`` on stderr and exit code 1."""
    try:
        yield
    except KeyplaneError as exc:
        output.error(f"Error [{exc.code or type(exc).__name__}]: {exc.message}")
        if session_hint and isinstance(exc, AuthenticationError):
            output.note(
                "The stored session is no longer valid: log in again with `keyplane login`."
            )
        raise typer.Exit(1) from None


@contextmanager
def _connected(url: str | None, api_key: str | None) -> Iterator[Client]:
    target = _target(url, api_key)
    stored = target.stored
    with _api_errors(session_hint=stored is not None):
        # The SDK renews a session token once it is old enough: tell it how old it is.
        client = Client(
            target.url,
            api_key=target.api_key,
            token=stored.token if stored else None,
            token_age=time.time() - stored.obtained_at if stored else 0.0,
        )
        try:
            yield client
        finally:
            client.close()
            renewed = client.session_token
            if stored is not None and renewed and renewed != stored.token:
                try:
                    stored_sessions.save(stored.renewed(renewed))
                except OSError as exc:
                    output.warn(f"could not store the renewed session: {exc.strerror}.")


# --- confirmation, secrets from stdin ---------------------------------------------------------


def _ensure_can_confirm(yes: bool, action: str) -> None:
    """Refuse before anything is done when no one can answer a confirmation prompt."""
    if not yes and not sys.stdin.isatty():
        _usage_error(
            f"Refusing to {action} without confirmation: stdin is not a terminal. "
            "Pass --yes to confirm."
        )


def _confirm(yes: bool, question: Callable[[], str]) -> None:
    if yes:
        return
    if not typer.confirm(question(), default=False, err=True):
        output.note("Aborted; nothing was changed.")
        raise typer.Exit(1)


def _read_secret_from_stdin(what: str) -> str:
    secret = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not secret:
        _usage_error(f"No {what} on stdin.")
    return secret


def _expiry(days: int | None, at: datetime | None) -> datetime | None:
    if days is not None and at is not None:
        _usage_error("Give --expires-in-days or --expires-at, not both.")
    if days is not None:
        return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    return at


# --- session ---------------------------------------------------------------------------------


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
        base = _base_url(url)
    else:
        previous = _load_session()
        if previous is None:
            _usage_error("No Keyplane server given: pass --url or set KEYPLANE_URL.")
        base = previous.url
    if password_stdin:
        password = _read_secret_from_stdin("password")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, err=True)
    else:
        _usage_error("stdin is not a terminal: give the password on stdin with --password-stdin.")
    with _api_errors(), Client(base, email=email, org=org, password=password) as client:
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
    stored = _load_session()
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
    with _connected(url, api_key) as client:
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


# --- API keys ------------------------------------------------------------------------------

KeyUid = Annotated[str, typer.Argument(help="The key's UID.", show_default=False)]


def _describe_key(key: ApiKey) -> str:
    return f"API key {key.name!r} ({key.uid}) of {key.user_email}"


@keys_app.command("list")
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
        _usage_error("Give --user or --tenant-scope, not both.")
    with _connected(url, api_key) as client:
        owner = user if user or tenant_scope else client.whoami().user_uid
        keys = list(client.list_api_keys(user_uid=owner, active=active))
    if output_format is OutputFormat.JSON:
        output.emit_json([output.key_json(key) for key in keys])
    else:
        output.keys_table(keys)


@keys_app.command("create")
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
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create an API key and print its value: the only time it is shown."""
    expiry = _expiry(expires_in_days, expires_at)
    with _connected(url, api_key) as client:
        created = client.create_api_key(
            name, description=description, expires_at=expiry, user_uid=user
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


@keys_app.command("show")
def keys_show(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """One API key (never its value: that is only shown when it is created)."""
    with _connected(url, api_key) as client:
        key = client.get_api_key(uid)
    output.show_key(key, output_format)


@keys_app.command("edit")
def keys_edit(
    uid: KeyUid,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    expires_in_days: ExpiresInDaysOption = None,
    expires_at: ExpiresAtOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change a key's name, description or expiry; what is not given is kept."""
    expiry = _expiry(expires_in_days, expires_at)
    if name is None and description is None and expiry is None:
        _usage_error(
            "Nothing to change: give --name, --description, --expires-in-days or --expires-at."
        )
    with _connected(url, api_key) as client:
        key = client.update_api_key(uid, name=name, description=description, expires_at=expiry)
    output.show_key(key, output_format)


def _set_key_active(
    uid: str, active: bool, url: str | None, api_key: str | None, output_format: OutputFormat
) -> None:
    with _connected(url, api_key) as client:
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


@keys_app.command("revoke")
def keys_revoke(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke a key: it stops authenticating at once (re-activate it with `reactivate`)."""
    _set_key_active(uid, False, url, api_key, output_format)


@keys_app.command("reactivate")
def keys_reactivate(
    uid: KeyUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Re-activate a revoked key."""
    _set_key_active(uid, True, url, api_key, output_format)


@keys_app.command("delete")
def keys_delete(
    uid: KeyUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a key for good."""
    _ensure_can_confirm(yes, f"delete API key {uid}")
    with _connected(url, api_key) as client:
        _confirm(
            yes,
            lambda: f"Delete {_describe_key(client.get_api_key(uid))}? This cannot be undone.",
        )
        client.delete_api_key(uid)
    if output_format is OutputFormat.JSON:
        output.emit_json({"uid": uid, "deleted": True})
    else:
        output.say(f"Deleted API key {uid}.")


# --- users ---------------------------------------------------------------------------------

UserUid = Annotated[str, typer.Argument(help="The user's UID.", show_default=False)]


def _describe_user(user: User) -> str:
    return f"user {user.email} ({user.uid})"


@users_app.command("list")
def users_list(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Every user of the tenant."""
    with _connected(url, api_key) as client:
        users = list(client.list_users())
    if output_format is OutputFormat.JSON:
        output.emit_json([output.user_json(user) for user in users])
    else:
        output.users_table(users)


@users_app.command("show")
def users_show(
    uid: UserUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """One user."""
    with _connected(url, api_key) as client:
        user = client.get_user(uid)
    output.show_user(user, output_format)


@users_app.command("create")
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
    password = _read_secret_from_stdin("password") if password_stdin else None
    with _connected(url, api_key) as client:
        user = client.create_user(
            email, first_name=first_name, last_name=last_name, role=role.value, password=password
        )
    output.show_user(user, output_format)


@users_app.command("deactivate")
def users_deactivate(
    uid: UserUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Deactivate a user: their API keys and sessions stop working at once."""
    _ensure_can_confirm(yes, f"deactivate user {uid}")
    with _connected(url, api_key) as client:
        _confirm(
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


@users_app.command("reactivate")
def users_reactivate(
    uid: UserUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Re-activate a deactivated user."""
    with _connected(url, api_key) as client:
        client.reactivate_user(uid)
        user = client.get_user(uid) if output_format is OutputFormat.JSON else None
    if user is not None:
        output.show_user(user, output_format)
    else:
        output.say(f"Re-activated user {uid}.")


@users_app.command("delete")
def users_delete(
    uid: UserUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete a user and every API key they own."""
    _ensure_can_confirm(yes, f"delete user {uid}")
    with _connected(url, api_key) as client:
        _confirm(
            yes,
            lambda: (
                f"Delete {_describe_user(client.get_user(uid))} and all their API keys? "
                "This cannot be undone."
            ),
        )
        client.delete_user(uid)
    if output_format is OutputFormat.JSON:
        output.emit_json({"uid": uid, "deleted": True})
    else:
        output.say(f"Deleted user {uid} and their API keys.")


# --- audit, limits -------------------------------------------------------------------------


@audit_app.command("list")
def audit_list(
    resource_kind: Annotated[
        str | None, typer.Option(help="Only this kind of resource: apiKey, user, tenant...")
    ] = None,
    resource_uid: Annotated[str | None, typer.Option(help="Only this resource.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar="UID", help="Only what this user did.")
    ] = None,
    action_type: Annotated[
        str | None, typer.Option(help="Only this type of action: create, update, delete...")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(parser=_moment, metavar="ISO", help="Only events at or after this."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(parser=_moment, metavar="ISO", help="Only events before this."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="At most this many events, newest first (0: all).")
    ] = 100,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's audit events, newest first."""
    with _connected(url, api_key) as client:
        events = client.list_audit_events(
            resource_kind=resource_kind,
            resource_uid=resource_uid,
            user_uid=user,
            action_type=action_type,
            start=since,
            end=until,
        )
        selected = list(itertools.islice(events, limit) if limit else events)
    if output_format is OutputFormat.JSON:
        output.emit_json([event.model_dump(mode="json") for event in selected])
    else:
        output.audit_table(selected)


@limits_app.command("show")
def limits_show(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """How many API keys each user of the tenant may have."""
    with _connected(url, api_key) as client:
        limit = client.get_api_key_limit()
    output.show_limit(limit, output_format)


@limits_app.command("set")
def limits_set(
    limit: Annotated[int, typer.Argument(help="API keys allowed per user.", min=0)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change how many API keys each user of the tenant may have."""
    with _connected(url, api_key) as client:
        client.set_api_key_limit(limit)
        current = client.get_api_key_limit()
    output.show_limit(current, output_format)
