"""The rules of API keys, shared by the REST API, the console and the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.api_keys import repository
from keyplane.api_keys import restrictions as key_rules
from keyplane.api_keys.repository import ApiKeyFilters
from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.keys import generate_api_key, key_hint
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, Role, User
from keyplane.policies import service as key_policy
from keyplane.runtime import Runtime
from keyplane.tenants import service as tenants
from keyplane.users import repository as users


def _not_found() -> NotFound:
    return NotFound("No such API key.", code="ApiKeyNotFound")


def _check_expiry(runtime: Runtime, expires_at: datetime, now: datetime) -> datetime:
    if expires_at <= now:
        raise ValidationFailed(
            "The expiry must be in the future.",
            code="ApiKeyExpiryInPast",
            details={"field": "spec.expiry"},
        )
    latest = now + timedelta(days=runtime.settings.api_key_max_lifetime_days)
    if expires_at > latest:
        raise ValidationFailed(
            f"The expiry may be at most {runtime.settings.api_key_max_lifetime_days} days "
            f"ahead (until {rfc3339(latest)}).",
            code="ApiKeyExpiryTooFar",
            details={"field": "spec.expiry"},
        )
    return expires_at


async def _resolve_owner(session: AsyncSession, principal: Principal, user_uid: str | None) -> User:
    # Palette's Go SDK sends the tenant's uid to mean "the caller".
    if user_uid in (None, "", principal.user_uid, principal.tenant_uid):
        owner_uid = principal.user_uid
    elif not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can create API keys for other users.", code="Forbidden")
    else:
        owner_uid = user_uid
    # Locked so that two concurrent creates for one user cannot both pass the limit.
    owner = await users.get_for_update(session, principal, owner_uid)
    if owner is None:
        raise ValidationFailed(
            "spec.userUid names no user of this tenant.",
            code="UnknownUser",
            details={"field": "spec.userUid"},
        )
    if not owner.is_active:
        raise ValidationFailed(
            "This user is deactivated; re-activate them before creating keys for them.",
            code="UserInactive",
            details={"field": "spec.userUid"},
        )
    return owner


async def create_api_key(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    name: str,
    description: str | None,
    expires_at: datetime | None,
    user_uid: str | None,
    restrictions: Mapping[str, Any] | None = None,
) -> tuple[ApiKey, User, str]:
    """Returns the key, its owner, and the value: the only time the value exists.
    ``restrictions``: the fields of ``api_keys.restrictions.Restrictions`` to set."""
    policy.require_account_access(principal)
    now = utcnow()
    # The tenant's API key policy (policies.service): who may create, the expiry's default
    # and maximum, and the address ranges every key stays within.
    rules = await key_policy.key_policy(session, runtime.settings, principal.tenant_uid)
    key_policy.check_key_creation(rules, principal)
    expiry = _check_expiry(runtime, key_policy.new_key_expiry(rules, expires_at, now), now)
    key_policy.check_expiry(rules, expiry, now)
    owner = await _resolve_owner(session, principal, user_uid)

    limit = await tenants.api_key_limit(session, runtime.settings, principal.tenant_uid)
    if await repository.count_owned_by(session, principal, owner.uid) >= limit:
        raise Conflict(
            f"This user already has {limit} API keys, the tenant's limit: delete one, or ask a "
            "tenant admin to raise the limit.",
            code="ApiKeyLimitReached",
            details={"kind": "apiKey", "limit": limit},
        )
    if await repository.name_taken(session, principal, owner.uid, name):
        raise Conflict(
            "This user already has an API key with this name.",
            code="ApiKeyNameTaken",
            details={"field": "metadata.name"},
        )

    unrestricted = key_rules.Restrictions()
    requested = {name: value for name, value in (restrictions or {}).items() if value is not None}
    resolved = await key_rules.resolve(
        session, principal, Role(owner.role), unrestricted, requested, creating=True
    )
    key_policy.check_ranges(rules, resolved.allowed_cidrs)

    value = generate_api_key()
    key = ApiKey(
        tenant_uid=principal.tenant_uid,
        user_uid=owner.uid,
        created_by_uid=principal.user_uid,
        name=name,
        description=description or "",
        expires_at=expiry,
        is_active=True,
        key_hash=runtime.secret_hasher.hash(value),
        key_hint=key_hint(value),
        created_at=now,
        modified_at=now,
    )
    key_rules.write_to_key(key, resolved, unrestricted, now)
    session.add(key)
    await session.flush()
    audit.record(
        session,
        principal,
        Action.API_KEY_CREATE,
        ResourceKind.API_KEY,
        key.uid,
        key.name,
        message=f"for {owner.email}, expires {rfc3339(expiry)}",
        changes=key_rules.changes(unrestricted, resolved),
    )
    await emit(session, principal, EventType.API_KEY_CREATED, api_key=key, user=owner)
    return key, owner, value


async def list_api_keys(
    session: AsyncSession,
    principal: Principal,
    filters: ApiKeyFilters,
    offset: int,
    limit: int | None,
) -> tuple[Sequence[tuple[ApiKey, User]], int]:
    policy.require_account_access(principal)
    if (
        filters.user_uid is not None
        and filters.user_uid != principal.user_uid
        and not principal.is_tenant_admin
    ):
        raise Forbidden("Only tenant admins can list other users' API keys.")
    return await repository.list_page(session, principal, filters, offset, limit)


async def count_keys_by_owner(
    session: AsyncSession, principal: Principal, user_uids: Sequence[str]
) -> dict[str, int]:
    """How many keys each user owns, counting only keys the caller may see."""
    policy.require_account_access(principal)
    return await repository.count_by_owner(session, principal, user_uids)


async def get_api_key(session: AsyncSession, principal: Principal, uid: str) -> tuple[ApiKey, User]:
    policy.require_account_access(principal)
    found = await repository.get_with_owner(session, principal, uid)
    if found is None:
        raise _not_found()
    return found


async def _get_for_change(
    session: AsyncSession, principal: Principal, uid: str
) -> tuple[ApiKey, User]:
    policy.require_account_access(principal)
    found = await repository.get_with_owner(session, principal, uid, for_update=True)
    if found is None:
        raise _not_found()
    return found


async def update_api_key(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    uid: str,
    *,
    name: str | None,
    description: str | None,
    expires_at: datetime | None,
    restrictions: Mapping[str, Any] | None = None,
) -> ApiKey:
    """Name, description, expiry and restrictions (``restrictions``: the fields of
    ``api_keys.restrictions.Restrictions`` to change, None to remove one); never the
    value, never the owner."""
    key, owner = await _get_for_change(session, principal, uid)
    now = utcnow()
    changed: list[str] = []
    current = key_rules.of_key(key)
    resolved = await key_rules.resolve(
        session, principal, Role(owner.role), current, restrictions or {}, creating=False
    )
    restriction_changes = key_rules.changes(current, resolved)
    # Every check before any change: a caller that shows the error (the console) and
    # commits must not store half an edit.
    new_expiry = (
        _check_expiry(runtime, expires_at, now)
        if expires_at is not None and expires_at != key.expires_at
        else None
    )
    # The tenant's policy binds what this edit changes (a rename of a key that breaks it
    # is not refused: the policy page lists such keys for an admin to act on).
    if new_expiry is not None or resolved.allowed_cidrs != current.allowed_cidrs:
        rules = await key_policy.key_policy(session, runtime.settings, principal.tenant_uid)
        if new_expiry is not None:
            key_policy.check_expiry(rules, new_expiry, now)
        if resolved.allowed_cidrs != current.allowed_cidrs:
            key_policy.check_ranges(rules, resolved.allowed_cidrs)
    if name is not None and name != key.name:
        if await repository.name_taken(session, principal, owner.uid, name, except_uid=key.uid):
            raise Conflict(
                "This user already has an API key with this name.",
                code="ApiKeyNameTaken",
                details={"field": "metadata.name"},
            )
        key.name = name
        changed.append("name")
    if description is not None and description != key.description:
        key.description = description
        changed.append("description")
    if new_expiry is not None:
        key.expires_at = new_expiry
        changed.append("expiry")
    if restriction_changes:
        key_rules.write_to_key(key, resolved, current, now)
        changed.extend(restriction_changes)
    if new_expiry is not None or restriction_changes:
        # Every instance's cached snapshot goes before this answers (kit.invalidation).
        await publish(session, Invalidation.key(key.uid))
    if changed:
        key.modified_at = now
        await session.flush()
        audit.record(
            session,
            principal,
            Action.API_KEY_UPDATE,
            ResourceKind.API_KEY,
            key.uid,
            key.name,
            message="changed " + ", ".join(changed),
            changes=restriction_changes or None,
        )
        await emit(
            session,
            principal,
            EventType.API_KEY_UPDATED,
            api_key=key,
            user=owner,
            extra={"changed": changed},
        )
    return key


def _check_leaked_reactivation(principal: Principal, key: ApiKey, confirm_leaked: bool) -> None:
    """A key reported leaked (``api_keys.leaks``) is public: whoever found it can use it.
    Only a tenant admin may put it back to work, and only saying so explicitly."""
    if key.leaked_at is None:
        return
    when = rfc3339(key.leaked_at)
    if not principal.is_tenant_admin:
        raise Conflict(
            f"This API key was reported leaked at {when}: only a tenant admin can re-activate "
            "it. Rotate it or create a new key instead.",
            code="ApiKeyLeaked",
            details={"leakedAt": when},
        )
    if not confirm_leaked:
        raise Conflict(
            f"This API key was reported leaked at {when}: anyone who saw it can use it. To "
            "re-activate it anyway, repeat the request with confirmLeaked=true.",
            code="ApiKeyLeaked",
            details={"leakedAt": when},
        )


async def set_api_key_active(
    session: AsyncSession,
    principal: Principal,
    uid: str,
    active: bool,
    *,
    reason: str | None = None,
    confirm_leaked: bool = False,
) -> ApiKey:
    """Revoke (False) or re-activate (True). Setting the state a key already has is a no-op,
    except that a tenant admin's confirmed re-activation of an active key that was only
    flagged as leaked clears the flag. ``reason``: why Keyplane itself revokes it
    ("leaked"). A key reported leaked is re-activated only by a tenant admin who confirms
    (``confirm_leaked``); that clears ``leaked_at`` (its sightings stay, as history), so a
    new report of the key acts on it again."""
    key, owner = await _get_for_change(session, principal, uid)
    now = utcnow()
    if active and key.is_expired(now):
        raise Conflict(
            f"This API key expired at {rfc3339(key.expires_at)}: extend its expiry before "
            "re-activating it.",
            code="ApiKeyExpired",
        )
    leaked_at = key.leaked_at
    if active and (not key.is_active or confirm_leaked):
        _check_leaked_reactivation(principal, key, confirm_leaked)
    if key.is_active == active:
        if active and leaked_at is not None:
            # A flagged key that stays in use: the admin has seen the report.
            key.leaked_at = None
            key.modified_at = now
            audit.record(
                session,
                principal,
                Action.API_KEY_REACTIVATE,
                ResourceKind.API_KEY,
                key.uid,
                key.name,
                message=f"kept in use although reported leaked at {rfc3339(leaked_at)} "
                "(confirmed); the leak flag is cleared",
                changes={"leakedAt": {"old": rfc3339(leaked_at), "new": None}},
            )
        return key
    key.is_active = active
    # Why Keyplane revoked it is history once anyone changes its state again.
    key.revoked_reason = None if active else reason
    if active:
        key.leaked_at = None
    key.modified_at = now
    await session.flush()
    await publish(session, Invalidation.key(key.uid))
    message = ""
    if active and leaked_at is not None:
        message = f"re-activated although reported leaked at {rfc3339(leaked_at)} (confirmed)"
    elif reason is not None:
        message = f"revoked by Keyplane: {reason}"
    audit.record(
        session,
        principal,
        Action.API_KEY_REACTIVATE if active else Action.API_KEY_REVOKE,
        ResourceKind.API_KEY,
        key.uid,
        key.name,
        message=message,
        changes=(
            {"leakedAt": {"old": rfc3339(leaked_at), "new": None}}
            if active and leaked_at is not None
            else {"revokedReason": {"old": None, "new": reason}}
            if reason is not None
            else None
        ),
    )
    event = EventType.API_KEY_REACTIVATED if active else EventType.API_KEY_REVOKED
    await emit(session, principal, event, api_key=key, user=owner, reason=reason, occurred_at=now)
    return key


async def revoke_api_key(session: AsyncSession, principal: Principal, uid: str) -> ApiKey:
    return await set_api_key_active(session, principal, uid, False)


async def reactivate_api_key(
    session: AsyncSession, principal: Principal, uid: str, *, confirm_leaked: bool = False
) -> ApiKey:
    return await set_api_key_active(session, principal, uid, True, confirm_leaked=confirm_leaked)


async def delete_api_key(session: AsyncSession, principal: Principal, uid: str) -> None:
    key, owner = await _get_for_change(session, principal, uid)
    await session.delete(key)
    await session.flush()
    await publish(session, Invalidation.key(key.uid))
    audit.record(session, principal, Action.API_KEY_DELETE, ResourceKind.API_KEY, key.uid, key.name)
    await emit(session, principal, EventType.API_KEY_DELETED, api_key=key, user=owner)
