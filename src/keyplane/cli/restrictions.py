"""An API key's restrictions on the command line: the options of ``keyplane keys create``
and ``keys edit``, read into the SDK's terms, and shown back in the same notation.

- ``--rate [NAME=]LIMIT/[N]UNIT``: ``100/s``, ``1000/10m``, ``burst=20/s`` (units s, m, h,
  d); shown as ``100/1s``, ``1000/10m``, ``burst=20/1s`` (``output.rate_text``).
- ``--refill monthly:AMOUNT[:DAY]`` or ``daily:AMOUNT``, with ``--credits N``.
- ``--meta '{"plan": "pro"}'``: a JSON object.

A malformed value is refused by Typer (exit 2) before anything is sent, in the words of
the command's other option errors: ``Invalid value for '--rate': ...``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer

from keyplane.auth.scopes import SCOPES
from keyplane.cli.connection import usage_error
from keyplane.client import Credits, CreditsRefill, RateLimit

_PANEL = "Restrictions"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"(?:(?P<name>[^=\s]+)=)?(?P<limit>[0-9]+)/(?P<count>[0-9]*)(?P<unit>[smhd])")
_REFILL = re.compile(r"(?P<interval>daily|monthly):(?P<amount>[0-9]+)(?::(?P<day>[0-9]+))?")


def parse_scope(value: str) -> str:
    scope = value.strip()
    if scope not in SCOPES:
        raise typer.BadParameter(f"{value!r} is not a scope: give one of {', '.join(SCOPES)}.")
    return scope


def parse_rate(value: str) -> RateLimit:
    found = _RATE.fullmatch(value.strip())
    if found is None:
        raise typer.BadParameter(
            f"{value!r} is not a rate: give uses per window, such as 100/s, 1000/10m or "
            "burst=20/s (units s, m, h and d)."
        )
    limit, count = int(found["limit"]), int(found["count"] or 1)
    if limit < 1 or count < 1:
        raise typer.BadParameter(f"{value!r}: the uses and the window must be at least 1.")
    return RateLimit(limit=limit, window_seconds=count * _UNITS[found["unit"]], name=found["name"])


def parse_refill(value: str) -> CreditsRefill:
    found = _REFILL.fullmatch(value.strip())
    if found is None:
        raise typer.BadParameter(
            f"{value!r} is not a refill: give monthly:AMOUNT[:DAY] or daily:AMOUNT, such as "
            "monthly:1000, monthly:1000:15 or daily:500."
        )
    interval: Literal["daily", "monthly"] = "daily" if found["interval"] == "daily" else "monthly"
    amount = int(found["amount"])
    day = int(found["day"]) if found["day"] else None
    if amount < 1:
        raise typer.BadParameter(f"{value!r}: the amount must be at least 1.")
    if day is not None and interval == "daily":
        raise typer.BadParameter(f"{value!r}: a daily refill takes no day of the month.")
    if day is not None and not 1 <= day <= 31:
        raise typer.BadParameter(f"{value!r}: the day of the month must be from 1 to 31.")
    return CreditsRefill(interval=interval, amount=amount, day=day)


def parse_meta(value: str) -> dict[str, Any]:
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise typer.BadParameter(
            f'{value!r} is not a JSON object: give one such as \'{{"plan": "pro"}}\'.'
        )
    return document


# --- the options --------------------------------------------------------------------------

ScopeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        parser=parse_scope,
        metavar="SCOPE",
        show_default=False,
        help=f"An operation of Keyplane's API the key may call (repeatable): {', '.join(SCOPES)}.",
        rich_help_panel=_PANEL,
    ),
]
PermissionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--permission",
        metavar="NAME",
        show_default=False,
        help="A permission of the tenant's, returned by verify (repeatable).",
        rich_help_panel=_PANEL,
    ),
]
RoleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--role",
        metavar="NAME",
        show_default=False,
        help="A permission role of the tenant's (repeatable).",
        rich_help_panel=_PANEL,
    ),
]
AllowOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        metavar="CIDR",
        show_default=False,
        help="Usable only from this address range, e.g. 10.0.0.0/8 (repeatable).",
        rich_help_panel=_PANEL,
    ),
]
RateOption = Annotated[
    list[RateLimit] | None,
    typer.Option(
        "--rate",
        parser=parse_rate,
        metavar="RATE",
        show_default=False,
        help="A rate limit, [NAME=]USES/WINDOW: 100/s, 1000/10m, burst=20/s; units s, m, h, d "
        "(repeatable).",
        rich_help_panel=_PANEL,
    ),
]
CreditsOption = Annotated[
    int | None,
    typer.Option(
        "--credits",
        min=0,
        metavar="N",
        help="Uses left; each verify spends one (or its cost).",
        rich_help_panel=_PANEL,
    ),
]
RefillOption = Annotated[
    CreditsRefill | None,
    typer.Option(
        "--refill",
        parser=parse_refill,
        metavar="SPEC",
        help="Top the credits up: monthly:AMOUNT[:DAY] or daily:AMOUNT (00:00 UTC).",
        rich_help_panel=_PANEL,
    ),
]
OwnerIdOption = Annotated[
    str | None,
    typer.Option(
        "--owner-id",
        metavar="ID",
        help="Your own id for the key's customer, returned by verify.",
        rich_help_panel=_PANEL,
    ),
]
MetaOption = Annotated[
    dict[str, Any] | None,
    typer.Option(
        "--meta",
        parser=parse_meta,
        metavar="JSON",
        help='A JSON object returned by verify, e.g. \'{"plan": "pro"}\'.',
        rich_help_panel=_PANEL,
    ),
]


def _removal(flag: str, what: str) -> Any:
    return typer.Option(flag, help=f"Remove {what}.", rich_help_panel=_PANEL)


NoScopesOption = Annotated[bool, _removal("--no-scopes", "the scopes (all its owner may do)")]
NoPermissionsOption = Annotated[bool, _removal("--no-permissions", "the permissions")]
NoRolesOption = Annotated[bool, _removal("--no-roles", "the permission roles")]
NoAllowOption = Annotated[bool, _removal("--no-allow", "the address ranges (usable anywhere)")]
NoRateOption = Annotated[bool, _removal("--no-rate", "the rate limits")]
NoCreditsOption = Annotated[bool, _removal("--no-credits", "the credits (unlimited uses)")]
NoOwnerIdOption = Annotated[bool, _removal("--no-owner-id", "the owner id")]
NoMetaOption = Annotated[bool, _removal("--no-meta", "the meta document")]


@dataclass(frozen=True)
class Given:
    """The restriction options of one command line."""

    scopes: list[str] | None = None
    permissions: list[str] | None = None
    roles: list[str] | None = None
    allow: list[str] | None = None
    rates: list[RateLimit] | None = None
    credits: int | None = None
    refill: CreditsRefill | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None

    def credits_spec(self) -> Credits | None:
        if self.refill is not None and self.credits is None:
            usage_error(
                "--refill needs --credits, the uses left now: "
                "e.g. --credits 1000 --refill monthly:1000."
            )
        if self.credits is None:
            return None
        return Credits(remaining=self.credits, refill=self.refill)

    def for_create(self) -> dict[str, Any]:
        """``create_api_key``'s keyword arguments."""
        return {
            "scopes": self.scopes or None,
            "permissions": self.permissions or None,
            "permission_roles": self.roles or None,
            "allowed_cidrs": self.allow or None,
            "rate_limits": self.rates or None,
            "credits": self.credits_spec(),
            "owner_id": self.owner_id,
            "meta": self.meta,
        }

    def for_update(self, removed: dict[str, bool]) -> dict[str, Any]:
        """``update_api_key``'s keyword arguments: what is given, None for what is removed
        (``removed`` maps the argument to its ``--no-...`` flag), and nothing else."""
        values: dict[str, tuple[str, Any]] = {
            "scopes": ("--scope", self.scopes or None),
            "permissions": ("--permission", self.permissions or None),
            "permission_roles": ("--role", self.roles or None),
            "allowed_cidrs": ("--allow", self.allow or None),
            "rate_limits": ("--rate", self.rates or None),
            "credits": ("--credits", self.credits_spec()),
            "owner_id": ("--owner-id", self.owner_id),
            "meta": ("--meta", self.meta),
        }
        changes: dict[str, Any] = {}
        for name, (option, value) in values.items():
            flag = _REMOVAL_FLAGS[name]
            if removed.get(name):
                if value is not None:
                    usage_error(f"Give {option} or {flag}, not both.")
                changes[name] = None
            elif value is not None:
                changes[name] = value
        return changes


_REMOVAL_FLAGS = {
    "scopes": "--no-scopes",
    "permissions": "--no-permissions",
    "permission_roles": "--no-roles",
    "allowed_cidrs": "--no-allow",
    "rate_limits": "--no-rate",
    "credits": "--no-credits",
    "owner_id": "--no-owner-id",
    "meta": "--no-meta",
}
