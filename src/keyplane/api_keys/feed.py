"""``GET /v1/apiKeys/invalidations``: the changes to a tenant's keys and users, for the
services that cache verify's answers."""

from __future__ import annotations

from dataclasses import dataclass

from keyplane.api_keys import repository
from keyplane.auth import policy
from keyplane.auth import service as auth
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, InvalidationKind
from keyplane.kit.invalidation_feed import FeedItem, Subscription
from keyplane.runtime import Runtime
from keyplane.users import repository as users


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One server-sent event: ``key`` (``keyUid``), ``user`` (``userUid``), ``resync``
    (drop every cached answer), ``ready`` or ``lease``. ``last``: the feed closes after
    it."""

    name: str
    data: dict[str, str | float]
    last: bool = False


RESYNC_EVENT = FeedEvent("resync", {})


def subscribe_invalidations(runtime: Runtime, principal: Principal) -> Subscription | None:
    """A feed of the changes to the caller's tenant's keys, authorised as verifying keys
    is. ``None`` while this worker's invalidation channel is down: it could not promise
    to pass on every change."""
    policy.require_key_verifier(principal)
    return runtime.invalidation_feed.subscribe(principal.tenant_uid)


async def feed_credential_in_force(runtime: Runtime, principal: Principal) -> bool:
    """Whether a feed's subscriber may go on listening. When it cannot be told (the
    database is unreachable), no: the feed ends, and its subscriber falls back to verify
    and subscribes again, authorised again."""
    try:
        async with transaction(runtime.sessionmaker, writes=False) as session:
            return await auth.credential_in_force(session, principal)
    except Exception:
        return False


async def _tenant_of(runtime: Runtime, invalidation: Invalidation) -> str | None:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        if invalidation.kind is InvalidationKind.KEY:
            return await repository.tenant_of_key(session, invalidation.uid)
        return await users.tenant_of_user(session, invalidation.uid)


async def invalidation_event(
    runtime: Runtime, principal: Principal, subscription: Subscription, item: FeedItem
) -> FeedEvent | None:
    """What a subscriber is told about one invalidation its worker applied: nothing when
    it concerns another tenant. The invalidation carries only a uid, so the tenant comes
    from this worker's key cache when it holds the key or user (read before the cache
    dropped it), else from one indexed lookup."""
    if subscription.ended:
        # Fell behind, or the worker's channel went down: what follows may have gaps.
        return FeedEvent("resync", {}, last=True)
    invalidation = item.invalidation
    if invalidation is None or invalidation.kind is InvalidationKind.ALL:
        return RESYNC_EVENT
    tenant_uid = item.tenant_uid
    if tenant_uid is None:
        try:
            tenant_uid = await _tenant_of(runtime, invalidation)
        except Exception:
            # Cannot tell whose it is: end the feed (its middleware drops everything and
            # asks verify until it is back) rather than skip a change that may be its own.
            return FeedEvent("resync", {}, last=True)
        if tenant_uid is None:
            # Deleted since: whose it was can no longer be told. An opaque resync to every
            # subscriber says nothing about which tenant changed what, and drops it for sure.
            return RESYNC_EVENT
    if tenant_uid != principal.tenant_uid:
        return None
    if invalidation.kind is InvalidationKind.KEY:
        # A change to the subscriber's own key (revoked?) ends the feed: its next
        # subscription is authorised again.
        own = (
            principal.method is AuthMethod.API_KEY and invalidation.uid == principal.credential_uid
        )
        return FeedEvent("key", {"keyUid": invalidation.uid}, last=own)
    own = invalidation.uid == principal.user_uid
    return FeedEvent("user", {"userUid": invalidation.uid}, last=own)
