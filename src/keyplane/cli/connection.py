"""What the remote commands share: connecting to a running server through the SDK
(``keyplane.client``), the options every command takes, confirmations and usage errors.

Credentials, in this order: ``--api-key`` / ``KEYPLANE_API_KEY``, else the session stored
by ``keyplane login``. The server: ``--url`` / ``KEYPLANE_URL``, else the stored session's.
A stored session token is only ever sent to the server it was issued by.

Exit codes: 0 success; 1 the API refused or could not be reached (``Error [code]: message``
on stderr); 2 a usage error (bad option, no server or credentials, no confirmation).
"""

from __future__ import annotations

import ipaddress
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
from keyplane.client import AuthenticationError, Client, KeyplaneError

PANEL = "Remote (a running server, over its API)"

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


def parse_moment(value: str) -> datetime:
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
        parser=parse_moment,
        metavar="ISO",
        help="Expire at this moment (ISO 8601; UTC when no zone is given).",
    ),
]


def usage_error(message: str) -> NoReturn:
    output.error(f"Error: {message}")
    raise typer.Exit(2)


# --- connecting ----------------------------------------------------------------------------


def server_url(url: str) -> str:
    base = url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        usage_error(f"{url!r} is not a server URL: give one like https://keys.example.com.")
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


def load_session() -> StoredSession | None:
    try:
        return stored_sessions.load()
    except SessionFileError as exc:
        usage_error(str(exc))


@dataclass(frozen=True)
class _Target:
    url: str
    api_key: str | None
    stored: StoredSession | None


def _target(url: str | None, api_key: str | None) -> _Target:
    stored = None if (url and api_key) else load_session()
    if url:
        base = server_url(url)
    elif stored is not None:
        base = stored.url
    else:
        usage_error(
            "Not logged in and no server given: log in with "
            "`keyplane login --url URL --email EMAIL --org ORG`, or pass --url (or set "
            "KEYPLANE_URL) with KEYPLANE_API_KEY."
        )
    if api_key:
        return _Target(base, api_key.strip(), None)
    if stored is not None and stored.url == base:
        return _Target(base, None, stored)
    if stored is not None:
        usage_error(
            f"No credentials for {base}: the stored session is for {stored.url}. "
            "Set KEYPLANE_API_KEY (or pass --api-key), or log in to this server with "
            "`keyplane login`."
        )
    usage_error(
        "No credentials: set KEYPLANE_API_KEY (or pass --api-key), or log in with "
        "`keyplane login --url URL --email EMAIL --org ORG`."
    )


@contextmanager
def api_errors(session_hint: bool = False) -> Iterator[None]:
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
def connected(url: str | None, api_key: str | None) -> Iterator[Client]:
    target = _target(url, api_key)
    stored = target.stored
    with api_errors(session_hint=stored is not None):
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


def ensure_can_confirm(yes: bool, action: str) -> None:
    """Refuse before anything is done when no one can answer a confirmation prompt."""
    if not yes and not sys.stdin.isatty():
        usage_error(
            f"Refusing to {action} without confirmation: stdin is not a terminal. "
            "Pass --yes to confirm."
        )


def confirm(yes: bool, question: Callable[[], str]) -> None:
    if yes:
        return
    if not typer.confirm(question(), default=False, err=True):
        output.note("Aborted; nothing was changed.")
        raise typer.Exit(1)


def read_secret_from_stdin(what: str) -> str:
    secret = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not secret:
        usage_error(f"No {what} on stdin.")
    return secret


def expiry_from(days: int | None, at: datetime | None) -> datetime | None:
    if days is not None and at is not None:
        usage_error("Give --expires-in-days or --expires-at, not both.")
    if days is not None:
        return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    return at
