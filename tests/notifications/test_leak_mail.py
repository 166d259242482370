"""The mail about a leaked key, through a real SMTP server: to the owner and to each tenant
admin, naming the key by its hint and linking to its console page, never its value."""

from __future__ import annotations

import httpx

from keyplane.kit.keys import generate_api_key
from keyplane.notifications import worker
from keyplane.runtime import Runtime
from tests.api_keys.helpers import make_api_key
from tests.helpers import World
from tests.notifications.conftest import Mailbox, body_of

URL = "https://pastebin.example/raw/42"


async def test_owner_and_admins_are_mailed_once_without_the_value(
    client: httpx.AsyncClient, runtime: Runtime, world: World, smtp: Mailbox
) -> None:
    key = await make_api_key(client, world.alice, "deploy")
    fake = generate_api_key()
    body = {"leaks": [{"value": key.value, "url": URL, "source": "paste"}, {"value": fake}]}
    for _ in range(2):  # reported twice: still one mail each
        assert (await client.post("/v1/apiKeys/leaks", json=body)).status_code == 202
    await worker.send_due(runtime)

    [to_alice] = smtp.to(world.alice.email)
    [to_admin] = smtp.to(world.admin.email)
    assert smtp.to(world.bob.email) == []
    assert to_alice["Subject"] == "API key “deploy” was reported leaked"
    hint = "kp_…" + key.value[-4:]
    alice_text, admin_text = body_of(to_alice), body_of(to_admin)
    assert f"Your API key “deploy” ({hint})" in alice_text
    assert "alice@acme.example" in admin_text
    assert hint in admin_text
    for text in (alice_text, admin_text):
        assert URL in text
        assert "revoked it at once" in text
    assert f"https://keyplane.example/my/api-keys/{key.uid}" in alice_text
    assert f"https://keyplane.example/tenant/settings/api-keys/{key.uid}" in admin_text
    assert not any(value in text for value in (key.value, fake) for text in smtp.texts())
