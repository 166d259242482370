"""How the remote commands print: aligned Rich tables for people, plain JSON for scripts.

Data always goes to stdout and everything else (warnings, errors, prompts) to stderr, so
that ``keyplane ... -o json | jq`` and ``KEY=$(keyplane keys create ci --quiet)`` work.
Nothing from the server is ever read as Rich markup. When stdout is not a terminal the
tables carry no colour, are never wrapped or cut to a terminal width, and have no trailing
spaces.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from keyplane.client import ApiKey, AuditEvent, CreditsRefill, RateLimit, ResourceLimit, User
from keyplane.kit.keys import hint_display

_PADDING = 2
# Wide enough that no row of a table is ever wrapped when the output is not a terminal.
_UNBOUNDED_WIDTH = 10_000


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _console() -> Console:
    if sys.stdout.isatty():
        return Console(highlight=False, markup=False, emoji=False)
    return Console(
        width=_UNBOUNDED_WIDTH,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


def _print(renderable: Table, least_width: int = 0) -> None:
    console = _console()
    if console.is_terminal:
        # Rich would squeeze or hide whole columns rather than overflow a narrow terminal;
        # print at full width instead and let the terminal wrap, so no value is lost.
        if least_width > console.width:
            unbounded = console.options.update(width=_UNBOUNDED_WIDTH)
            console.width = Measurement.get(console, unbounded, renderable).maximum
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


# --- plain lines ---------------------------------------------------------------------


def say(text: str) -> None:
    """A line for people on stdout (table output only)."""
    typer.echo(text)


def note(text: str) -> None:
    typer.echo(text, err=True)


def warn(text: str) -> None:
    typer.secho(f"Warning: {text}", fg="yellow", err=True)


def error(text: str) -> None:
    typer.secho(text, fg="red", err=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def deleted(uid: str, sentence: str, output: OutputFormat) -> None:
    """What every delete command prints: ``{"uid", "deleted": true}``, or the sentence."""
    if output is OutputFormat.JSON:
        emit_json({"uid": uid, "deleted": True})
    else:
        say(sentence)


# --- values ----------------------------------------------------------------------------


def when(moment: datetime | None, missing: str = "-") -> str:
    if moment is None:
        return missing
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def key_state(key: ApiKey) -> str:
    """One state per key, as the console shows it (``ApiKey.state`` on the server): revoked
    ("Inactive", Palette's word) wins over expired, since a revoke outlives the expiry
    (extending a revoked key leaves it revoked); expired wins over active."""
    if not key.is_active:
        return "Inactive"
    if key.state == "rotated":
        return "Rotated"
    if key.is_expired:
        return "Expired"
    return "Active"


def key_hint(key: ApiKey) -> str:
    """``kp_…abcd``: the prefix and the last 4 characters, all that is kept of a key."""
    return hint_display(key.key_hint) if key.key_hint else "-"


def user_state(user: User) -> str:
    return "Active" if user.is_active else "Inactive"


_STATE_STYLES = {"Active": "green", "Inactive": "red", "Expired": "yellow"}


def _state(text: str) -> Text:
    return Text(text, style=_STATE_STYLES.get(text, ""))


# --- tables ----------------------------------------------------------------------------


# Free text may wrap in a narrow terminal; identifiers, emails and dates never do.
_WRAPPING_COLUMNS = frozenset({"NAME", "RESOURCE", "MESSAGE"})


def table(headers: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
    grid = Table(box=None, pad_edge=False, header_style="bold", padding=(0, _PADDING, 0, 0))
    cells = [[cell if isinstance(cell, Text) else Text(cell) for cell in row] for row in rows]
    least_width = _PADDING * (len(headers) - 1)
    for index, header in enumerate(headers):
        wraps = header in _WRAPPING_COLUMNS
        grid.add_column(header, no_wrap=not wraps, overflow="fold")
        column = [Text(header), *(row[index] for row in cells)]
        least_width += max(
            max((cell_len(word) for word in text.plain.split()), default=0)
            if wraps
            else text.cell_len
            for text in column
        )
    for row in cells:
        grid.add_row(*row)
    _print(grid, least_width)


def details(pairs: Sequence[tuple[str, str | Text]]) -> None:
    grid = Table(
        box=None, show_header=False, show_edge=False, pad_edge=False, padding=(0, _PADDING, 0, 0)
    )
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in pairs:
        grid.add_row(Text(label), value if isinstance(value, Text) else Text(value))
    _print(grid)


# --- API keys --------------------------------------------------------------------------


def key_json(key: ApiKey) -> dict[str, Any]:
    return {**key.model_dump(mode="json"), "state": key_state(key).lower()}


def keys_table(keys: Sequence[ApiKey]) -> None:
    if not keys:
        note("No API keys.")
        return
    table(
        ["UID", "NAME", "KEY", "OWNER", "STATE", "EXPIRES", "LAST USED"],
        (
            [
                key.uid,
                key.name,
                key_hint(key),
                key.user_email,
                _state(key_state(key)),
                when(key.expires_at),
                when(key.last_used_at, "never"),
            ]
            for key in keys
        ),
    )


def key_details(key: ApiKey) -> None:
    details(
        [
            ("UID", key.uid),
            ("Name", key.name),
            ("Key", key_hint(key)),
            ("Description", key.description or "-"),
            (
                "Owner",
                key.user_email
                if key.user_name in ("", key.user_email)
                else f"{key.user_name} <{key.user_email}>",
            ),
            ("Owner UID", key.user_uid),
            ("State", _state(key_state(key))),
            ("Expires", when(key.expires_at)),
            ("Created", when(key.created_at)),
            ("Modified", when(key.modified_at)),
            ("Last used", when(key.last_used_at, "never")),
            *restriction_details(key),
        ]
    )


# Largest first: a window is shown in the largest unit that divides it (600 s is 10m).
_WINDOW_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def rate_text(rate: RateLimit) -> str:
    """``keys create --rate``'s notation: ``100/1s``, ``1000/10m``; ``burst=20/1s`` when
    the limit has a name of its own (the server names the others ``100/1s``, ``1000/600s``)."""
    unit, size = next(
        (unit, size) for unit, size in _WINDOW_UNITS if rate.window_seconds % size == 0
    )
    text = f"{rate.limit}/{rate.window_seconds // size}{unit}"
    default_name = f"{rate.limit}/{rate.window_seconds}s"
    return text if rate.name in (None, default_name) else f"{rate.name}={text}"


def refill_text(refill: CreditsRefill) -> str:
    """``keys create --refill``'s notation: ``daily:500``, ``monthly:1000:1``."""
    if refill.interval == "daily":
        return f"daily:{refill.amount}"
    return f"monthly:{refill.amount}:{refill.day or 1}"


def restriction_details(key: ApiKey) -> list[tuple[str, str]]:
    """A row per restriction the key has, in ``keys create``'s notation; none for a key
    without any."""
    rows: list[tuple[str, str]] = []
    if key.scopes is not None:
        rows.append(("Scopes", ", ".join(key.scopes) or "none"))
    if key.permissions:
        rows.append(("Permissions", ", ".join(key.permissions)))
    if key.permission_roles:
        rows.append(("Permission roles", ", ".join(key.permission_roles)))
    if key.allowed_cidrs is not None:
        rows.append(("Allowed from", ", ".join(key.allowed_cidrs) or "nowhere"))
    if key.rate_limits:
        rows.append(("Rate limits", ", ".join(rate_text(limit) for limit in key.rate_limits)))
    if key.credits is not None:
        credits = f"{key.credits.remaining} left"
        if key.credits.refill is not None:
            credits += f", refill {refill_text(key.credits.refill)}"
            credits += f" (next {when(key.credits.next_refill_at)})"
        rows.append(("Credits", credits))
    if key.owner_id is not None:
        rows.append(("Owner ID", key.owner_id))
    if key.meta is not None:
        rows.append(("Meta", json.dumps(key.meta, ensure_ascii=False, sort_keys=True)))
    return rows


def show_key(key: ApiKey, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json(key_json(key))
    else:
        key_details(key)


# --- users -----------------------------------------------------------------------------


def user_json(user: User) -> dict[str, Any]:
    return {**user.model_dump(mode="json"), "name": user.name, "state": user_state(user).lower()}


def users_table(users: Sequence[User]) -> None:
    table(
        ["UID", "EMAIL", "NAME", "ROLE", "STATE", "LAST SIGN-IN"],
        (
            [
                user.uid,
                user.email,
                " ".join(part for part in (user.first_name, user.last_name) if part) or "-",
                user.role,
                _state(user_state(user)),
                when(user.last_sign_in_at, "never"),
            ]
            for user in users
        ),
    )


def show_user(user: User, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json(user_json(user))
        return
    details(
        [
            ("UID", user.uid),
            ("Email", user.email),
            ("Name", user.name),
            ("Role", user.role),
            ("State", _state(user_state(user))),
            ("Created", when(user.created_at)),
            ("Last sign-in", when(user.last_sign_in_at, "never")),
        ]
    )


# --- audit, limits ---------------------------------------------------------------------


def audit_table(events: Sequence[AuditEvent]) -> None:
    if not events:
        note("No audit events.")
        return
    table(
        ["TIME", "ACTION", "OUTCOME", "ACTOR", "RESOURCE", "MESSAGE"],
        (
            [
                when(event.occurred_at),
                event.action or event.action_type,
                event.outcome or "-",
                event.actor_email or event.actor_uid or "-",
                f"{event.resource_kind} {event.resource_name or event.resource_uid}".strip(),
                event.message,
            ]
            for event in events
        ),
    )


def show_limit(limit: ResourceLimit, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json(limit.model_dump(mode="json"))
        return
    details(
        [
            ("API keys per user", str(limit.limit)),
            ("Maximum allowed", str(limit.max_limit)),
        ]
    )
