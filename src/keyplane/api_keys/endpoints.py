from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from keyplane.api_keys import feed, leaks, rotation, service, verification
from keyplane.api_keys.repository import ApiKeyFilters
from keyplane.api_keys.schemas import (
    ApiKeyActiveState,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyLeakRead,
    ApiKeyList,
    ApiKeyRead,
    ApiKeyRotate,
    ApiKeyRotated,
    ApiKeyUpdate,
    api_key_read,
    restriction_changes,
)
from keyplane.api_keys.verification_schemas import (
    ApiKeyVerification,
    ApiKeyVerify,
    verification_response,
)
from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.auth.principal import Principal
from keyplane.auth.scopes import Scope
from keyplane.kit.db import DbSession
from keyplane.kit.invalidation_feed import Subscription
from keyplane.kit.metrics import observe_verification
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.kit.permission_query import PERMISSION_NAME_PATTERN
from keyplane.kit.time import utcnow
from keyplane.runtime import Runtime, RuntimeDep

router = APIRouter(prefix="/v1/apiKeys", tags=["apiKeys"])


@router.get("", response_model=ApiKeyList, operation_id="v1ApiKeysList")
async def list_api_keys(
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    page: Annotated[PageRequest, Depends(page_request)],
    user_uid: Annotated[
        str | None, Query(alias="userUid", max_length=64, description="Only this user's keys.")
    ] = None,
    is_active: Annotated[
        bool | None, Query(alias="isActive", description="Only active (true) or revoked keys.")
    ] = None,
    owner_id: Annotated[
        str | None,
        Query(
            alias="ownerId", min_length=1, max_length=256, description="Only keys of this owner id."
        ),
    ] = None,
    scope: Annotated[Scope | None, Query(description="Only keys that carry this scope.")] = None,
    permission: Annotated[
        str | None,
        Query(
            pattern=PERMISSION_NAME_PATTERN,
            description="Only keys given this permission directly.",
        ),
    ] = None,
) -> ApiKeyList:
    """Every key of the tenant for a tenant admin; one's own keys for anyone else. Newest
    first."""
    settings = runtime.settings
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    rows, total = await service.list_api_keys(
        session,
        principal,
        ApiKeyFilters(
            user_uid=user_uid,
            is_active=is_active,
            owner_id=owner_id,
            scope=scope,
            permission=permission,
        ),
        page.offset,
        limit,
    )
    now = utcnow()
    items = [api_key_read(key, owner, now) for key, owner in rows]
    if limit is None:
        return ApiKeyList(items=items)
    return ApiKeyList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.post("", status_code=201, response_model=ApiKeyCreated, operation_id="v1ApiKeysCreate")
