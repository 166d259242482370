"""Rotating a key: a new value for the same key, with a grace period for the old one.

``rotate_api_key`` creates a new key with the old one's name, description, owner, expiry
and every restriction (``api_keys.restrictions``), and returns its value, once. The old
key keeps working until the grace period ends (0: at once), never past its own expiry;
from then on it is refused with ``ApiKeyRotated`` (verify: ``ROTATED``), its own code,
so that a caller knows to pick up the new value. The two keys name each other
(``rotated_to_uid``, ``rotated_from_uid``).

Decisions:

- **Names.** Names are unique per user, and the new key is the one people keep using, so
  it takes the name; the old key is renamed ``<name> (rotated <date>)`` (cut to fit, and
  numbered if that is taken too).
- **The per-user key limit** is not checked: a rotation replaces a key, and the old one
  only lingers until its grace period ends (then it never works again, and it can be
  deleted).
- **Who.** Whoever may edit the key (its owner, a tenant admin). A key that rotates a key
  gets the new value, so it may only rotate keys no broader than itself (scopes and
  address ranges), as it may only create such keys.
- **The tenant's policy.** Rotation is not creation (``keyCreation: admins`` does not stop
  an owner rotating a leaked key); the new key's expiry is capped by the policy's maximum
  lifetime, and its address ranges must lie within the tenant's, as on create.
- **Credits.** The new key starts with the old one's remaining uses (and refill); uses of
  the old key during the grace period spend the old key's own.
- Refused with 409: a revoked key (``ApiKeyRevoked``), an expired one (``ApiKeyExpired``),
  one already rotated, even within its grace period (``ApiKeyAlreadyRotated``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.api_keys import repository
from keyplane.api_keys import restrictions as key_rules
from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.cidr import within
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.keys import generate_api_key, key_hint
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, User
from keyplane.policies import service as key_policy
from keyplane.runtime import Runtime

NAME_LENGTH = cast(String, ApiKey.__table__.c.name.type).length or 128


@dataclass(frozen=True, slots=True)
class Rotation:
    old: ApiKey
    new: ApiKey
    owner: User
    # The new key's value: the only time it exists.
    value: str

    @property
    def grace_ends_at(self) -> datetime:
        assert self.old.rotation_grace_ends_at is not None
        return self.old.rotation_grace_ends_at


def _check_grace(runtime: Runtime, grace_period_seconds: int) -> timedelta:
    most = runtime.settings.rotation_max_grace_seconds
    if grace_period_seconds < 0 or grace_period_seconds > most:
        raise ValidationFailed(
            f"gracePeriodSeconds must be between 0 (the old key stops at once) and {most} "
            f"({most // 3600} hours).",
            code="RotationGraceOutOfRange",
            details={"field": "gracePeriodSeconds", "max": most},
        )
    return timedelta(seconds=grace_period_seconds)


def _check_rotatable(key: ApiKey, owner: User, now: datetime) -> None:
    if not key.is_active:
        raise Conflict(
            "This API key is revoked: re-activate it before rotating it, or create a new key.",
            code="ApiKeyRevoked",
        )
    if key.rotated_to_uid is not None:
        ends = key.rotation_grace_ends_at
        raise Conflict(
            f"This API key was already rotated (to {key.rotated_to_uid}"
            + (f"; it stops working at {rfc3339(ends)}" if ends is not None else "")
            + "): rotate the new key instead.",
            code="ApiKeyAlreadyRotated",
            details={"rotatedTo": key.rotated_to_uid},
        )
    if key.is_expired(now):
        raise Conflict(
            f"This API key expired at {rfc3339(key.expires_at)}: extend its expiry before "
            "rotating it, or create a new key.",
            code="ApiKeyExpired",
        )
    if not owner.is_active:
        raise Conflict(
            "This key's owner is deactivated; re-activate them before rotating their keys.",
            code="UserInactive",
        )


def _check_not_broader(principal: Principal, restrictions: key_rules.Restrictions) -> None:
    """A key that rotates a key receives its new value: never one broader than itself."""
    if principal.method is not AuthMethod.API_KEY:
        return
    scopes = principal.scopes
    if scopes is not None and (
        restrictions.scopes is None or not set(restrictions.scopes) <= scopes
    ):
        raise Forbidden(
            "This API key has scopes, and cannot rotate (and so obtain) a key with scopes "
            "it does not carry itself (or none, which means all).",
            code="ApiKeyScopeEscalation",
        )
    ranges = principal.allowed_cidrs
    if ranges is not None and (
        restrictions.allowed_cidrs is None or not within(restrictions.allowed_cidrs, ranges)
    ):
        raise Forbidden(
            "This API key is limited to address ranges, and cannot rotate (and so obtain) a "
            "key with ranges outside its own (or none, which means anywhere).",
            code="ApiKeyRangeEscalation",
        )


async def _retired_name(
    session: AsyncSession, principal: Principal, key: ApiKey, now: datetime
) -> str:
    """``<name> (rotated <date>)``, cut to the column's size; numbered when taken."""
    for number in range(1, 100):
        suffix = f" (rotated {now.date().isoformat()}" + (f" #{number})" if number > 1 else ")")
        candidate = key.name[: NAME_LENGTH - len(suffix)].rstrip() + suffix
        if not await repository.name_taken(
            session, principal, key.user_uid, candidate, except_uid=key.uid
        ):
            return candidate
    suffix = f" (rotated {key.uid})"
    return key.name[: NAME_LENGTH - len(suffix)].rstrip() + suffix


