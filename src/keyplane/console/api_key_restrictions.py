"""The Restrictions section as the API key pages show it: its part of the forms' context,
the key table's badge and the key page. What the forms post is read by
``api_key_restriction_forms``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.api_keys.restrictions import Restrictions, of_key
from keyplane.auth.principal import Principal
from keyplane.auth.scopes import ROLE_SCOPES, SCOPES
from keyplane.console.api_key_restriction_forms import FIELDS, RestrictionInputs
from keyplane.kit.credits import next_refill_at, refill_due
from keyplane.kit.shared_limits import RateLimit
from keyplane.kit.validation import MAX_DOCUMENT_BYTES
from keyplane.models import ApiKey, Role
from keyplane.permissions import service as permissions
from keyplane.runtime import Runtime

PERMISSIONS_URL = "/tenant/settings/permissions"
WINDOWS = {1: "per second", 60: "per minute", 3600: "per hour", 86400: "per day"}

# --- the form -------------------------------------------------------------------------


def _holders(scope: str) -> str:
    """Who may have a scope a plain user's key may not (the form chooses the owner)."""
    if scope in ROLE_SCOPES[Role.USER]:
        return ""
    if scope in ROLE_SCOPES[Role.VERIFIER]:
        return "Only for keys of tenant admins and verifiers."
    return "Only for keys of tenant admins."


async def form_context(
    session: AsyncSession,
    principal: Principal,
    inputs: RestrictionInputs,
    errors: dict[str, str],
    *,
    owner_role: Role | None,
    current: Restrictions | None = None,
) -> dict[str, Any]:
    """The section's part of the form's context. ``owner_role``: the key's owner's role
    when known (only the scopes it holds are offered), None when the form chooses the
    owner (every scope, each with who may have it)."""
    offered = [
        scope
        for scope in SCOPES
        if owner_role is None or scope in ROLE_SCOPES[owner_role] or scope in inputs.scopes
    ]
    admin = principal.is_tenant_admin
    defined: list[tuple[str, str]] = []
    roles: list[tuple[str, str]] = []
    if admin:
        found, _count = await permissions.list_permissions(session, principal)
        defined = [(item.name, item.description) for item in found]
        found_roles, _count = await permissions.list_roles(session, principal)
        roles = [(item.name, item.description) for item in found_roles]
        # A name deleted while the form was open stays shown, to be unchecked.
        defined += [(name, "") for name in inputs.permissions if name not in dict(defined)]
        roles += [(name, "") for name in inputs.permission_roles if name not in dict(roles)]
    windows = dict(WINDOWS)
    for row in inputs.rate_limits:
        if row.window.isdigit() and int(row.window) not in windows:
            windows[int(row.window)] = f"per {row.window} seconds"
    return {
        "restrictions": inputs,
        "restrictions_open": bool(errors.keys() & set(FIELDS.values())),
        "restrictions_summary": summary(current) if current is not None else None,
        "scope_choices": [
            (scope, SCOPES[scope], _holders(scope) if owner_role is None else "")
            for scope in offered
        ],
        "admin_fields": admin,
        "permission_choices": defined,
        "role_choices": roles,
        "windows": sorted(windows.items()),
        "permissions_url": PERMISSIONS_URL,
        "max_meta_bytes": MAX_DOCUMENT_BYTES,
    }


# --- the key table and the key page ---------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def window_label(seconds: int) -> str:
    return WINDOWS.get(seconds, f"per {seconds} seconds")


def rate_limit_label(limit: RateLimit) -> str:
    return f"{limit.limit} {window_label(limit.window_seconds)}"


def summary(restrictions: Restrictions) -> str | None:
    """One line saying how a key is restricted, or None when it is not."""
    if not restrictions.restricted:
        return None
    parts = []
    if restrictions.scopes is not None:
        parts.append(_count(len(restrictions.scopes), "scope"))
    if restrictions.permissions:
        parts.append(_count(len(restrictions.permissions), "permission"))
    if restrictions.permission_roles:
        parts.append(_count(len(restrictions.permission_roles), "permission role"))
    if restrictions.allowed_cidrs is not None:
        parts.append(_count(len(restrictions.allowed_cidrs), "address range"))
    if restrictions.rate_limits:
        limits = ", ".join(rate_limit_label(limit) for limit in restrictions.rate_limits)
        parts.append(f"rate limited to {limits}")
    if restrictions.credits is not None:
        parts.append(f"{restrictions.credits.remaining} credits left")
    return "; ".join(parts)


def key_summary(key: ApiKey) -> str | None:
    return summary(of_key(key))


async def detail_context(runtime: Runtime, key: ApiKey, now: datetime) -> dict[str, Any]:
    restrictions = of_key(key)
    credits = restrictions.credits
    refill = credits.refill if credits else None
    return {
        "restrictions": restrictions,
        "scope_descriptions": SCOPES,
        "rate_limits": [
            (limit.name, rate_limit_label(limit)) for limit in restrictions.rate_limits
        ],
        "next_refill_at": next_refill_at(refill, now) if refill else None,
        # Refills are applied by the next use: until then the stored count is the old one.
        "refill_due": refill is not None and refill_due(refill, key.credits_refilled_at, now),
        "meta_json": (
            json.dumps(restrictions.meta, indent=2, ensure_ascii=False, sort_keys=True)
            if restrictions.meta is not None
            else None
        ),
        "refusals": await runtime.limiter.recent_refusals(key.uid),
    }
