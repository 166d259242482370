"""``keyplane webhooks``, as a real subprocess against a real server."""

from __future__ import annotations

from tests.cli.helpers import Cli, error_code, sdk_for, use_key_of
from tests.live import LiveServer

URL = "https://hooks.example.com/keyplane"


def test_webhook_endpoints_and_deliveries(cli: Cli, live: LiveServer) -> None:
    admin = live.world.admin
    use_key_of(cli, live, admin)
    assert cli.json("webhooks", "list") == []

    shown = cli.ok(
        "webhooks", "create", URL, "--event", "apiKey.created", "--description", "CI"
    )  # fmt: skip
    assert "whsec_" in shown.stdout
    assert "not shown again" in shown.stderr
    created = cli.json("webhooks", "create", URL + "/2", "--event", "user.created", "--disabled")
    assert created["secret"].startswith("whsec_")
    assert created["enabled"] is False
    refused = cli("webhooks", "create", "http://169.254.169.254/", "--event", "user.created")
    assert (refused.returncode, error_code(refused)) == (1, "InvalidWebhookUrl")
    unknown = cli("webhooks", "create", URL, "--event", "apiKey.exploded")
    assert (unknown.returncode, error_code(unknown)) == (1, "UnknownWebhookEvent")

    listed = cli.json("webhooks", "list")
    assert [item["url"] for item in listed] == [URL, URL + "/2"]
    assert all("secret" not in item for item in listed)
    first = listed[0]["uid"]
    header, *rows = cli.ok("webhooks", "list").stdout.splitlines()
    assert header.split() == ["UID", "URL", "EVENTS", "STATUS"]
    assert rows[0].split() == [first, URL, "apiKey.created", "enabled"]
    assert "whsec_" not in cli.ok("webhooks", "list").stdout

    updated = cli.json(
        "webhooks", "update", first, "--event", "apiKey.created", "--event", "apiKey.revoked",
        "--description", "",
    )  # fmt: skip
    assert (updated["events"], updated["description"], updated["url"]) == (
        ["apiKey.created", "apiKey.revoked"],
        "",
        URL,
    )
    rotated = cli.json("webhooks", "rotate-secret", first)
    assert rotated["secret"].startswith("whsec_")

    with sdk_for(live, live.world.alice) as alice:
        alice.create_api_key("ci")
    (delivery,) = cli.json("webhooks", "deliveries", first)
    assert delivery["event_type"] == "apiKey.created"
    assert delivery["status"] == "pending"
    header, row = cli.ok("webhooks", "deliveries", first).stdout.splitlines()
    assert header.split() == ["UID", "EVENT", "STATUS", "ATTEMPTS", "RESPONSE", "DURATION", "TIME"]
    assert row.split()[:4] == [delivery["uid"], "apiKey.created", "pending", "0"]
    resent = cli.ok("webhooks", "resend", delivery["uid"]).stdout
    assert resent.startswith("Queued apiKey.created to be sent again")
    assert len(cli.json("webhooks", "deliveries", first)) == 2

    unconfirmed = cli("webhooks", "delete", first)
    assert unconfirmed.returncode == 2
    assert cli.json("webhooks", "delete", first, "--yes") == {"uid": first, "deleted": True}
    assert [item["url"] for item in cli.json("webhooks", "list")] == [URL + "/2"]