async def rotate_api_key(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    uid: str,
    *,
    grace_period_seconds: int,
) -> Rotation:
    policy.require_account_access(principal)
    grace = _check_grace(runtime, grace_period_seconds)
    # Locked: two rotations of one key at once must not both succeed.
    found = await repository.get_with_owner(session, principal, uid, for_update=True)
    if found is None:
        raise NotFound("No such API key.", code="ApiKeyNotFound")
    old, owner = found
    now = utcnow()
    _check_rotatable(old, owner, now)
    restrictions = key_rules.of_key(old)
    _check_not_broader(principal, restrictions)
    rules = await key_policy.key_policy(session, runtime.settings, principal.tenant_uid)
    key_policy.check_ranges(rules, restrictions.allowed_cidrs)
    # The same expiry, unless the tenant's policy now allows less.
    expiry = min(old.expires_at, key_policy.latest_expiry(rules, now))

    name = old.name
    old.name = await _retired_name(session, principal, old, now)
    old.rotation_grace_ends_at = min(now + grace, old.expires_at)
    old.modified_at = now
    # The rename is written first: the new key takes the name, unique per user.
    await session.flush()

    value = generate_api_key()
    new = ApiKey(
        tenant_uid=old.tenant_uid,
        user_uid=old.user_uid,
        created_by_uid=principal.user_uid,
        name=name,
        description=old.description,
        expires_at=expiry,
        is_active=True,
        key_hash=runtime.secret_hasher.hash(value),
        key_hint=key_hint(value),
        created_at=now,
        modified_at=now,
        rotated_from_uid=old.uid,
    )
    key_rules.write_to_key(new, restrictions, replace(restrictions, credits=None), now)
    if old.credits_refilled_at is not None:
        # The refill schedule carries on where the old key's was.
        new.credits_refilled_at = old.credits_refilled_at
    session.add(new)
    await session.flush()
    old.rotated_to_uid = new.uid
    await session.flush()
    # The old key's cached snapshots go on every instance before this answers: they must
    # learn when it stops working.
    await publish(session, Invalidation.key(old.uid))
    grace_ends_at = old.rotation_grace_ends_at
    audit.record(
        session,
        principal,
        Action.API_KEY_ROTATE,
        ResourceKind.API_KEY,
        old.uid,
        name,
        message=f"rotated to {new.uid}; the old key works until {rfc3339(grace_ends_at)}",
        changes={
            "rotatedTo": {"old": None, "new": new.uid},
            "rotationGraceEndsAt": {"old": None, "new": rfc3339(grace_ends_at)},
            "name": {"old": name, "new": old.name},
        },
    )
    await emit(
        session,
        principal,
        EventType.API_KEY_ROTATED,
        api_key=old,
        user=owner,
        extra={
            "newApiKey": {"uid": new.uid, "name": new.name, "hint": new.key_hint},
            "graceEndsAt": rfc3339(grace_ends_at),
        },
        occurred_at=now,
    )
    return Rotation(old=old, new=new, owner=owner, value=value)
