"""``keyplane policy``: the tenant's API key policy, over the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from keyplane.cli import output
from keyplane.cli.connection import ApiKeyOption, OutputOption, UrlOption, connected, usage_error
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import UNCHANGED, ApiKeyPolicy

app = KeyplaneTyper(
    no_args_is_help=True,
    help="The tenant's API key policy: lifetimes, who creates keys, address ranges, "
    "inactivity, leaked keys (tenant admins change it).",
)


def _show(policy: ApiKeyPolicy, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        output.emit_json(policy.model_dump(mode="json"))
        return

    def days(value: int | None, effective: int | None) -> str:
        return f"{value} days" if value is not None else f"server's ({effective} days)"

    output.details(
        [
            ("Max lifetime", days(policy.max_lifetime_days, policy.effective_max_lifetime_days)),
            (
                "Default lifetime",
                days(policy.default_lifetime_days, policy.effective_default_lifetime_days),
            ),
            ("Expiry required", "yes" if policy.expiry_required else "no"),
            ("Key creation", policy.key_creation),
            (
                "Allowed from",
                ", ".join(policy.allowed_cidrs) if policy.allowed_cidrs is not None else "anywhere",
            ),
            (
                "Inactivity",
                f"revoke after {policy.inactivity_days} days unused"
                if policy.inactivity_days is not None
                else "never revoke",
            ),
            ("Expiry notices", ", ".join(f"{day}d" for day in policy.expiry_notice_days) or "-"),
            (
                "Leaked keys",
                "revoke at once" if policy.leak_action == "revoke" else "flag only",
            ),
        ]
    )


@app.command("show")
def policy_show(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's API key policy."""
    with connected(url, api_key) as client:
        policy = client.get_api_key_policy()
    _show(policy, output_format)


@app.command("set")
def policy_set(
    max_lifetime: Annotated[
        int | None,
        typer.Option(
            "--max-lifetime", min=1, metavar="DAYS", help="Longest a key may live, in days."
        ),
    ] = None,
    no_max_lifetime: Annotated[
        bool, typer.Option("--no-max-lifetime", help="The server's maximum lifetime.")
    ] = False,
    default_lifetime: Annotated[
        int | None,
        typer.Option(
            "--default-lifetime",
            min=1,
            metavar="DAYS",
            help="Lifetime of a key created without an expiry.",
        ),
    ] = None,
    no_default_lifetime: Annotated[
        bool, typer.Option("--no-default-lifetime", help="The server's default lifetime.")
    ] = False,
    expiry_required: Annotated[
        bool | None,
        typer.Option(
            "--expiry-required/--expiry-optional",
            help="Whether a key must be created with an expiry.",
            show_default=False,
        ),
    ] = None,
    key_creation: Annotated[
        str | None,
        typer.Option("--key-creation", metavar="everyone|admins", help="Who may create keys."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", metavar="CIDR", help="An address range every key stays within (repeat)."
        ),
    ] = None,
    no_allow: Annotated[
        bool, typer.Option("--no-allow", help="No tenant-wide address ranges.")
    ] = False,
    inactivity: Annotated[
        int | None,
        typer.Option(
            "--inactivity", min=1, metavar="DAYS", help="Revoke keys unused for this many days."
        ),
    ] = None,
    no_inactivity: Annotated[
        bool, typer.Option("--no-inactivity", help="Never revoke unused keys.")
    ] = False,
    notice: Annotated[
        list[int] | None,
        typer.Option(
            "--notice",
            min=1,
            max=365,
            metavar="DAYS",
            help="Mail owners DAYS before expiry (repeat; replaces the list).",
        ),
    ] = None,
    leak_action: Annotated[
        str | None,
        typer.Option(
            "--leak-action",
            metavar="revoke|flag",
            help="What a report of a leaked key does: revoke it at once, or only flag it.",
        ),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change the policy: what is given changes, the rest is kept. It applies to keys
    created or edited from now on."""
    if key_creation not in (None, "everyone", "admins"):
        usage_error("--key-creation: everyone or admins")
    if leak_action not in (None, "revoke", "flag"):
        usage_error("--leak-action: revoke or flag")
    for given, removed, name in (
        (max_lifetime, no_max_lifetime, "max-lifetime"),
        (default_lifetime, no_default_lifetime, "default-lifetime"),
        (allow, no_allow, "allow"),
        (inactivity, no_inactivity, "inactivity"),
    ):
        if given and removed:
            usage_error(f"--{name} and --no-{name} together")
    changes: dict[str, Any] = {}
    for name, given, removed in (
        ("max_lifetime_days", max_lifetime, no_max_lifetime),
        ("default_lifetime_days", default_lifetime, no_default_lifetime),
        ("allowed_cidrs", allow or None, no_allow),
        ("inactivity_days", inactivity, no_inactivity),
    ):
        changes[name] = None if removed else (given if given is not None else UNCHANGED)
    changes["expiry_required"] = UNCHANGED if expiry_required is None else expiry_required
    changes["key_creation"] = key_creation or UNCHANGED
    changes["expiry_notice_days"] = notice or UNCHANGED
    changes["leak_action"] = leak_action or UNCHANGED
    with connected(url, api_key) as client:
        policy = client.update_api_key_policy(**changes)
    _show(policy, output_format)
