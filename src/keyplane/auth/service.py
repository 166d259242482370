"""Logging in, session tokens, and turning a credential into a Principal."""

from __future__ import annotations

import hmac
from datetime import timedelta

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, Outcome, ResourceKind
from keyplane.auth import repository
from keyplane.auth.key_cache import KeySnapshot
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.kit.db import transaction
from keyplane.kit.errors import Unauthorized, ValidationFailed, too_many_failures
from keyplane.kit.keys import (
    generate_session_token,
    is_well_formed_api_key,
    is_well_formed_session_token,
)
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import AuthSession, Role, Tenant, User
from keyplane.runtime import Runtime

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


async def authenticate_api_key(
    session: AsyncSession, runtime: Runtime, value: str, client_address: str
) -> Principal:
    # Checked before hashing or querying: a mistyped or random key costs nothing.
    if not is_well_formed_api_key(value):
        raise Unauthorized(
            "The API key is not valid: check that it was copied whole.", code="ApiKeyInvalid"
        )
    key_hash = runtime.secret_hasher.hash(value)
    snapshot = await _key_snapshot(session, runtime, key_hash)
    # The lookup was by hash; compare once more in constant time before trusting it.
    if snapshot is None or not hmac.compare_digest(snapshot.key_hash, key_hash):
        raise Unauthorized("The API key is not valid.", code="ApiKeyInvalid")
    now = utcnow()
    if not snapshot.key_active:
        raise Unauthorized(
            "This API key has been revoked; re-activate it or use another key.",
            code="ApiKeyRevoked",
        )
    # Against the clock on every request: a cached snapshot never outlives its expiry.
    if snapshot.expires_at <= now:
        raise Unauthorized(
            f"This API key expired at {rfc3339(snapshot.expires_at)}.", code="ApiKeyExpired"
        )
    if not snapshot.user_active:
        raise Unauthorized(
            "The user this API key belongs to is deactivated.", code="ApiKeyUserInactive"
        )
    runtime.last_used.record(snapshot.key_uid, now)
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
    )


async def _key_snapshot(
    session: AsyncSession, runtime: Runtime, key_hash: str
) -> KeySnapshot | None:
    """From the cache when it holds a fresh entry, else from the database (and cached)."""
    cache = runtime.key_cache
    cached = cache.get(key_hash)
    if cached is not None:
        return cached
    if cache.is_known_unknown(key_hash):
        return None
    generation = cache.generation
    snapshot = await repository.find_key_snapshot(session, key_hash)
    if snapshot is None:
        cache.put_unknown(key_hash, generation)
        return None
    cache.put(snapshot, generation)
    return snapshot


async def _valid_session(
    session: AsyncSession, runtime: Runtime, token: str
) -> tuple[AuthSession, User, Tenant]:
    if not is_well_formed_session_token(token):
        raise Unauthorized("The session token is not valid; log in again.", code="TokenInvalid")
    found = await repository.find_session_with_owner(session, runtime.secret_hasher.hash(token))
    if found is None:
        raise Unauthorized("The session token is not valid; log in again.", code="TokenInvalid")
    auth_session, user, tenant = found
    if auth_session.revoked_at is not None:
        raise Unauthorized("This session has been logged out; log in again.", code="TokenRevoked")
    if auth_session.expires_at <= utcnow():
        raise Unauthorized("The session has expired; log in again.", code="TokenExpired")
    if not user.is_active:
        raise Unauthorized("This user is deactivated.", code="UserInactive")
    return auth_session, user, tenant


async def authenticate_session_token(
    session: AsyncSession, runtime: Runtime, token: str, client_address: str
) -> Principal:
    auth_session, user, tenant = await _valid_session(session, runtime, token)
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
    """Check the password outside any transaction (argon2 is slow by design), then record."""
    limiter = runtime.auth_failures
    if limiter.exhausted(client_address):
        raise too_many_failures(limiter.retry_after(client_address))
    email = email.strip().lower()
    async with transaction(runtime.sessionmaker, writes=False) as session:
        candidates = await repository.find_login_candidates(session, email, org)
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
        if user is not None and tenant is not None:
            await audit.record_separately(
                runtime.sessionmaker,
                principal_for(user, tenant, AuthMethod.SESSION, "", client_address),
                Action.LOGIN,
                ResourceKind.USER,
                user.uid,
                user.email,
                outcome=Outcome.FAILURE,
                message="wrong password",
            )
        limiter.record_failure(client_address)
        raise Unauthorized(INVALID_CREDENTIALS, code="InvalidCredentials")
    if not user.is_active:
        raise Unauthorized(
            "This account is deactivated; ask a tenant admin to re-activate it.",
            code="UserInactive",
        )

    token = generate_session_token()
    now = utcnow()
    settings = runtime.settings
    async with transaction(runtime.sessionmaker) as session:
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
        stored_user = await repository.find_user(session, user.uid)
        if stored_user is not None:
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
    limiter = runtime.auth_failures
    try:
        auth_session, _user, _tenant = await _valid_session(session, runtime, token)
    except Unauthorized:
        if not limiter.record_failure(client_address):
            raise too_many_failures(limiter.retry_after(client_address)) from None
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