async def create_api_key(
    body: ApiKeyCreate, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> ApiKeyCreated:
    """Create a key. The value is in this response and nowhere else, ever."""
    key, _owner, value = await service.create_api_key(
        session,
        runtime,
        principal,
        name=body.metadata.name,
        description=body.metadata.annotations.description,
        expires_at=body.spec.expiry,
        user_uid=body.spec.user_uid,
        restrictions=restriction_changes(body.spec),
    )
    return ApiKeyCreated(api_key=value, uid=key.uid)


@router.post("/verify", response_model=ApiKeyVerification, operation_id="v1ApiKeysVerify")
async def verify_api_key(
    body: ApiKeyVerify, principal: CurrentPrincipal, runtime: RuntimeDep, request: Request
) -> ApiKeyVerification:
    """For a tenant's own services: is this key valid right now, and whose is it?
    Authorised by a tenant admin's or a verifier's key; keys of other tenants read as
    NOT_FOUND."""
    return verification_response(await verification_of(body, principal, runtime, request))


async def verification_of(
    body: ApiKeyVerify, principal: Principal, runtime: Runtime, request: Request
) -> verification.Verification:
    """The verify route's work before its answer is rendered: the same for FastAPI's route
    and for the verification plane (keyplane.verification_plane), which renders it
    itself."""
    # No request session: the answer comes from the key cache (a miss reads on its own).
    result = await verification.verify_api_key(
        runtime,
        principal,
        body.key,
        permissions=body.permissions,
        client_address=body.client_address,
        cost=body.cost,
    )
    observe_verification(request, result.code.value)
    return result


# A comment line every so often: proxies keep the stream open, and a subscriber can tell a
# quiet feed from a dead one.
HEARTBEAT_SECONDS = 15.0
# How often the subscriber's credential is read again: a feed ends soon after its session
# is logged out or expires, or its key expires (a revoke or delete ends it at once).
CREDENTIAL_CHECK_SECONDS = 5.0


def _sse(event: feed.FeedEvent) -> bytes:
    return f"event: {event.name}\ndata: {json.dumps(event.data)}\n\n".encode()


async def _feed(
    runtime: Runtime, principal: Principal, subscription: Subscription | None, leases: bool
) -> AsyncIterator[bytes]:
    if subscription is None:
        # No "ready": a subscriber must not trust this feed; it asks verify and retries.
        yield _sse(feed.FeedEvent("resync", {}))
        return
    loop = asyncio.get_running_loop()
    # With ``leases``, a ``lease`` event every quarter lease says for how long what this
    # feed has told is complete (see api_key_invalidations).
    lease_every = runtime.lease.heartbeat_seconds if leases else HEARTBEAT_SECONDS
    try:
        ready: dict[str, str | float] = {"leaseSeconds": runtime.lease.seconds} if leases else {}
        yield _sse(feed.FeedEvent("ready", ready))
        # The first lease at once (until it comes, nothing is trusted); a heartbeat later.
        next_tick = loop.time() + (0.0 if leases else HEARTBEAT_SECONDS)
        next_check = loop.time() + CREDENTIAL_CHECK_SECONDS
        while True:
            now = loop.time()
            if now >= next_tick:
                if leases:
                    remaining = round(runtime.lease.remaining(), 3)
                    yield _sse(feed.FeedEvent("lease", {"seconds": remaining}))
                else:
                    yield b": heartbeat\n\n"
                next_tick = now + lease_every
            if now >= next_check:
                if not await feed.feed_credential_in_force(runtime, principal):
                    return
                next_check = now + CREDENTIAL_CHECK_SECONDS
            try:
                item = await asyncio.wait_for(
                    subscription.queue.get(), max(0.0, min(next_tick, next_check) - now)
                )
            except TimeoutError:
                continue
            event = await feed.invalidation_event(runtime, principal, subscription, item)
            if event is not None:
                yield _sse(event)
                if event.last:
                    return
    finally:
        runtime.invalidation_feed.unsubscribe(subscription)


@router.get(
    "/invalidations",
    operation_id="v1ApiKeysInvalidations",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def api_key_invalidations(
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    leases: Annotated[bool, Query(description="Send lease events (see above).")] = False,
) -> Response:
    """For a tenant's own services that cache verify's answers: a stream of server-sent
    events naming the tenant's keys and users that changed. ``ready`` first (subscribed:
    nothing is missed from here on); ``key`` ``{"keyUid"}`` and ``user`` ``{"userUid"}``:
    drop answers about them; ``resync``: drop every answer (when the stream then closes,
    ask verify every time until subscribed again). A comment every 15 s. Each event is
    queued before the change it reports answers; it reaches the subscriber milliseconds
    after. Authorised as verify is; the stream ends soon after its credential stops being
    valid (logged out, expired).

    With ``leases=true``, ``ready`` carries ``{"leaseSeconds"}`` and, instead of the
    comments, a ``lease`` event ``{"seconds": s}`` comes every quarter lease: this feed's
    worker holds its lease for ``s`` more seconds, and a change elsewhere never answers
    before every worker has applied it or its lease has run out. A subscriber that trusts
    its cache only until ``s`` seconds (less a margin for the network) after each lease
    event therefore stops trusting it, when this worker is frozen or cut off, before any
    change it missed has answered."""
    subscription = feed.subscribe_invalidations(runtime, principal)
    return StreamingResponse(
        _feed(runtime, principal, subscription, leases),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/{uid}", response_model=ApiKeyRead, operation_id="v1ApiKeysUidGet")
async def get_api_key(uid: str, principal: CurrentPrincipal, session: DbSession) -> ApiKeyRead:
    """One key, if the caller may see it (404 otherwise); with the newest sightings of its
    value when it was reported leaked (``status.leaks``)."""
    key, owner = await service.get_api_key(session, principal, uid)
    sightings = [
        ApiKeyLeakRead(
            reporter=item.reporter,
            url=item.url,
            source=item.source,
            reported_at=item.reported_at,
        )
        for item in await leaks.latest_sightings(session, principal, key)
    ]
    return api_key_read(key, owner, utcnow(), sightings)


@router.put("/{uid}", status_code=204, operation_id="v1ApiKeysUidUpdate")
async def update_api_key(
    uid: str,
    body: ApiKeyUpdate,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """Change name, description, expiry or restrictions; fields left out keep their
    value, and a restriction set to null is removed."""
    annotations = body.metadata.annotations
    await service.update_api_key(
        session,
        runtime,
        principal,
        uid,
        name=body.metadata.name,
        description=annotations.description if annotations else None,
        expires_at=body.spec.expiry,
        restrictions=restriction_changes(body.spec),
    )
    return Response(status_code=204)


@router.delete("/{uid}", status_code=204, operation_id="v1ApiKeysUidDelete")
async def delete_api_key(uid: str, principal: CurrentPrincipal, session: DbSession) -> Response:
    """Delete a key; it never authenticates again."""
    await service.delete_api_key(session, principal, uid)
    return Response(status_code=204)


# Palette's body stays as it is: the confirmation is Keyplane's own, in the query.
ConfirmLeaked = Annotated[
    bool,
    Query(
        alias="confirmLeaked",
        description="Re-activate a key reported leaked anyway (tenant admins only): without "
        "it, such a key answers 409 ApiKeyLeaked.",
    ),
]


@router.patch("/{uid}", status_code=204, operation_id="v1ApiKeysUidActiveState")
async def patch_api_key_state(
    uid: str,
    body: ApiKeyActiveState,
    principal: CurrentPrincipal,
    session: DbSession,
    confirm_leaked: ConfirmLeaked = False,
) -> Response:
    """Revoke (``isActive: false``) or re-activate (``true``) a key. A key reported leaked
    is re-activated only by a tenant admin, with ``confirmLeaked=true``."""
    await service.set_api_key_active(
        session, principal, uid, body.is_active, confirm_leaked=confirm_leaked
    )
    return Response(status_code=204)


@router.put("/{uid}/state", status_code=204, operation_id="v1ApiKeysUidState")
async def put_api_key_state(
    uid: str,
    body: ApiKeyActiveState,
    principal: CurrentPrincipal,
    session: DbSession,
    confirm_leaked: ConfirmLeaked = False,
) -> Response:
    """Revoke (``isActive: false``) or re-activate (``true``) a key. A key reported leaked
    is re-activated only by a tenant admin, with ``confirmLeaked=true``."""
    await service.set_api_key_active(
        session, principal, uid, body.is_active, confirm_leaked=confirm_leaked
    )
    return Response(status_code=204)


@router.post(
    "/{uid}/rotate",
    status_code=201,
    response_model=ApiKeyRotated,
    operation_id="v1ApiKeysUidRotate",
)
async def rotate_api_key(
    uid: str,
    body: ApiKeyRotate,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> ApiKeyRotated:
    """Replace a key with a new one (same name, description, owner, expiry and
    restrictions), whose value is in this response and nowhere else. The old key keeps
    working for ``gracePeriodSeconds`` (never past its expiry), then answers
    ``ApiKeyRotated``."""
    done = await rotation.rotate_api_key(
        session, runtime, principal, uid, grace_period_seconds=body.grace_period_seconds
    )
    return ApiKeyRotated(
        api_key=done.value,
        uid=done.new.uid,
        rotated_from=done.old.uid,
        grace_ends_at=done.grace_ends_at,
    )
