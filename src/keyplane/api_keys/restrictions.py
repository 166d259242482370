"""What makes a key narrower than its owner, and the rules for giving a key restrictions.

A key may carry:

- **scopes** on Keyplane's own API (``auth.scopes``): none means all its owner may do;
- **permissions** and **permission roles** of its tenant, for the tenant's own services
  (``POST /v1/apiKeys/verify`` answers with them and checks a permission query);
- **address ranges** it may be used from (``kit.cidr``): none means anywhere;
- **rate limits**, enforced per key across every instance (``kit.shared_limits``);
- **credits**, remaining uses that verify spends, optionally refilled (``kit.credits``);
- an **owner id** and a small JSON document (**meta**) that verify returns.

The rules, checked on create and on every edit, before anything is stored:

- a scope must be in the catalogue and held by the owner's role (``ROLE_SCOPES``);
- a key never makes a key broader than itself: a key with scopes (or address ranges)
  that creates or edits a key can only give it scopes it carries (ranges within its own),
  and a key it creates without naming any gets its own;
- what the tenant's own services rely on is the tenant's to decide: only a tenant admin
  sets or changes a key's permissions and permission roles (names the tenant has defined,
  ``permissions.service``), rate limits, credits, owner id and meta. A user could
  otherwise lift the limits a tenant sold them, or claim another customer's owner id.
  Scopes and address ranges only narrow what the owner may do: the owner sets those.

Every change of a key's restrictions is audited with its old and new values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import AuthMethod, Principal
from keyplane.auth.scopes import ROLE_SCOPES, UnknownScope, normalised_scopes
from keyplane.kit.cidr import InvalidRange, normalised_ranges, within
from keyplane.kit.credits import Refill
from keyplane.kit.errors import Forbidden, ValidationFailed
from keyplane.kit.shared_limits import RateLimit
from keyplane.models import ApiKey, Role


@dataclass(frozen=True, slots=True)
class Credits:
    remaining: int
    refill: Refill | None = None


@dataclass(frozen=True, slots=True)
class Restrictions:
    scopes: tuple[str, ...] | None = None
    permissions: tuple[str, ...] = ()
    permission_roles: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    credits: Credits | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None

    @property
    def restricted(self) -> bool:
        """Whether the key can do less than its owner anywhere (owner id and meta are
        labels, not restrictions)."""
        return (
            self.scopes is not None
            or bool(self.permissions or self.permission_roles)
            or self.allowed_cidrs is not None
            or bool(self.rate_limits)
            or self.credits is not None
        )


FIELDS = tuple(item.name for item in fields(Restrictions))
TENANT_DECIDES = ("permissions", "permission_roles", "rate_limits", "credits", "owner_id", "meta")
# Where each field lives in request bodies, for error details.
_FIELD_PATHS = {
    "scopes": "spec.scopes",
    "permissions": "spec.permissions",
    "permission_roles": "spec.permissionRoles",
    "allowed_cidrs": "spec.allowedCidrs",
    "rate_limits": "spec.rateLimits",
    "credits": "spec.credits",
    "owner_id": "spec.ownerId",
    "meta": "spec.meta",
}


def of_key(key: ApiKey) -> Restrictions:
    remaining = key.credits_remaining
    return Restrictions(
        scopes=tuple(key.scopes) if key.scopes is not None else None,
        permissions=tuple(key.permissions or ()),
        permission_roles=tuple(key.permission_roles or ()),
        allowed_cidrs=tuple(key.allowed_cidrs) if key.allowed_cidrs is not None else None,
        rate_limits=tuple(rate_limits_from_json(key.rate_limits)),
        credits=(
            Credits(remaining, Refill.from_json(key.credits_refill))
            if remaining is not None
            else None
        ),
        owner_id=key.owner_id,
        meta=key.meta,
    )


def write_to_key(
    key: ApiKey, restrictions: Restrictions, previous: Restrictions, now: datetime
) -> None:
    key.scopes = list(restrictions.scopes) if restrictions.scopes is not None else None
    key.permissions = list(restrictions.permissions)
    key.permission_roles = list(restrictions.permission_roles)
    key.allowed_cidrs = (
        list(restrictions.allowed_cidrs) if restrictions.allowed_cidrs is not None else None
    )
    key.rate_limits = [rate_limit_json(limit) for limit in restrictions.rate_limits]
    credits = restrictions.credits
    if credits is None:
        key.credits_remaining = None
        key.credits_refill = None
        key.credits_refilled_at = None
    elif credits != previous.credits:
        key.credits_remaining = credits.remaining
        key.credits_refill = credits.refill.as_json() if credits.refill else None
        # Counted from now: a refill is owed at the next refill time, not at once.
        key.credits_refilled_at = now
    key.owner_id = restrictions.owner_id
    key.meta = restrictions.meta


def rate_limit_json(limit: RateLimit) -> dict[str, Any]:
    return {"name": limit.name, "limit": limit.limit, "windowSeconds": limit.window_seconds}


def rate_limits_from_json(values: Sequence[Mapping[str, Any]] | None) -> list[RateLimit]:
    return [
        RateLimit(str(value["name"]), int(value["limit"]), int(value["windowSeconds"]))
        for value in values or ()
    ]


def default_rate_limit_name(limit: int, window_seconds: int) -> str:
    return f"{limit}/{window_seconds}s"


def _audit_value(name: str, value: Any) -> Any:
    if name == "rate_limits":
        return [rate_limit_json(limit) for limit in value]
    if name == "credits":
        if value is None:
            return None
        refill = value.refill.as_json() if value.refill else None
        return {"remaining": value.remaining, "refill": refill}
    if isinstance(value, tuple):
        return list(value)
    return value


def changes(old: Restrictions, new: Restrictions) -> dict[str, dict[str, Any]]:
    """``{"field": {"old", "new"}}`` for every field that differs, in API field names."""
    found: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            label = _FIELD_PATHS[name].removeprefix("spec.")
            found[label] = {"old": _audit_value(name, before), "new": _audit_value(name, after)}
    return found


def _invalid(name: str, message: str, code: str, **details: Any) -> ValidationFailed:
    return ValidationFailed(message, code=code, details={"field": _FIELD_PATHS[name], **details})


async def resolve(
    session: AsyncSession,
    principal: Principal,
    owner_role: Role,
    current: Restrictions,
    requested: Mapping[str, Any],
    *,
    creating: bool,
) -> Restrictions:
    """The restrictions a key will have: ``current`` with the ``requested`` fields
    replaced (a field name of ``Restrictions`` to its new value, None to remove), checked
    against the rules in the module docstring. Raises before anything is changed."""
    values: dict[str, Any] = {}
    for name, value in requested.items():
        if name not in FIELDS:
            raise ValueError(f"not a restriction: {name}")
        values[name] = value
    if "scopes" in values and values["scopes"] is not None:
        try:
            values["scopes"] = tuple(normalised_scopes(values["scopes"]))
        except UnknownScope as exc:
            raise _invalid(
                "scopes", f"{exc.args[0]!r} is not a scope.", "UnknownScope", scope=exc.args[0]
            ) from None
    if "allowed_cidrs" in values and values["allowed_cidrs"] is not None:
        try:
            values["allowed_cidrs"] = tuple(normalised_ranges(values["allowed_cidrs"]))
        except InvalidRange as exc:
            raise _invalid(
                "allowed_cidrs",
                f"{exc.text!r} is not an address range: {exc.reason}.",
                "InvalidAddressRange",
                value=exc.text[:64],
            ) from None
    for name in ("permissions", "permission_roles"):
        if name in values:
            values[name] = tuple(sorted(set(values[name] or ())))
    if "rate_limits" in values:
        values["rate_limits"] = _checked_rate_limits(values["rate_limits"] or ())
    if creating and principal.method is AuthMethod.API_KEY:
        # A key's key is never broader than the key: what it does not name, it inherits.
        if values.get("scopes") is None and principal.scopes is not None:
            values["scopes"] = tuple(sorted(principal.scopes))
        if values.get("allowed_cidrs") is None:
            values["allowed_cidrs"] = principal.allowed_cidrs
    result = replace(current, **values)
    await _check(session, principal, owner_role, current, result, creating=creating)
    return result


def _checked_rate_limits(limits: Sequence[RateLimit]) -> tuple[RateLimit, ...]:
    seen: set[tuple[str, int]] = set()
    for limit in limits:
        if (limit.name, limit.window_seconds) in seen:
            raise _invalid(
                "rate_limits",
                f"Two rate limits are named {limit.name!r} over {limit.window_seconds} s; give "
                "each a name of its own.",
                "DuplicateRateLimit",
            )
        seen.add((limit.name, limit.window_seconds))
    return tuple(limits)


async def _check(
    session: AsyncSession,
    principal: Principal,
    owner_role: Role,
    current: Restrictions,
    result: Restrictions,
    *,
    creating: bool,
) -> None:
    from keyplane.permissions import service as permissions

    if result.scopes is not None:
        lacking = sorted(set(result.scopes) - ROLE_SCOPES[owner_role])
        if lacking:
            raise _invalid(
                "scopes",
                f"The key's owner ({owner_role.value}) does not hold the scope "
                f"{', '.join(lacking)}: a key can never do more than its owner.",
                "ScopeNotHeld",
                scopes=lacking,
            )
    if principal.method is AuthMethod.API_KEY:
        # Only what this change sets: renaming a broader key is not widening it.
        if (
            principal.scopes is not None
            and (creating or result.scopes != current.scopes)
            and (result.scopes is None or not set(result.scopes) <= principal.scopes)
        ):
            raise Forbidden(
                "This API key has scopes, and cannot give a key scopes it does not carry "
                "itself (or none, which means all).",
                code="ApiKeyScopeEscalation",
            )
        ranges = principal.allowed_cidrs
        if (
            ranges is not None
            and (creating or result.allowed_cidrs != current.allowed_cidrs)
            and (result.allowed_cidrs is None or not within(result.allowed_cidrs, ranges))
        ):
            raise Forbidden(
                "This API key is limited to address ranges, and cannot give a key ranges "
                "outside its own (or none, which means anywhere).",
                code="ApiKeyRangeEscalation",
            )
    changed = [name for name in TENANT_DECIDES if getattr(result, name) != getattr(current, name)]
    if changed and not principal.is_tenant_admin:
        fields = ", ".join(_FIELD_PATHS[name] for name in changed)
        raise Forbidden(
            f"Only tenant admins set a key's {fields}: what the tenant's own services rely "
            "on is the tenant's to decide.",
            code="TenantAdminOnly",
            details={"fields": [_FIELD_PATHS[name] for name in changed]},
        )
    if result.permissions != current.permissions:
        await permissions.check_permission_names(session, principal, result.permissions)
    if result.permission_roles != current.permission_roles:
        await permissions.check_role_names(session, principal, result.permission_roles)
