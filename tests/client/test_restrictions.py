"""Keys with restrictions, verify's extended answer and the tenant's permissions, through
the SDK against a real running server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyplane.client import (
    UNCHANGED,
    AsyncClient,
    Client,
    Conflict,
    Credits,
    CreditsRefill,
    NotFound,
    PermissionDenied,
    RateLimit,
    ValidationError,
)
from keyplane.client import _core as calls
from tests.live import LiveServer
from tests.users.helpers import Actor


def _login_client(server: LiveServer, actor: Actor) -> Client:
    return Client(server.url, email=actor.email, org=actor.tenant_name, password=actor.password)


def _define(admin: Client, *names: str) -> None:
    for name in names:
        admin.create_permission(name)


def test_a_key_is_created_with_restrictions_and_read_back(server: LiveServer) -> None:
    with _login_client(server, server.world.admin) as admin:
        _define(admin, "invoices.read", "invoices.write", "reports.read")
        admin.create_permission_role("billing", ["invoices.write"])
        created = admin.create_api_key(
            "svc",
            scopes=["apiKeys:read", "verify"],
            permissions=["invoices.read"],
            permission_roles=["billing"],
            allowed_cidrs=["10.0.0.0/8"],
            rate_limits=[
                RateLimit(limit=100, window_seconds=1),
                RateLimit(limit=1000, window_seconds=600, name="burst"),
            ],
            credits=Credits(
                remaining=1000, refill=CreditsRefill(interval="monthly", amount=1000, day=15)
            ),
            owner_id="cus_1",
            meta={"plan": "pro"},
        )
        key = admin.get_api_key(created.uid)
        assert key.restricted
        assert key.scopes == ["apiKeys:read", "verify"]
        assert (key.permissions, key.permission_roles) == (["invoices.read"], ["billing"])
        assert key.allowed_cidrs == ["10.0.0.0/8"]
        assert sorted(key.rate_limits, key=lambda limit: limit.limit) == [
            RateLimit(limit=100, window_seconds=1, name="100/1s"),
            RateLimit(limit=1000, window_seconds=600, name="burst"),
        ]
        assert key.credits is not None
        assert (key.credits.remaining, key.credits.refill) == (
            1000,
            CreditsRefill(interval="monthly", amount=1000, day=15),
        )
        assert key.credits.next_refill_at is not None
        assert (key.owner_id, key.meta) == ("cus_1", {"plan": "pro"})

        plain = admin.get_api_key(admin.create_api_key("plain").uid)
        assert not plain.restricted
        assert (plain.scopes, plain.allowed_cidrs, plain.credits, plain.meta) == (
            None,
            None,
            None,
            None,
        )
        assert (plain.permissions, plain.rate_limits) == ([], [])


def test_update_keeps_what_is_left_out_and_removes_what_is_none(server: LiveServer) -> None:
    with _login_client(server, server.world.admin) as admin:
        _define(admin, "invoices.read")
        uid = admin.create_api_key(
            "svc",
            scopes=["verify"],
            permissions=["invoices.read"],
            allowed_cidrs=["10.0.0.0/8"],
            rate_limits=[RateLimit(limit=5, window_seconds=60)],
            credits=Credits(remaining=10),
            owner_id="cus_1",
            meta={"plan": "pro"},
        ).uid

        # Only the name: every restriction is kept.
        renamed = admin.update_api_key(uid, name="svc-2")
        assert renamed.name == "svc-2"
        assert (renamed.scopes, renamed.allowed_cidrs, renamed.owner_id) == (
            ["verify"],
            ["10.0.0.0/8"],
            "cus_1",
        )
        assert renamed.credits is not None
        assert renamed.credits.remaining == 10

        # None removes; a value replaces; UNCHANGED (the default) keeps.
        changed = admin.update_api_key(
            uid,
            scopes=None,
            allowed_cidrs=None,
            meta=None,
            rate_limits=[RateLimit(limit=1, window_seconds=3600, name="hourly")],
            owner_id=UNCHANGED,
        )
        assert (changed.scopes, changed.allowed_cidrs, changed.meta) == (None, None, None)
        assert changed.rate_limits == [RateLimit(limit=1, window_seconds=3600, name="hourly")]
        assert (changed.owner_id, changed.permissions) == ("cus_1", ["invoices.read"])
        assert changed.credits is not None

        cleared = admin.update_api_key(
            uid, permissions=None, rate_limits=None, credits=None, owner_id=None
        )
        assert not cleared.restricted
        assert (cleared.permissions, cleared.rate_limits, cleared.credits, cleared.owner_id) == (
            [],
            [],
            None,
            None,
        )


def test_update_sends_only_what_changes() -> None:
    body = calls.update_api_key("k", None, None, None, calls.Restrictions(credits=None)).json
    assert body == {"metadata": {}, "spec": {"credits": None}}
    body = calls.update_api_key("k", "n", None, None).json
    assert body == {"metadata": {"name": "n"}, "spec": {}}
    with pytest.raises(TypeError, match="list of names"):
        calls.Restrictions(scopes="verify").to_api()


def test_verify_with_a_query_an_address_and_credits(server: LiveServer) -> None:
    with _login_client(server, server.world.admin) as admin:
        _define(admin, "invoices.read", "invoices.write")
        admin.create_permission_role("billing", ["invoices.write"])
        reader = admin.create_api_key(
            "reader", permissions=["invoices.read"], owner_id="cus_1", meta={"plan": "pro"}
        )
        verdict = admin.verify_api_key(reader.value, permissions="invoices.read")
        assert (verdict.valid, verdict.code) == (True, "VALID")
        assert (verdict.permissions, verdict.owner_id, verdict.meta) == (
            ["invoices.read"],
            "cus_1",
            {"plan": "pro"},
        )
        assert (verdict.remaining, verdict.rate_limit) == (None, None)
        refused = admin.verify_api_key(
            reader.value, permissions="invoices.read AND (invoices.write OR admin)"
        )
        assert (refused.valid, refused.code) == (False, "INSUFFICIENT_PERMISSIONS")
        assert refused.missing_permissions == ["invoices.write"]
        with pytest.raises(ValidationError):
            admin.verify_api_key(reader.value, permissions="invoices.read &&")

        # A role's permissions count as the key's own.
        biller = admin.create_api_key("biller", permission_roles=["billing"])
        both = admin.verify_api_key(biller.value, permissions="invoices.write")
        assert (both.valid, both.permissions) == (True, ["invoices.write"])

        ranged = admin.create_api_key("ranged", allowed_cidrs=["10.0.0.0/8"])
        assert admin.verify_api_key(ranged.value, client_address="10.1.2.3").valid
        for address in ("192.0.2.1", None):
            elsewhere = admin.verify_api_key(ranged.value, client_address=address)
            assert (elsewhere.valid, elsewhere.code) == (False, "FORBIDDEN_ADDRESS")

        metered = admin.create_api_key("metered", credits=Credits(remaining=2))
        assert admin.verify_api_key(metered.value, cost=0).remaining == 2
        first = admin.verify_api_key(metered.value)
        second = admin.verify_api_key(metered.value)
        third = admin.verify_api_key(metered.value)
        assert [(v.valid, v.remaining) for v in (first, second)] == [(True, 1), (True, 0)]
        assert (third.valid, third.code) == (False, "USAGE_EXCEEDED")

        limited = admin.create_api_key(
            "limited", rate_limits=[RateLimit(limit=1, window_seconds=86400, name="daily")]
        )
        allowed = admin.verify_api_key(limited.value)
        assert allowed.rate_limit is not None
        assert (allowed.rate_limit.name, allowed.rate_limit.remaining) == ("daily", 0)
        over = admin.verify_api_key(limited.value)
        assert (over.valid, over.code) == (False, "RATE_LIMITED")
        assert over.rate_limit is not None
        assert over.rate_limit.reset_at > datetime.now(UTC)


def test_a_verify_that_spends_is_not_sent_twice() -> None:
    assert not calls.verify_api_key("kp_x").idempotent
    assert not calls.verify_api_key("kp_x", cost=3).idempotent
    assert calls.verify_api_key("kp_x", cost=0).idempotent
    body = calls.verify_api_key("kp_x", permissions="a OR b", client_address="10.0.0.1").json
    assert body == {"key": "kp_x", "permissions": "a OR b", "clientAddress": "10.0.0.1"}


def test_permissions_and_roles(server: LiveServer) -> None:
    world = server.world
    with _login_client(server, world.admin) as admin:
        read = admin.create_permission("invoices.read", description="Read invoices")
        write = admin.create_permission("invoices.write")
        assert (read.name, read.description, write.description) == (
            "invoices.read",
            "Read invoices",
            "",
        )
        with pytest.raises(Conflict):
            admin.create_permission("invoices.read")
        assert [p.name for p in admin.list_permissions()] == ["invoices.read", "invoices.write"]

        role = admin.create_permission_role(
            "billing", ["invoices.read", "invoices.write"], description="Billing"
        )
        assert (role.name, role.permissions, role.description) == (
            "billing",
            ["invoices.read", "invoices.write"],
            "Billing",
        )
        key = admin.create_api_key("biller", permission_roles=["billing"])

        # What is not given is kept; the key follows its role at once, under its new name.
        renamed = admin.update_permission_role(role.uid, name="accounts")
        assert (renamed.name, renamed.description, renamed.permissions) == (
            "accounts",
            "Billing",
            ["invoices.read", "invoices.write"],
        )
        narrowed = admin.update_permission_role(role.uid, permissions=["invoices.read"])
        assert (narrowed.name, narrowed.permissions) == ("accounts", ["invoices.read"])
        assert admin.get_api_key(key.uid).permission_roles == ["accounts"]
        assert admin.verify_api_key(key.value).permissions == ["invoices.read"]

        admin.delete_permission(read.uid)
        assert admin.get_permission_role(role.uid).permissions == []
        assert [p.name for p in admin.list_permissions()] == ["invoices.write"]
        admin.delete_permission_role(role.uid)
        assert list(admin.list_permission_roles()) == []
        assert admin.get_api_key(key.uid).permission_roles == []
        with pytest.raises(NotFound) as missing:
            admin.get_permission_role(role.uid)
        assert missing.value.code == "PermissionRoleNotFound"
        with pytest.raises(NotFound):
            admin.delete_permission(read.uid)

    with _login_client(server, world.alice) as alice, pytest.raises(PermissionDenied):
        list(alice.list_permissions())


async def test_the_async_client_has_the_same_methods(server: LiveServer) -> None:
    admin = server.world.admin
    async with AsyncClient(
        server.url, email=admin.email, org="acme", password=admin.password
    ) as client:
        await client.create_permission("invoices.read")
        role = await client.create_permission_role("billing", ["invoices.read"])
        assert [r.name async for r in client.list_permission_roles()] == ["billing"]
        assert [p.name async for p in client.list_permissions()] == ["invoices.read"]
        created = await client.create_api_key(
            "metered", permission_roles=["billing"], credits=Credits(remaining=1)
        )
        verdict = await client.verify_api_key(created.value, permissions="invoices.read")
        assert (verdict.valid, verdict.remaining) == (True, 0)
        key = await client.update_api_key(created.uid, credits=None)
        assert (key.credits, key.permission_roles) == (None, ["billing"])
        updated = await client.update_permission_role(role.uid, description="Billing")
        assert (updated.description, updated.permissions) == ("Billing", ["invoices.read"])
        await client.delete_permission_role(role.uid)
        assert [r async for r in client.list_permission_roles()] == []
