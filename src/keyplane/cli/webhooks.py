"""``keyplane webhooks``: the tenant's webhook endpoints, their signing secrets and their
deliveries, over the API (tenant admins). A signing secret is printed when an endpoint is
created and when it is rotated, never again."""

from __future__ import annotations

from typing import Annotated, Any

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
    usage_error,
)
from keyplane.cli.output import OutputFormat
from keyplane.cli.typer_help import KeyplaneTyper
from keyplane.client import WebhookDelivery, WebhookEndpoint

app = KeyplaneTyper(
    no_args_is_help=True,
    help="The tenant's webhook endpoints, signed to the Standard Webhooks spec (tenant admins).",
)

EndpointUid = Annotated[str, typer.Argument(help="The endpoint's UID.", show_default=False)]
EventsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        metavar="TYPE",
        show_default=False,
        help="An event type to send (repeatable), e.g. apiKey.created, apiKey.revoked, "
        "user.created.",
    ),
]
DescriptionOption = Annotated[str | None, typer.Option(help="What it is for.")]


def _endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    data = endpoint.model_dump(mode="json")
    if endpoint.secret is None:
        data.pop("secret", None)
    return data


def _status(endpoint: WebhookEndpoint) -> str:
    if not endpoint.enabled:
        return "disabled"
    return "failing" if endpoint.failing_since else "enabled"


def _show_endpoint(endpoint: WebhookEndpoint, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSON:
        output.emit_json(_endpoint_json(endpoint))
        return
    rows: list[tuple[str, str]] = [
        ("UID", endpoint.uid),
        ("URL", endpoint.url),
        ("Description", endpoint.description or "-"),
        ("Events", ", ".join(endpoint.events)),
        ("Status", _status(endpoint)),
    ]
    if endpoint.failing_since:
        rows.append(("Failing since", output.when(endpoint.failing_since)))
    if endpoint.disabled_reason:
        rows.append(("Disabled because", endpoint.disabled_reason))
    rows.append(("Created", output.when(endpoint.created_at)))
    if endpoint.secret:
        rows.append(("Signing secret", endpoint.secret))
    output.details(rows)
    if endpoint.secret:
        output.warn("Copy the signing secret now: it is not shown again.")


@app.command("list")
def webhooks_list(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The tenant's webhook endpoints."""
    with connected(url, api_key) as client:
        endpoints = client.list_webhook_endpoints()
    if output_format is OutputFormat.JSON:
        output.emit_json([_endpoint_json(endpoint) for endpoint in endpoints])
        return
    if not endpoints:
        output.note("No webhook endpoints.")
        return
    output.table(
        ["UID", "URL", "EVENTS", "STATUS"],
        ([e.uid, e.url, ",".join(e.events), _status(e)] for e in endpoints),
    )


@app.command("create")
def webhooks_create(
    endpoint_url: Annotated[str, typer.Argument(metavar="URL", help="Where events are POSTed.")],
    event: EventsOption = None,
    description: DescriptionOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Register it disabled.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Register an endpoint; prints its signing secret, this once."""
    if not event:
        usage_error("Give at least one --event.")
    with connected(url, api_key) as client:
        endpoint = client.create_webhook_endpoint(
            endpoint_url, event or [], description=description or "", enabled=not disabled
        )
    _show_endpoint(endpoint, output_format)


@app.command("update")
def webhooks_update(
    uid: EndpointUid,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="A new URL for the endpoint.")
    ] = None,
    event: EventsOption = None,
    description: Annotated[
        str | None, typer.Option(help='A new description ("" for none).')
    ] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enable or disable it.")
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Change an endpoint; what is not given is kept. The --event options given replace
    its events. Enabling an endpoint disabled for failing starts its health afresh."""
    if endpoint_url is None and not event and description is None and enable is None:
        usage_error(
            "Nothing to change: give --endpoint-url, --event, --description, --enable or --disable."
        )
    with connected(url, api_key) as client:
        endpoint = client.update_webhook_endpoint(
            uid, url=endpoint_url, events=event or None, description=description, enabled=enable
        )
    _show_endpoint(endpoint, output_format)


@app.command("delete")
def webhooks_delete(
    uid: EndpointUid,
    yes: YesOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete an endpoint and its deliveries."""
    ensure_can_confirm(yes, f"delete webhook endpoint {uid}")
    with connected(url, api_key) as client:
        confirm(
            yes,
            lambda: f"Delete webhook endpoint {uid}? Events waiting for it are never sent.",
        )
        client.delete_webhook_endpoint(uid)
    output.deleted(uid, f"Deleted webhook endpoint {uid}.", output_format)


@app.command("rotate-secret")
def webhooks_rotate_secret(
    uid: EndpointUid,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """A new signing secret, printed this once; the previous one keeps signing alongside it
    for 24 hours."""
    with connected(url, api_key) as client:
        endpoint = client.rotate_webhook_secret(uid)
    _show_endpoint(endpoint, output_format)


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return delivery.model_dump(mode="json")


@app.command("deliveries")
def webhooks_deliveries(
    uid: EndpointUid,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """An endpoint's deliveries, newest first."""
    with connected(url, api_key) as client:
        found = []
        for delivery in client.list_webhook_deliveries(uid):
            found.append(delivery)
            if len(found) >= limit:
                break
    if output_format is OutputFormat.JSON:
        output.emit_json([_delivery_json(delivery) for delivery in found])
        return
    if not found:
        output.note("No deliveries.")
        return
    output.table(
        ["UID", "EVENT", "STATUS", "ATTEMPTS", "RESPONSE", "DURATION", "TIME"],
        (
            [
                d.uid,
                d.event_type,
                d.status,
                str(d.attempts),
                "-" if d.response_status is None else str(d.response_status),
                "-" if d.duration_ms is None else f"{d.duration_ms} ms",
                output.when(d.last_attempt_at or d.created_at),
            ]
            for d in found
        ),
    )


@app.command("resend")
def webhooks_resend(
    delivery_uid: Annotated[str, typer.Argument(help="The delivery's UID.", show_default=False)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Send a delivery's event again (a new delivery, the same webhook-id)."""
    with connected(url, api_key) as client:
        delivery = client.resend_webhook_delivery(delivery_uid)
    if output_format is OutputFormat.JSON:
        output.emit_json(_delivery_json(delivery))
        return
    output.say(f"Queued {delivery.event_type} to be sent again as delivery {delivery.uid}.")
