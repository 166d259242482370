"""A tenant's API key policy: the rules, and how creating, editing and rotating keys
obey them.

- **Lifetimes.** ``maxLifetimeDays`` bounds how far ahead a key's expiry may be set (on
  create, on an edit of the expiry, and a rotation's new key), within the server's
  ``KEYPLANE_API_KEY_MAX_LIFETIME_DAYS``; ``defaultLifetimeDays`` is the expiry of a key
  created without one (capped by the maximum); ``expiryRequired`` refuses such a key.
- **Who creates keys.** ``keyCreation: admins`` refuses creation to anyone but a tenant
  admin. Rotating an existing key is not creation: it replaces a key, and is left to
  whoever may edit it, so that a leaked key can always be rotated.
- **Address ranges.** Every key of the tenant is used from within ``allowedCidrs``: a
  key's own ranges must lie inside them when set or changed, and at authentication the
  address is checked against both the key's ranges and the tenant's
  (``auth.restrictions.address_refused``), so keys made before the policy, and keys
  without ranges of their own, are bound too.
- **Inactivity.** ``inactivityDays``: keys unused (last used, else created) for longer
  are revoked by the sweep (``policies.sweep``).
- **Leaks.** ``leakAction``: what a report of a key's value seen in public does to the
  key (``api_keys.leaks``): ``revoke`` it at once (the default), or only ``flag`` it.

A policy applies to keys created or edited after it changes (an edit is checked on what
it changes: renaming a key that breaks the policy is allowed). Existing keys that break it
are listed (``list_violations``), and each one a change newly puts outside the policy is
announced once (``apiKey.restrictedByPolicy``). Every change is audited with old and new
values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy as roles
from keyplane.auth.principal import Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.cidr import InvalidRange, normalised_ranges, within
from keyplane.kit.errors import Forbidden, NotFound, ValidationFailed
from keyplane.kit.invalidation import Invalidation, InvalidationKind, publish
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, KeyCreation, TenantPolicy
from keyplane.models.tenant_policy import DEFAULT_EXPIRY_NOTICE_DAYS, LeakAction
from keyplane.policies import repository
from keyplane.policies.schemas import (
    ApiKeyPolicyRead,
    ApiKeyPolicyUpdate,
    PolicyViolation,
    PolicyViolations,
    ViolationRule,
)
from keyplane.settings import Settings

# Keys listed as breaking the policy, and announced when a change puts them outside it:
# bounded, so that a policy change in a tenant of millions of keys stays one request.
MAX_VIOLATIONS = 1000
MAX_NOTICE_DAY = 365


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """A tenant's policy with the server's limits it sits within."""

    server_max_lifetime_days: int
    server_default_lifetime_days: int
    max_lifetime_days: int | None = None
    default_lifetime_days: int | None = None
    expiry_required: bool = False
    key_creation: str = KeyCreation.EVERYONE
    allowed_cidrs: tuple[str, ...] | None = None
    inactivity_days: int | None = None
    expiry_notice_days: tuple[int, ...] = DEFAULT_EXPIRY_NOTICE_DAYS
    leak_action: str = LeakAction.REVOKE

    @property
    def effective_max_lifetime_days(self) -> int:
        return min(self.server_max_lifetime_days, self.max_lifetime_days or 10**9)

    @property
    def effective_default_lifetime_days(self) -> int:
        chosen = self.default_lifetime_days or self.server_default_lifetime_days
        return min(chosen, self.effective_max_lifetime_days)

    def as_fields(self) -> dict[str, Any]:
        """The stored fields in API names, for audit records."""
        return {
            "maxLifetimeDays": self.max_lifetime_days,
            "defaultLifetimeDays": self.default_lifetime_days,
            "expiryRequired": self.expiry_required,
            "keyCreation": self.key_creation,
            "allowedCidrs": list(self.allowed_cidrs) if self.allowed_cidrs is not None else None,
            "inactivityDays": self.inactivity_days,
            "expiryNoticeDays": list(self.expiry_notice_days),
            "leakAction": self.leak_action,
        }


def _of_row(settings: Settings, row: TenantPolicy | None) -> KeyPolicy:
    base = KeyPolicy(
        server_max_lifetime_days=settings.api_key_max_lifetime_days,
        server_default_lifetime_days=settings.api_key_default_lifetime_days,
    )
    if row is None:
        return base
    return KeyPolicy(
        server_max_lifetime_days=base.server_max_lifetime_days,
        server_default_lifetime_days=base.server_default_lifetime_days,
        max_lifetime_days=row.max_lifetime_days,
        default_lifetime_days=row.default_lifetime_days,
        expiry_required=row.expiry_required,
        key_creation=row.key_creation,
        allowed_cidrs=tuple(row.allowed_cidrs) if row.allowed_cidrs is not None else None,
        inactivity_days=row.inactivity_days,
        expiry_notice_days=tuple(row.expiry_notice_days or ()),
        leak_action=row.leak_action or LeakAction.REVOKE,
    )


async def key_policy(session: AsyncSession, settings: Settings, tenant_uid: str) -> KeyPolicy:
    """The policy in force for a tenant (the server's limits alone when it has none)."""
    return _of_row(settings, await repository.get(session, tenant_uid))


# --- enforcement, called by api_keys.service and api_keys.rotation ---------------------


def check_key_creation(rules: KeyPolicy, principal: Principal) -> None:
    if rules.key_creation == KeyCreation.ADMINS and not principal.is_tenant_admin:
        raise Forbidden(
            "This tenant's API key policy lets only tenant admins create API keys; ask one "
            "to create the key for you.",
            code="ApiKeyCreationAdminsOnly",
        )


def new_key_expiry(rules: KeyPolicy, expires_at: datetime | None, now: datetime) -> datetime:
    """The expiry a new key asks for, or the policy's default when it names none."""
    if expires_at is not None:
        return expires_at
    if rules.expiry_required:
        raise ValidationFailed(
            "This tenant's API key policy requires an expiry: give spec.expiry.",
            code="ApiKeyExpiryRequired",
            details={"field": "spec.expiry"},
        )
    return now + timedelta(days=rules.effective_default_lifetime_days)


def latest_expiry(rules: KeyPolicy, now: datetime) -> datetime:
    return now + timedelta(days=rules.effective_max_lifetime_days)


def check_expiry(rules: KeyPolicy, expires_at: datetime, now: datetime) -> None:
    """The policy's maximum (the server's is checked by ``api_keys.service``)."""
    if rules.max_lifetime_days is None:
        return
    latest = latest_expiry(rules, now)
    if expires_at > latest:
        raise ValidationFailed(
            f"This tenant's API key policy allows keys of at most {rules.max_lifetime_days} "
            f"days: the expiry may be at most {rfc3339(latest)}.",
            code="ApiKeyExpiryBeyondPolicy",
            details={"field": "spec.expiry", "maxLifetimeDays": rules.max_lifetime_days},
        )


def check_ranges(rules: KeyPolicy, ranges: Sequence[str] | None) -> None:
    """A key's own ranges must lie within the tenant's. A key without ranges is allowed:
    it is bound by the tenant's at authentication."""
    if rules.allowed_cidrs is None or ranges is None:
        return
    if not within(ranges, rules.allowed_cidrs):
        raise ValidationFailed(
            "This tenant's API key policy binds every key to "
            f"{', '.join(rules.allowed_cidrs)}: the key's address ranges must lie within them.",
            code="ApiKeyRangesBeyondPolicy",
            details={"field": "spec.allowedCidrs", "allowedCidrs": list(rules.allowed_cidrs)},
        )


def violations_of(rules: KeyPolicy, key: ApiKey, now: datetime) -> list[ViolationRule]:
    """The rules of the policy a live key breaks."""
    found: list[ViolationRule] = []
    if rules.max_lifetime_days is not None and key.expires_at > latest_expiry(rules, now):
        found.append("maxLifetime")
    if (
        rules.allowed_cidrs is not None
        and key.allowed_cidrs is not None
        and not within(key.allowed_cidrs, rules.allowed_cidrs)
    ):
        found.append("allowedCidrs")
    if rules.inactivity_days is not None and (key.last_used_at or key.created_at) < now - timedelta(
        days=rules.inactivity_days
    ):
        found.append("inactivity")
    return found


_RULE_MESSAGES: dict[str, str] = {
    "maxLifetime": "expires later than the maximum lifetime allows",
    "allowedCidrs": "has address ranges outside the tenant's",
    "inactivity": "unused for longer than the inactivity limit: the next sweep revokes it",
}


# --- the policy itself -------------------------------------------------------------------


def _require_member(principal: Principal, tenant_uid: str) -> None:
    roles.require_account_access(principal)
    # Another tenant's uid reads as unknown, so that no one learns which tenants exist.
    if tenant_uid != principal.tenant_uid:
        raise NotFound("No such tenant.", code="TenantNotFound")


def _require_admin(principal: Principal, tenant_uid: str) -> None:
    _require_member(principal, tenant_uid)
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can manage the API key policy.")


def _read(rules: KeyPolicy, row: TenantPolicy | None) -> ApiKeyPolicyRead:
    fields = rules.as_fields()
    return ApiKeyPolicyRead.model_validate(
        {
            **fields,
            "effectiveMaxLifetimeDays": rules.effective_max_lifetime_days,
            "effectiveDefaultLifetimeDays": rules.effective_default_lifetime_days,
            "serverMaxLifetimeDays": rules.server_max_lifetime_days,
            "modifiedAt": row.modified_at if row is not None else None,
            "modifiedByUid": (row.modified_by_uid or None) if row is not None else None,
        }
    )


async def get_policy(
    session: AsyncSession, settings: Settings, principal: Principal, tenant_uid: str
) -> ApiKeyPolicyRead:
    """Every member of the tenant may read it (a verifier excepted): the rules bind the
    keys they create."""
    _require_member(principal, tenant_uid)
    row = await repository.get(session, tenant_uid)
    return _read(_of_row(settings, row), row)


def _checked(settings: Settings, body: ApiKeyPolicyUpdate) -> KeyPolicy:
    server_max = settings.api_key_max_lifetime_days
    if body.max_lifetime_days is not None and body.max_lifetime_days > server_max:
        raise ValidationFailed(
            f"maxLifetimeDays may be at most {server_max}, the server's maximum.",
            code="PolicyMaxLifetimeTooLong",
            details={"field": "maxLifetimeDays", "serverMaxLifetimeDays": server_max},
        )
    ceiling = body.max_lifetime_days or server_max
    if body.default_lifetime_days is not None and body.default_lifetime_days > ceiling:
        raise ValidationFailed(
            f"defaultLifetimeDays may be at most {ceiling}, the maximum lifetime.",
            code="PolicyDefaultBeyondMax",
            details={"field": "defaultLifetimeDays", "maxLifetimeDays": ceiling},
        )
    ranges: tuple[str, ...] | None = None
    if body.allowed_cidrs is not None:
        if not body.allowed_cidrs:
            raise ValidationFailed(
                "allowedCidrs is empty, which would leave no key usable: give at least one "
                "range, or null for no tenant-wide bound.",
                code="PolicyRangesEmpty",
                details={"field": "allowedCidrs"},
            )
        try:
            ranges = tuple(normalised_ranges(body.allowed_cidrs))
        except InvalidRange as exc:
            raise ValidationFailed(
                f"{exc.text!r} is not an address range: {exc.reason}.",
                code="InvalidAddressRange",
                details={"field": "allowedCidrs", "value": exc.text[:64]},
            ) from None
    days = sorted(set(body.expiry_notice_days), reverse=True)
    if any(day < 1 or day > MAX_NOTICE_DAY for day in days):
        raise ValidationFailed(
            f"Each of expiryNoticeDays must be between 1 and {MAX_NOTICE_DAY}.",
            code="PolicyNoticeDaysOutOfRange",
            details={"field": "expiryNoticeDays"},
        )
    return KeyPolicy(
        server_max_lifetime_days=server_max,
        server_default_lifetime_days=settings.api_key_default_lifetime_days,
        max_lifetime_days=body.max_lifetime_days,
        default_lifetime_days=body.default_lifetime_days,
        expiry_required=body.expiry_required,
        key_creation=body.key_creation,
        allowed_cidrs=ranges,
        inactivity_days=body.inactivity_days,
        expiry_notice_days=tuple(days),
        leak_action=body.leak_action,
    )


async def update_policy(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    tenant_uid: str,
    body: ApiKeyPolicyUpdate,
) -> ApiKeyPolicyRead:
    """Replace the policy (tenant admins only). Audited with old and new values; each key
    the change newly puts outside the policy is announced (``apiKey.restrictedByPolicy``,
    the first ``MAX_VIOLATIONS``)."""
    _require_admin(principal, tenant_uid)
    new = _checked(settings, body)
    row = await repository.get_for_update(session, tenant_uid)
    old = _of_row(settings, row)
    before, after = old.as_fields(), new.as_fields()
    changes = {
        name: {"old": before[name], "new": after[name]}
        for name in after
        if before[name] != after[name]
    }
    if not changes:
        return _read(old, row)
    now = utcnow()
    if row is None:
        row = TenantPolicy(tenant_uid=tenant_uid)
        session.add(row)
    row.max_lifetime_days = new.max_lifetime_days
    row.default_lifetime_days = new.default_lifetime_days
    row.expiry_required = new.expiry_required
    row.key_creation = new.key_creation
    row.allowed_cidrs = list(new.allowed_cidrs) if new.allowed_cidrs is not None else None
    row.inactivity_days = new.inactivity_days
    row.expiry_notice_days = list(new.expiry_notice_days)
    row.leak_action = new.leak_action
    row.modified_at = now
    row.modified_by_uid = principal.user_uid
    await session.flush()
    if "allowedCidrs" in changes:
        # The tenant's ranges travel in every cached key snapshot of the tenant, on every
        # instance. There is no per-tenant invalidation, and one per key would be as many
        # notifications as the tenant has keys (unbounded, in one transaction); a change of
        # ranges is rare, so every instance drops its whole cache instead (``all``), and
        # the change answers only once they all have (kit.invalidation). Snapshots read
        # again afterwards carry the new ranges.
        await publish(session, Invalidation(InvalidationKind.ALL))
    audit.record(
        session,
        principal,
        Action.TENANT_POLICY_UPDATE,
        ResourceKind.TENANT_POLICY,
        tenant_uid,
        principal.tenant_name,
        message="changed " + ", ".join(changes),
        changes=changes,
    )
    await _announce_newly_restricted(session, principal, old, new, now)
    return _read(new, row)


async def _candidates(
    session: AsyncSession, principal: Principal, rules: KeyPolicy, now: datetime, limit: int
) -> Sequence[tuple[ApiKey, Any]]:
    return await repository.violation_candidates(
        session,
        principal,
        now=now,
        expires_after=latest_expiry(rules, now) if rules.max_lifetime_days is not None else None,
        inactive_before=(
            now - timedelta(days=rules.inactivity_days)
            if rules.inactivity_days is not None
            else None
        ),
        with_ranges=rules.allowed_cidrs is not None,
        limit=limit,
    )


async def _announce_newly_restricted(
    session: AsyncSession, principal: Principal, old: KeyPolicy, new: KeyPolicy, now: datetime
) -> None:
    announced = 0
    for key, owner in await _candidates(session, principal, new, now, MAX_VIOLATIONS * 4):
        broken = violations_of(new, key, now)
        newly = [rule for rule in broken if rule not in violations_of(old, key, now)]
        if not newly:
            continue
        await emit(
            session,
            principal,
            EventType.API_KEY_RESTRICTED_BY_POLICY,
            api_key=key,
            user=owner,
            reason="policy",
            extra={"rules": newly},
            occurred_at=now,
        )
        announced += 1
        if announced >= MAX_VIOLATIONS:
            return


async def list_violations(
    session: AsyncSession, settings: Settings, principal: Principal, tenant_uid: str
) -> PolicyViolations:
    """Live keys of the tenant that break its policy, oldest first (tenant admins only;
    at most ``MAX_VIOLATIONS``)."""
    _require_admin(principal, tenant_uid)
    rules = await key_policy(session, settings, tenant_uid)
    now = utcnow()
    items: list[PolicyViolation] = []
    truncated = False
    for key, owner in await _candidates(session, principal, rules, now, MAX_VIOLATIONS * 4):
        broken = violations_of(rules, key, now)
        if not broken:
            continue
        if len(items) >= MAX_VIOLATIONS:
            truncated = True
            break
        items.append(
            PolicyViolation(
                key_uid=key.uid,
                name=key.name,
                owner_uid=owner.uid,
                owner_email=owner.email,
                rules=broken,
                message="; ".join(_RULE_MESSAGES[rule] for rule in broken),
            )
        )
    return PolicyViolations(items=items, truncated=truncated)
