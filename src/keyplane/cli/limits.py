"""``keyplane limits``: the tenant's limit of API keys per user, over the API."""

from __future__ import annotations

from typing import Annotated

import typer

from keyplane.cli import output
from keyplane.cli.connection import ApiKeyOption, OutputOption, UrlOption, connected
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper

app = KeyplaneTyper(
    no_args_is_help=True, help="The tenant's limit of API keys per user (tenant admins)."
)


@app.command("show")
def limits_show(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """How many API keys each user of the tenant may have."""
    with connected(url, api_key) as client:
        limit = client.get_api_key_limit()
    output.show_limit(limit, output_format)


@app.command("set")
def limits_set(
    limit: Annotated[int, typer.Argument(help="API keys allowed per user.", min=0)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change how many API keys each user of the tenant may have."""
    with connected(url, api_key) as client:
        client.set_api_key_limit(limit)
        current = client.get_api_key_limit()
    output.show_limit(current, output_format)
