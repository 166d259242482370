"""``POST /v1/apiKeys/verify``: what a tenant's own service asks about a key its caller
presented, decided from the key cache by the same rules as Keyplane's own API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from keyplane.auth import policy
from keyplane.auth import repository as auth_repository
from keyplane.auth import restrictions as key_restrictions
from keyplane.auth import service as auth
from keyplane.auth.key_cache import KeySnapshot
from keyplane.auth.principal import Principal
from keyplane.kit.db import single_read, single_statement, transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.key_refusals import MALFORMED, NOT_FOUND, KeyRefusal
from keyplane.kit.permission_query import cached_permission_query, missing_permissions
from keyplane.kit.shared_limits import LimitDecision
from keyplane.kit.time import utcnow
from keyplane.runtime import Runtime


class VerificationCode(StrEnum):
    VALID = "VALID"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    ROTATED = "ROTATED"
    NOT_FOUND = "NOT_FOUND"
    USER_INACTIVE = "USER_INACTIVE"
    MALFORMED = "MALFORMED"
    FORBIDDEN_ADDRESS = "FORBIDDEN_ADDRESS"
    INSUFFICIENT_PERMISSIONS = "INSUFFICIENT_PERMISSIONS"
    RATE_LIMITED = "RATE_LIMITED"
    USAGE_EXCEEDED = "USAGE_EXCEEDED"


@dataclass(frozen=True, slots=True)
class Verification:
    code: VerificationCode
    key: KeySnapshot | None = None
    # Only when this answer depends on more than the key (then it is not memoised).
    missing_permissions: tuple[str, ...] = ()
    rate_limit: LimitDecision | None = None
    credits_remaining: int | None = None

    @property
    def valid(self) -> bool:
        return self.code is VerificationCode.VALID

    @property
    def depends_on_the_call(self) -> bool:
        return bool(self.missing_permissions) or (
            self.rate_limit is not None or self.credits_remaining is not None
        )


async def verify_api_key(
    runtime: Runtime,
    principal: Principal,
    value: str,
    *,
    permissions: str | None = None,
    client_address: str | None = None,
    cost: int = 1,
) -> Verification:
    """What a tenant's own service asks about a key its caller presented. Decided by the
    same lookup (the key cache, with its invalidation guarantees) and the same rule as a
    key presented to Keyplane itself (``auth.service.key_verdict``), then the key's
    restrictions in the order of ``auth.restrictions``: the caller's address (``client
    Address``), the ``permissions`` query, the key's rate limits, and its credits, of which
    a valid answer spends ``cost`` (0: check only)."""
    policy.require_key_verifier(principal)
    found = await auth.find_api_key(runtime, value.strip())
    # Scoped here rather than in a query: the snapshot is shared by every tenant's lookups,
    # and a key of another tenant must read exactly like one that does not exist.
    if isinstance(found, KeyRefusal) or found.tenant_uid != principal.tenant_uid:
        unknown = found if found is MALFORMED else NOT_FOUND
        return Verification(VerificationCode(unknown.verify_code))
    now = utcnow()
    refusal = auth.key_verdict(found, now)
    if refusal is not None:
        return Verification(VerificationCode(refusal.verify_code), found)
    if key_restrictions.address_refused(found, client_address):
        return Verification(VerificationCode.FORBIDDEN_ADDRESS, found)
    if permissions is not None:
        query = cached_permission_query(permissions)
        if not query.is_satisfied_by(found.permissions):
            missing = tuple(missing_permissions(query, found.permissions))
            return Verification(VerificationCode.INSUFFICIENT_PERMISSIONS, found, missing)
    decision = await key_restrictions.rate_limit(runtime, found)
    if decision is not None and not decision.allowed:
        return Verification(VerificationCode.RATE_LIMITED, found, rate_limit=decision)
    remaining: int | None = None
    if found.credits_remaining is not None:
        remaining = await _spend_credits(runtime, found, cost, now)
        if remaining is None:
            return Verification(VerificationCode.USAGE_EXCEEDED, found, rate_limit=decision)
    runtime.last_used.record(found.key_uid, now)
    return Verification(
        VerificationCode.VALID, found, rate_limit=decision, credits_remaining=remaining
    )


async def _spend_credits(
    runtime: Runtime, found: KeySnapshot, cost: int, now: datetime
) -> int | None:
    """The uses left after spending ``cost`` (None: not enough). Spent in the database,
    in one atomic statement: credits are someone's money, so every instance counts on
    the same row. A key left with none is announced to every instance, whose API then
    refuses it from its cache too."""
    if cost == 0:
        left_now = await single_read(
            runtime.read_engine,
            lambda connection: auth_repository.credits_left(
                connection, found.key_uid, found.credits_refill, now
            ),
        )
        return left_now if left_now else None
    left = await single_statement(
        runtime.read_engine,
        lambda connection: auth_repository.spend_credits(
            connection, found.key_uid, cost, found.credits_refill, now
        ),
    )
    if left == 0:
        # The API door refuses a key without uses from its cache: every instance must
        # learn of it, so the snapshot goes, and comes back with the count.
        async with transaction(runtime.sessionmaker) as session:
            await publish(session, Invalidation.key(found.key_uid))
    return left
