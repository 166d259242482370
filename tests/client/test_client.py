"""The SDK against a real running server: every method, and its error paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from keyplane.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    ConnectionFailed,
    CreatedApiKey,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from keyplane.client._transport import TOKEN_RENEW_AFTER_SECONDS
from keyplane.kit.db import transaction
from keyplane.kit.keys import is_well_formed_api_key
from keyplane.kit.time import utcnow
from keyplane.models import AuthSession
from tests.live import LiveServer, free_port
from tests.users.helpers import Actor


def _login_client(server: LiveServer, actor: Actor) -> Client:
    return Client(server.url, email=actor.email, org=actor.tenant_name, password=actor.password)


def test_key_lifecycle_with_a_logged_in_client(server: LiveServer) -> None:
    with _login_client(server, server.world.alice) as alice:
        created = alice.create_api_key("ci", description="CI pipeline")
        assert is_well_formed_api_key(created.value)
        assert created.value not in repr(created)

        with Client(server.url, api_key=created.value) as by_key:
            assert by_key.whoami().user_uid == server.world.alice.uid

        key = alice.get_api_key(created.uid)
        assert (key.name, key.description, key.is_active) == ("ci", "CI pipeline", True)
        assert key.user_uid == server.world.alice.uid

        expiry = (utcnow() + timedelta(days=10)).replace(microsecond=0)
        edited = alice.update_api_key(created.uid, name="ci-2", expires_at=expiry)
        assert (edited.name, edited.description, edited.expires_at) == (
            "ci-2",
            "CI pipeline",
            expiry,
        )

        alice.revoke_api_key(created.uid)
        with Client(server.url, api_key=created.value, max_retries=0) as by_key:
            with pytest.raises(AuthenticationError) as refused:
                by_key.whoami()
            assert refused.value.code == "ApiKeyRevoked"
            assert refused.value.status_code == 401
            assert created.value not in str(refused.value)
            alice.reactivate_api_key(created.uid)
            assert by_key.whoami().org_name == "acme"
            alice.delete_api_key(created.uid)
            with pytest.raises(AuthenticationError):
                by_key.whoami()
        with pytest.raises(NotFound) as missing:
            alice.get_api_key(created.uid)
        assert missing.value.code == "ApiKeyNotFound"


def test_errors_carry_palette_codes(server: LiveServer) -> None:
    world = server.world
    with _login_client(server, world.alice) as alice:
        alice.create_api_key("one")
        with pytest.raises(Conflict) as taken:
            alice.create_api_key("one")
        assert taken.value.code == "ApiKeyNameTaken"
        with pytest.raises(PermissionDenied):
            alice.create_api_key("for-bob", user_uid=world.bob.uid)
        with pytest.raises(ValidationError) as past:
            alice.create_api_key("past", expires_at=datetime.now(UTC) - timedelta(days=1))
        assert past.value.code == "ApiKeyExpiryInPast"
        assert past.value.ref
        with pytest.raises(ValueError, match="timezone-aware"):
            alice.create_api_key("naive", expires_at=datetime(2030, 1, 1))
        with pytest.raises(PermissionDenied):
            list(alice.list_users())


def test_wrong_password_is_an_authentication_error(server: LiveServer) -> None:
    alice = server.world.alice
    with (
        Client(server.url, email=alice.email, org="acme", password="wrong password!") as client,
        pytest.raises(AuthenticationError) as refused,
    ):
        client.whoami()
    assert refused.value.code == "InvalidCredentials"


def test_listing_iterates_every_page_and_filters(server: LiveServer) -> None:
    world = server.world
    with _login_client(server, world.admin) as admin:
        admin.set_api_key_limit(150)
        assert admin.get_api_key_limit().limit == 150
        created = [
            admin.create_api_key(f"key-{index:03}", user_uid=world.bob.uid) for index in range(105)
        ]
        admin.revoke_api_key(created[0].uid)
        keys = list(admin.list_api_keys(user_uid=world.bob.uid))
        # Newest first, and each with the last 4 characters of its value to tell it apart.
        assert [key.uid for key in keys] == [key.uid for key in reversed(created)]
        assert [key.key_hint for key in keys] == [key.value[-4:] for key in reversed(created)]
        inactive = list(admin.list_api_keys(active=False))
        assert [key.uid for key in inactive] == [created[0].uid]


def test_users_and_audit(server: LiveServer) -> None:
    with _login_client(server, server.world.admin) as admin:
        user = admin.create_user(
            "carol@acme.example", first_name="Carol", role="user", password="a long password!"
        )
        assert (user.email, user.name, user.role, user.is_active) == (
            "carol@acme.example",
            "Carol",
            "user",
            True,
        )
        with Client(server.url, email=user.email, org="acme", password="a long password!") as carol:
            key = carol.create_api_key("carols")
        admin.deactivate_user(user.uid)
        assert admin.get_user(user.uid).is_active is False
        with Client(server.url, api_key=key.value) as by_key, pytest.raises(AuthenticationError):
            by_key.whoami()
        admin.reactivate_user(user.uid)
        assert admin.update_user(user.uid, last_name="Jones").name == "Carol Jones"
        assert "carol@acme.example" in {listed.email for listed in admin.list_users()}

        events = list(admin.list_audit_events(resource_kind="user", resource_uid=user.uid))
        assert {event.action for event in events} >= {
            "user.create",
            "user.deactivate",
            "user.reactivate",
            "user.update",
        }
        admin.delete_user(user.uid)
        with pytest.raises(NotFound):
            admin.get_user(user.uid)


async def test_expired_session_is_renewed_by_logging_in_again(server: LiveServer) -> None:
    alice = server.world.alice
    with _login_client(server, alice) as client:
        client.whoami()
        first = client.session_token
        async with transaction(server.runtime.sessionmaker) as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_uid == alice.uid)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        assert client.whoami().user_uid == alice.uid
        assert client.session_token != first


def test_an_old_token_is_renewed_before_it_expires(server: LiveServer) -> None:
    with _login_client(server, server.world.alice) as client:
        client.whoami()
        first = client.session_token
        client._credentials.token_obtained_at -= TOKEN_RENEW_AFTER_SECONDS + 1
        client.whoami()
        assert client.session_token not in {None, first}
        client.logout()
        assert client.session_token is None


def test_an_unreachable_server_is_a_connection_error() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", api_key="kp_x", max_retries=1) as client,
        pytest.raises(ConnectionFailed, match="Cannot reach Keyplane"),
    ):
        client.whoami()


def test_environment_variables_configure_the_client(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _login_client(server, server.world.alice) as alice:
        created: CreatedApiKey = alice.create_api_key("from-env")
    monkeypatch.setenv("KEYPLANE_URL", server.url)
    monkeypatch.setenv("KEYPLANE_API_KEY", created.value)
    with Client() as client:
        assert client.whoami().user_uid == server.world.alice.uid


async def test_async_client(server: LiveServer) -> None:
    world = server.world
    alice = world.alice
    async with AsyncClient(
        server.url, email=alice.email, org="acme", password=alice.password
    ) as client:
        created = await client.create_api_key("async", description="from asyncio")
        assert (await client.get_api_key(created.uid)).description == "from asyncio"
        assert [key.uid async for key in client.list_api_keys()] == [created.uid]
        await client.revoke_api_key(created.uid)
        async with AsyncClient(server.url, api_key=created.value) as by_key:
            with pytest.raises(AuthenticationError):
                await by_key.whoami()
            await client.reactivate_api_key(created.uid)
            assert (await by_key.whoami()).user_uid == alice.uid
        with pytest.raises(NotFound):
            await client.get_api_key("0" * 24)
        await client.delete_api_key(created.uid)
        assert [key async for key in client.list_api_keys()] == []
