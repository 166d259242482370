"""Users of a tenant: only tenant admins manage them; everyone may read themselves.

A change to a person's credentials or standing ends what they were holding: setting a
password, changing the role, deactivating, re-activating or deleting a user revokes every
session of theirs (REST tokens and console cookies alike) in the same transaction. Their
API keys are independent credentials and follow the user instead:

- password set: keys keep working (as GitHub and Stripe do with tokens);
- role changed: keys keep working, with the new role's rights at once (cache invalidated);
- deactivated: keys are refused (ApiKeyUserInactive) and work again on re-activation,
  unless revoked or expired meanwhile; sessions do not come back;
- deleted: keys are deleted with the user.

The one exception is the acting session: an admin who sets their own password or changes
their own role with a session keeps that session, and every other session ends (GitHub's
rule). Deactivating or deleting oneself ends every session, the acting one included.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio.to_thread
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy, throttling
from keyplane.auth import repository as auth_repository
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.events.service import emit
from keyplane.events.types import EventType
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from keyplane.kit.problems import describe_errors, summary
from keyplane.kit.time import utcnow
from keyplane.models import Role, User
from keyplane.runtime import Runtime
from keyplane.users import repository
from keyplane.users.schemas import UserChanges, UserPatchOperation, UserSpecEntity

_ROLE_NAMES = {
    "tenant-admin": Role.TENANT_ADMIN,
    "tenant admin": Role.TENANT_ADMIN,
    "user": Role.USER,
    "tenant user": Role.USER,
    "verifier": Role.VERIFIER,
}


def parse_roles(roles: Sequence[str]) -> Role:
    """Palette gives a list of role names; Keyplane keeps one, the most capable."""
    parsed = set()
    for name in roles:
        role = _ROLE_NAMES.get(name.strip().lower())
        if role is None:
            raise ValidationFailed(
                f"Unknown role {name!r}: use 'tenant-admin', 'user' or 'verifier'.",
                code="InvalidRole",
                details={"field": "spec.roles"},
            )
        parsed.add(role)
    for role in (Role.TENANT_ADMIN, Role.VERIFIER):
        if role in parsed:
            return role
    return Role.USER


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"The password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.",
            code="InvalidPassword",
            details={"field": "spec.password"},
        )


async def _hash_password(runtime: Runtime, password: str) -> str:
    _check_password(password)
    return await anyio.to_thread.run_sync(runtime.password_hasher.hash, password)


def _require_admin(principal: Principal) -> None:
    policy.require_account_access(principal)
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can manage users.")


async def _get_managed_user(session: AsyncSession, principal: Principal, uid: str) -> User:
    """The user, locked for a change. The tenant lock comes first, in every change: two
    admins changing each other then queue up instead of locking each other's rows in
    opposite orders (a deadlock on PostgreSQL)."""
    _require_admin(principal)
    await repository.lock_tenant(session, principal)
    user = await repository.get_for_update(session, principal, uid)
    if user is None:
        raise NotFound("No such user in this tenant.", code="UserNotFound")
    return user


async def get_user(session: AsyncSession, principal: Principal, uid: str) -> User:
    # Decided before the lookup, so a user cannot probe which uids exist.
    policy.require_account_access(principal)
    if uid != principal.user_uid:
        _require_admin(principal)
    user = await repository.get(session, principal, uid)
    if user is None:
        raise NotFound("No such user in this tenant.", code="UserNotFound")
    return user


async def list_users(
    session: AsyncSession, principal: Principal, offset: int, limit: int | None
) -> tuple[Sequence[User], int]:
    _require_admin(principal)
    return await repository.list_page(session, principal, offset, limit)


async def create_user(
    session: AsyncSession, runtime: Runtime, principal: Principal, spec: UserSpecEntity
) -> User:
    _require_admin(principal)
    email = spec.email_id.strip().lower()
    if await repository.find_by_email(session, principal, email) is not None:
        raise Conflict(
            "A user with this email already exists in the tenant.", code="UserAlreadyExists"
        )
    # An explicit empty password is refused by _hash_password, not taken as "no password".
    password = spec.password.get_secret_value() if spec.password is not None else None
    user = User(
        tenant_uid=principal.tenant_uid,
        email=email,
        first_name=spec.first_name,
        last_name=spec.last_name,
        role=parse_roles(spec.roles).value,
        password_hash=await _hash_password(runtime, password) if password is not None else None,
    )
    session.add(user)
    await session.flush()
    audit.record(session, principal, Action.USER_CREATE, ResourceKind.USER, user.uid, user.email)
    await emit(session, principal, EventType.USER_CREATED, user=user)
    return user


def changes_from_patch(operations: Sequence[UserPatchOperation]) -> UserChanges:
    if not operations:
        raise ValidationFailed("The patch has no operations.", code="InvalidRequest")
    for operation in operations:
        # JSON Patch requires a value for add and replace; null would silently change nothing.
        if operation.value is None:
            raise ValidationFailed(
                f"The {operation.op} operation on {operation.path} needs a value.",
                code="InvalidRequest",
                details={"field": operation.path},
            )
    values = {operation.path.rsplit("/", 1)[1]: operation.value for operation in operations}
    try:
        return UserChanges.model_validate(values)
    except ValidationError as exc:
        # Named by the patch path the person wrote (/spec/firstName), not the model's field.
        paths = {operation.path.rsplit("/", 1)[1]: operation.path for operation in operations}
        fields = [
            {**item, "field": paths.get(item["field"].split(".")[0], item["field"])}
            for item in describe_errors(exc.errors())
        ]
        raise ValidationFailed(
            f"The patch is invalid: {summary(fields)}.",
            code="InvalidRequest",
            details={"fields": fields},
        ) from exc


async def _ensure_an_admin_remains(
    session: AsyncSession, principal: Principal, user: User, role: Role, active: bool
) -> None:
    losing_admin = user.role == Role.TENANT_ADMIN.value and user.is_active
    stays_admin = role is Role.TENANT_ADMIN and active
    if losing_admin and not stays_admin:
        admins = await repository.lock_active_admin_uids(session, principal)
        if admins == [user.uid] or not admins:
            raise Conflict(
                "This is the tenant's last active tenant admin; make another user a tenant "
                "admin first.",
                code="LastTenantAdmin",
            )


async def update_user(
    session: AsyncSession, runtime: Runtime, principal: Principal, uid: str, changes: UserChanges
) -> User:
    user = await _get_managed_user(session, principal, uid)
    role = parse_roles(changes.roles) if changes.roles is not None else Role(user.role)
    active = user.is_active if changes.is_active is None else changes.is_active
    await _ensure_an_admin_remains(session, principal, user, role, active)
    previous_role = Role(user.role)
    # Every check before any change: a caller that shows the error (the console) and
    # commits must not store half an edit.
    password_hash = (
        await _hash_password(runtime, changes.password.get_secret_value())
        if changes.password is not None
        else None
    )

    if changes.email_id is not None:
        email = changes.email_id.strip().lower()
        other = await repository.find_by_email(session, principal, email)
        if other is not None and other.uid != user.uid:
            raise Conflict(
                "A user with this email already exists in the tenant.", code="UserAlreadyExists"
            )
        user.email = email
    if changes.first_name is not None:
        user.first_name = changes.first_name
    if changes.last_name is not None:
        user.last_name = changes.last_name
    if password_hash is not None:
        user.password_hash = password_hash
        # The lock protected the old password; whoever set this one may log in with it.
        await auth_repository.clear_login_failures(
            session, throttling.lockout_subject(runtime, user.email)
        )
    user.role = role.value

    action = Action.USER_UPDATE
    state_changed = active != user.is_active
    if state_changed:
        action = Action.USER_REACTIVATE if active else Action.USER_DEACTIVATE
        user.is_active = active
    now = utcnow()
    user.modified_at = now
    events = []
    if password_hash is not None:
        events.append("password set")
    if role is not previous_role:
        events.append(f"role changed from {previous_role.value} to {role.value}")
    if events or state_changed:
        # Re-activation ends sessions too: those made before the deactivation must not
        # come back, including any a deactivation before this rule existed left behind.
        keep = None if state_changed else _acting_session(principal, user)
        ended = await auth_repository.revoke_user_sessions(session, user.uid, now, keep_uid=keep)
        events.append(_sessions_ended(ended, kept=keep is not None))
    await session.flush()
    # Role, state and names all travel with the user's cached keys.
    await publish(session, Invalidation.user(user.uid))
    audit.record(
        session,
        principal,
        action,
        ResourceKind.USER,
        user.uid,
        user.email,
        message="; ".join(events),
    )
    if state_changed and not active:
        await emit(session, principal, EventType.USER_DEACTIVATED, user=user, occurred_at=now)
    return user


def _acting_session(principal: Principal, user: User) -> str | None:
    """The session making a change to its own user, which survives it (see above)."""
    if principal.method is AuthMethod.SESSION and principal.user_uid == user.uid:
        return principal.credential_uid
    return None


def _sessions_ended(count: int, *, kept: bool) -> str:
    noun = "session" if count == 1 else "sessions"
    if kept:
        return f"{count} other {noun} ended; the session making the change was kept"
    return f"all sessions ended ({count} {noun})"


async def delete_user(session: AsyncSession, principal: Principal, uid: str) -> None:
    """Deletes the user; the database cascades to their API keys and sessions."""
    user = await _get_managed_user(session, principal, uid)
    await _ensure_an_admin_remains(session, principal, user, Role.USER, False)
    # The database deletes their sessions with them; ended here first all the same, so
    # that no session outlives its user even if the cascade were ever changed.
    ended = await auth_repository.revoke_user_sessions(session, user.uid, utcnow())
    await session.delete(user)
    await session.flush()
    await publish(session, Invalidation.user(user.uid))
    audit.record(
        session,
        principal,
        Action.USER_DELETE,
        ResourceKind.USER,
        user.uid,
        user.email,
        message="the user's API keys were deleted with them; " + _sessions_ended(ended, kept=False),
    )
    await emit(session, principal, EventType.USER_DELETED, user=user)
