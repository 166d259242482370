"""The SDK's rotation and API key policy methods, against a real running server."""

from __future__ import annotations

import httpx
import pytest

from keyplane.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    PermissionDenied,
    ValidationError,
)
from tests.live import LiveServer


def test_rotate_and_policy_with_the_sync_client(server: LiveServer) -> None:
    world = server.world
    admin, alice = world.admin, world.alice
    with Client(server.url, email=alice.email, org="acme", password=alice.password) as client:
        old = client.create_api_key("ci")
        rotated = client.rotate_api_key(old.uid, grace_period_seconds=0)
        assert rotated.rotated_from == old.uid
        assert rotated.value not in repr(rotated)
        with Client(server.url, api_key=old.value) as by_old:
            with pytest.raises(AuthenticationError) as refused:
                by_old.whoami()
            assert refused.value.code == "ApiKeyRotated"
        with Client(server.url, api_key=rotated.value) as by_new:
            assert by_new.whoami().user_uid == alice.uid
        assert client.get_api_key(old.uid).rotated_to == rotated.uid
        assert client.get_api_key(old.uid).state == "rotated"
        with pytest.raises(Conflict):
            client.rotate_api_key(old.uid)
        assert client.get_api_key_policy().key_creation == "everyone"
        with pytest.raises(PermissionDenied):
            client.update_api_key_policy(max_lifetime_days=10)

    with Client(server.url, email=admin.email, org="acme", password=admin.password) as client:
        saved = client.update_api_key_policy(max_lifetime_days=10, allowed_cidrs=["10.0.0.0/8"])
        assert saved.max_lifetime_days == 10
        assert saved.allowed_cidrs == ["10.0.0.0/8"]
        kept = client.update_api_key_policy(inactivity_days=90)
        assert (kept.max_lifetime_days, kept.inactivity_days) == (10, 90)
        assert kept.leak_action == "revoke"
        flagged = client.update_api_key_policy(leak_action="flag")
        assert (flagged.leak_action, flagged.inactivity_days) == ("flag", 90)
        assert client.get_api_key_policy().leak_action == "flag"
        cleared = client.update_api_key_policy(allowed_cidrs=None, max_lifetime_days=None)
        assert (cleared.allowed_cidrs, cleared.max_lifetime_days) == (None, None)
        with pytest.raises(ValidationError):
            client.update_api_key_policy(max_lifetime_days=400)


async def test_rotate_and_policy_with_the_async_client(server: LiveServer) -> None:
    admin = server.world.admin
    async with AsyncClient(
        server.url, email=admin.email, org="acme", password=admin.password
    ) as client:
        created = await client.create_api_key("async")
        rotated = await client.rotate_api_key(created.uid, grace_period_seconds=3600)
        async with AsyncClient(server.url, api_key=created.value) as by_old:
            assert (await by_old.whoami()).user_uid == admin.uid
        assert (await client.get_api_key(rotated.uid)).rotated_from == created.uid
        policy = await client.update_api_key_policy(key_creation="admins")
        assert policy.key_creation == "admins"
        assert (await client.get_api_key_policy()).key_creation == "admins"


def test_a_leaked_key_through_the_sync_client(server: LiveServer) -> None:
    admin = server.world.admin
    with Client(server.url, email=admin.email, org="acme", password=admin.password) as client:
        created = client.create_api_key("leaky")
        reported = httpx.post(
            f"{server.url}/v1/apiKeys/leaks", json={"leaks": [{"value": created.value}]}
        )
        assert reported.status_code == 202
        key = client.get_api_key(created.uid)
        assert (key.is_active, key.leaked_at is not None) == (False, True)
        with pytest.raises(Conflict) as refused:
            client.reactivate_api_key(created.uid)
        assert refused.value.code == "ApiKeyLeaked"
        client.reactivate_api_key(created.uid, confirm_leaked=True)
        key = client.get_api_key(created.uid)
        assert (key.is_active, key.leaked_at) == (True, None)
