"""``keyplane audit``: the tenant's audit log, over the API (tenant admins)."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated

import typer

from keyplane.cli import output
from keyplane.cli.connection import ApiKeyOption, OutputOption, UrlOption, connected, parse_moment
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper

app = KeyplaneTyper(no_args_is_help=True, help="The tenant's audit log (tenant admins).")


@app.command("list")
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
        typer.Option(parser=parse_moment, metavar="ISO", help="Only events at or after this."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(parser=parse_moment, metavar="ISO", help="Only events before this."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="At most this many events, newest first (0: all).")
    ] = 100,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's audit events, newest first."""
    with connected(url, api_key) as client:
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
