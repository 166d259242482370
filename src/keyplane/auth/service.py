"""Logging in, session tokens, and turning a credential into a Principal."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import repository, restrictions, throttling
from keyplane.auth.key_cache import KeySnapshot
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.auth.throttling import Claimed, CredentialRefused
from keyplane.kit.db import single_read, transaction
from keyplane.kit.errors import RateLimited, Unauthorized, ValidationFailed
from keyplane.kit.key_refusals import (
    EXPIRED,
    MALFORMED,
    NOT_FOUND,
    REVOKED,
    ROTATED,
    USER_INACTIVE,
    KeyRefusal,
    expired_message,
)
from keyplane.kit.keys import (
    generate_session_token,
    is_well_formed_api_key,
    is_well_formed_session_token,
)
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKeyState, AuthSession, Role, Tenant, User
from keyplane.runtime import Runtime

logger = logging.getLogger("keyplane.auth")

INVALID_CREDENTIALS = "The email, organization or password is not right."


def principal_for(
    user: User, tenant: Tenant, method: AuthMethod, credential_uid: str, client_address: str
) -> Principal:
    return Principal(
        tenant_uid=tenant.uid,
        tenant_name=tenant.name,
        user_uid=user.uid,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        role=Role(user.role),
        method=method,
        credential_uid=credential_uid,
        client_address=client_address,
    )


def key_verdict(snapshot: KeySnapshot, now: datetime) -> KeyRefusal | None:
    """The one rule that turns what is known of a key into a verdict: None when it may be
    used now, else why not. Every door (an ApiKey header, ``POST /v1/apiKeys/verify``)
    decides through here, in this order: a revoked key says so even once it has expired."""
    if not snapshot.key_active:
        return REVOKED
    # Rotated away: a code of its own, so the caller knows to pick up the new value.
    grace_ends_at = snapshot.rotation_grace_ends_at
    if grace_ends_at is not None and grace_ends_at <= now:
        return ROTATED
    # Against the clock on every request: a cached snapshot never outlives its expiry.
    if snapshot.expires_at <= now:
        return EXPIRED
    if not snapshot.user_active:
        return USER_INACTIVE
    return None


async def find_api_key(runtime: Runtime, value: str) -> KeySnapshot | KeyRefusal:
    """The key a value names, or MALFORMED / NOT_FOUND. Most calls end in the cache without
    touching the database; a miss reads it in one statement of its own."""
    # Checked before hashing or querying: a mistyped or random key costs nothing.
    if not is_well_formed_api_key(value):
        return MALFORMED
    key_hash = runtime.secret_hasher.hash(value)
    snapshot = await _key_snapshot(runtime, key_hash)
    # The lookup was by hash; compare once more in constant time before trusting it.
    if snapshot is None or not hmac.compare_digest(snapshot.key_hash, key_hash):
        return NOT_FOUND
    return snapshot


async def authenticate_api_key(
    runtime: Runtime, value: str, client_address: str, operation_id: str | None = None
) -> Principal:
    """The key's principal for a request to ``operation_id`` (the route's OpenAPI
    operation id: what a key's scopes are about; None outside a route, where a key with
    scopes is refused). 401 for a key that is no good; 403 or 429 for a good key used
    beyond its restrictions (``auth.restrictions``)."""
    found = await find_api_key(runtime, value)
    if isinstance(found, KeyRefusal):
        raise Unauthorized(found.message, code=found.api_code)
    now = utcnow()
    refusal = key_verdict(found, now)
    if refusal is not None:
        message = (
            expired_message(rfc3339(found.expires_at)) if refusal is EXPIRED else refusal.message
        )
        raise CredentialRefused(
            message,
            code=refusal.api_code,
            claimed=Claimed(_key_principal(found, client_address), f"API key {found.key_uid}"),
        )
    refused = await restrictions.api_refusal(runtime, found, client_address, operation_id, now)
    if refused is not None:
        raise refused
    runtime.last_used.record(found.key_uid, now)
    return _key_principal(found, client_address)


# Principals kept per snapshot: a key is mostly used from a handful of addresses.
_PRINCIPALS_PER_SNAPSHOT = 8


def _key_principal(snapshot: KeySnapshot, client_address: str) -> Principal:
    principal = snapshot.principals.get(client_address)
    if principal is None:
        principal = _new_key_principal(snapshot, client_address)
        if len(snapshot.principals) < _PRINCIPALS_PER_SNAPSHOT:
            snapshot.principals[client_address] = principal
    return principal


def _new_key_principal(snapshot: KeySnapshot, client_address: str) -> Principal:
    return Principal(
        tenant_uid=snapshot.tenant_uid,
        tenant_name=snapshot.tenant_name,
        user_uid=snapshot.user_uid,
        email=snapshot.email,
        first_name=snapshot.first_name,
        last_name=snapshot.last_name,
        role=Role(snapshot.role),
        method=AuthMethod.API_KEY,
        credential_uid=snapshot.key_uid,
        client_address=client_address,
        scopes=snapshot.scopes,
        allowed_cidrs=snapshot.allowed_cidrs,
    )


async def _key_snapshot(runtime: Runtime, key_hash: str) -> KeySnapshot | None:
    """From the cache when it holds a fresh entry, else from the database (and cached).
    An entry near its max age is still served, and read again in the background."""
    cache = runtime.key_cache
    cached, refresh_due = cache.lookup(key_hash)
    if cached is not None:
        if refresh_due:
            _refresh_in_background(runtime, key_hash)
        return cached
    if cache.is_known_unknown(key_hash):
        return None
    return await _read_key_snapshot(runtime, key_hash)


async def _read_key_snapshot(runtime: Runtime, key_hash: str) -> KeySnapshot | None:
    cache = runtime.key_cache
    # Taken before the read: an invalidation that lands while it runs bumps the generation,
    # and the cache then refuses what this read saw.
    generation = cache.generation
    snapshot = await single_read(
        runtime.read_engine,
        lambda connection: repository.find_key_snapshot(connection, key_hash),
    )
    if snapshot is None:
        cache.discard(key_hash)
        cache.put_unknown(key_hash, generation)
        return None
    cache.put(snapshot, generation)
    return snapshot


# Refreshes in flight, held so that they are not collected before they finish.
_refreshes: set[asyncio.Task[None]] = set()


def _refresh_in_background(runtime: Runtime, key_hash: str) -> None:
    """One refresh per key at a time, and a few at most: past that the entry is simply
    served until its max age, and then read by the request that finds it gone."""
    cache = runtime.key_cache
    if not cache.claim_refresh(key_hash):
        return

    async def refresh() -> None:
        try:
            await _read_key_snapshot(runtime, key_hash)
        except Exception as exc:
            # The entry still ends at its max age; a request then reads (and reports) it.
            logger.info("key snapshot refresh failed: %s", type(exc).__name__)
        finally:
            cache.release_refresh(key_hash)

    task = asyncio.get_running_loop().create_task(refresh())
    _refreshes.add(task)
    task.add_done_callback(_refreshes.discard)


async def _valid_session(
    session: AsyncSession, runtime: Runtime, token: str, client_address: str
) -> tuple[AuthSession, User, Tenant]:
    if not is_well_formed_session_token(token):
        raise Unauthorized("The session token is not valid; log in again.", code="TokenInvalid")
    found = await repository.find_session_with_owner(session, runtime.secret_hasher.hash(token))
    if found is None:
        raise Unauthorized("The session token is not valid; log in again.", code="TokenInvalid")
    auth_session, user, tenant = found
    refusal: tuple[str, str] | None = None
    # Read from the database on every request (sessions are never cached), so a revocation
    # is in force on every instance as soon as it commits. The user's state is reported
    # first: deactivating a user also revokes their sessions, and "deactivated" says more.
    if not user.is_active:
        refusal = ("This user is deactivated.", "UserInactive")
    elif auth_session.revoked_at is not None:
        refusal = (
            "This session has ended: it was logged out, or the user's password, role or "
            "status changed. Log in again.",
            "TokenRevoked",
        )
    elif auth_session.expires_at <= utcnow():
        refusal = ("The session has expired; log in again.", "TokenExpired")
    if refusal is not None:
        message, code = refusal
        principal = principal_for(
            user, tenant, AuthMethod.SESSION, auth_session.uid, client_address
        )
        raise CredentialRefused(
            message, code=code, claimed=Claimed(principal, f"session {auth_session.uid}")
        )
    return auth_session, user, tenant


async def authenticate_session_token(
    session: AsyncSession, runtime: Runtime, token: str, client_address: str
) -> Principal:
    auth_session, user, tenant = await _valid_session(session, runtime, token, client_address)
    return principal_for(user, tenant, AuthMethod.SESSION, auth_session.uid, client_address)


async def login(
    runtime: Runtime,
    email: str,
    org: str | None,
    password: str,
    client_address: str,
    *,
    ttl_seconds: int | None = None,
) -> str:
    """Check the password outside any transaction (argon2 is slow by design), then record.

    Refused before any password check: a client address over its failure limit (even with
    the right password, or guessing could go on at full speed), and a locked email."""
    failures = throttling.FailureCounts(runtime, client_address)
    email = email.strip().lower()
    if await failures.exhausted():

        async def accounts() -> list[Claimed]:
            async with transaction(runtime.sessionmaker, writes=False) as session:
                found = await repository.find_login_candidates(session, email, org)
            return _login_accounts(found, client_address)

        raise await throttling.refuse_over_limit(runtime, client_address, "password", accounts)
    subject = throttling.lockout_subject(runtime, email)
    async with transaction(runtime.sessionmaker, writes=False) as session:
        candidates = await repository.find_login_candidates(session, email, org)
        lockout = await repository.find_login_lockout(session, subject)
    try:
        throttling.check_not_locked(lockout, utcnow())
    except RateLimited:
        # Refused all the same: it spends the address's failure budget like a wrong password.
        await failures.record()
        raise
    if len(candidates) > 1:
        # Without an org, only the password tells the accounts apart; and only someone who
        # has it learns that the email is in several organizations.
        matching = [
            candidate
            for candidate in candidates
            if await anyio.to_thread.run_sync(
                runtime.password_hasher.verify, candidate[0].password_hash, password
            )
        ]
        if len(matching) > 1:
            raise ValidationFailed(
                "This email belongs to several organizations: give the org to log in to.",
                code="OrgRequired",
            )
        user, tenant = matching[0] if matching else (None, None)
        password_ok = bool(matching)
    else:
        user, tenant = candidates[0] if candidates else (None, None)
        password_ok = await anyio.to_thread.run_sync(
            runtime.password_hasher.verify, user.password_hash if user else None, password
        )
    if user is None or tenant is None or not password_ok:
        await failures.record()
        locked = await throttling.record_wrong_password(
            runtime,
            subject,
            _login_accounts(candidates, client_address),
            # With several accounts for the email and none matching, it is not known which
            # one was meant.
            audit_attempt=len(candidates) == 1,
        )
        raise locked or Unauthorized(INVALID_CREDENTIALS, code="InvalidCredentials")
    if not user.is_active:
        raise Unauthorized(
            "This account is deactivated; ask a tenant admin to re-activate it.",
            code="UserInactive",
        )

    token = generate_session_token()
    now = utcnow()
    settings = runtime.settings
    async with transaction(runtime.sessionmaker) as session:
        # The password was checked outside this transaction. Locked and compared again here:
        # a password change, deactivation or deletion that committed meanwhile ended every
        # session of the user, and must not be followed by one made with the old standing.
        # (It locks the user row first, as every user change does, so the two serialise.)
        stored_user = await repository.lock_user(session, user.uid)
        if (
            stored_user is None
            or not stored_user.is_active
            or stored_user.password_hash != user.password_hash
        ):
            raise Unauthorized(INVALID_CREDENTIALS, code="InvalidCredentials")
        auth_session = AuthSession(
            tenant_uid=tenant.uid,
            user_uid=user.uid,
            token_hash=runtime.secret_hasher.hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds or settings.session_ttl_seconds),
            max_expires_at=now
            + timedelta(seconds=max(ttl_seconds or 0, settings.session_max_lifetime_seconds)),
        )
        session.add(auth_session)
        await repository.clear_login_failures(session, subject)
        stored_user.last_sign_in_at = now
        if user.password_hash and runtime.password_hasher.needs_rehash(user.password_hash):
            stored_user.password_hash = await anyio.to_thread.run_sync(
                runtime.password_hasher.hash, password
            )
        await session.flush()
        audit.record(
            session,
            principal_for(user, tenant, AuthMethod.SESSION, auth_session.uid, client_address),
            Action.LOGIN,
            ResourceKind.USER,
            user.uid,
            user.email,
        )
    return token


async def renew_session_token(
    session: AsyncSession, runtime: Runtime, token: str, client_address: str
) -> str:
    """A new token for the same login; the old one stops working at once."""
    try:
        auth_session, _user, _tenant = await _valid_session(session, runtime, token, client_address)
    except Unauthorized as exc:
        await refuse_if_over_limit(session, runtime, client_address, "session token", exc)
        raise
    now = utcnow()
    if now >= auth_session.max_expires_at:
        raise Unauthorized(
            "This login has reached its maximum lifetime; log in again.", code="TokenExpired"
        )
    new_token = generate_session_token()
    auth_session.token_hash = runtime.secret_hasher.hash(new_token)
    auth_session.expires_at = min(
        now + timedelta(seconds=runtime.settings.session_ttl_seconds),
        auth_session.max_expires_at,
    )
    await session.flush()
    return new_token


def _login_accounts(
    candidates: Sequence[tuple[User, Tenant]], client_address: str
) -> list[Claimed]:
    return [
        Claimed(principal_for(user, tenant, AuthMethod.SESSION, "", client_address), "password")
        for user, tenant in candidates
    ]


async def refuse_if_over_limit(
    session: AsyncSession | None,
    runtime: Runtime,
    client_address: str,
    kind: str,
    error: Unauthorized,
) -> None:
    """Takes a failure token for a refused key or token; raises 429 instead of the 401
    once the client has none left."""
    if await throttling.FailureCounts(runtime, client_address).record():
        return

    async def claimed() -> Sequence[Claimed]:
        found = throttling.claimed_by(error)
        if found and session is not None:
            # The request's transaction holds SQLite's write lock (and will roll back):
            # end it, so that the audit record can be written in a transaction of its own.
            await session.rollback()
        return found

    raise await throttling.refuse_over_limit(runtime, client_address, kind, claimed) from None


async def credential_in_force(session: AsyncSession, principal: Principal) -> bool:
    """Whether the session or key a principal authenticated with would still be accepted
    (for long-lived requests, which authenticate once): not logged out, revoked, expired,
    rotated away or deleted, and its user active."""
    now = utcnow()
    if principal.method is AuthMethod.SESSION:
        auth_session = await repository.find_session(session, principal.credential_uid)
        return (
            auth_session is not None
            and auth_session.revoked_at is None
            and auth_session.expires_at > now
        )
    if principal.method is AuthMethod.API_KEY:
        found = await repository.find_key_with_owner(session, principal.credential_uid)
        if found is None:
            return False
        key, owner = found
        return key.state(now) is ApiKeyState.ACTIVE and owner.is_active
    return True


async def logout(session: AsyncSession, principal: Principal) -> None:
    if principal.method is not AuthMethod.SESSION:
        raise ValidationFailed(
            "Logging out ends a session token; an API key is revoked instead.",
            code="NotASession",
        )
    auth_session = await repository.find_session(session, principal.credential_uid)
    if auth_session is not None and auth_session.revoked_at is None:
        auth_session.revoked_at = utcnow()
        audit.record(
            session,
            principal,
            Action.LOGOUT,
            ResourceKind.USER,
            principal.user_uid,
            principal.email,
        )
        await session.flush()
