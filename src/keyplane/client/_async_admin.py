"""``AsyncClient``'s tenant administration: permissions and permission roles, users,
the API key policy and limit, and the audit log (a mixin, split out to keep modules small).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from keyplane.client import _core as calls
from keyplane.client._bases import AsyncBase
from keyplane.client._core import UNCHANGED, Change, Unchanged
from keyplane.client.errors import NotFound
from keyplane.client.models import (
    ApiKeyPolicy,
    AuditEvent,
    Permission,
    PermissionRole,
    ResourceLimit,
    User,
)


class AsyncAdminMixin(AsyncBase):
    """``AsyncClient``'s methods for the tenant's permissions, roles, users, policy, audit log."""

    # --- the tenant's permissions and permission roles (tenant admins) ---------------

    def list_permissions(self) -> AsyncIterator[Permission]:
        """The tenant's permission names, by name."""
        return self._pages(calls.list_permissions_page)

    async def create_permission(self, name: str, *, description: str | None = None) -> Permission:
        """Define a permission name (``invoices.read``) for keys and roles to carry."""
        return await self._execute(calls.create_permission(name, description))

    async def delete_permission(self, uid: str) -> None:
        """Every role and key of the tenant loses the permission."""
        await self._execute(calls.delete_permission(uid))

    def list_permission_roles(self) -> AsyncIterator[PermissionRole]:
        """The tenant's permission roles, by name."""
        return self._pages(calls.list_permission_roles_page)

    async def get_permission_role(self, uid: str) -> PermissionRole:
        """One role, found in the list (the API has no single-role read)."""
        roles = [role async for role in self.list_permission_roles()]
        for role in roles:
            if role.uid == uid:
                return role
        raise NotFound("No such permission role.", status_code=404, code="PermissionRoleNotFound")

    async def create_permission_role(
        self,
        name: str,
        permissions: Sequence[str] = (),
        *,
        description: str | None = None,
    ) -> PermissionRole:
        """Define a role bundling some of the tenant's permissions."""
        return await self._execute(calls.create_permission_role(name, description, permissions))

    async def update_permission_role(
        self,
        uid: str,
        *,
        name: str | None = None,
        description: str | None = None,
        permissions: Sequence[str] | None = None,
    ) -> PermissionRole:
        """Change what is given (None keeps; ``description=""`` clears it). The API
        replaces a role whole, so the others are read first and sent back as they were.
        Keys holding the role follow it at once, under its new name."""
        current = await self.get_permission_role(uid)
        await self._execute(
            calls.replace_permission_role(
                uid,
                current.name if name is None else name,
                (current.description if description is None else description) or None,
                current.permissions if permissions is None else permissions,
            )
        )
        return await self.get_permission_role(uid)

    async def delete_permission_role(self, uid: str) -> None:
        """Every key of the tenant loses the role."""
        await self._execute(calls.delete_permission_role(uid))

    def list_users(self) -> AsyncIterator[User]:
        return self._pages(calls.list_users_page)

    async def get_user(self, uid: str) -> User:
        return await self._execute(calls.get_user(uid))

    async def create_user(
        self,
        email: str,
        *,
        first_name: str = "",
        last_name: str = "",
        role: str = "user",
        password: str | None = None,
    ) -> User:
        uid = await self._execute(calls.create_user(email, first_name, last_name, role, password))
        return await self.get_user(uid)

    async def update_user(
        self,
        uid: str,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        role: str | None = None,
    ) -> User:
        await self._execute(calls.update_user(uid, email, first_name, last_name, role))
        return await self.get_user(uid)

    async def deactivate_user(self, uid: str) -> None:
        """The user's keys and sessions stop working at once."""
        await self._execute(calls.set_user_active(uid, False))

    async def reactivate_user(self, uid: str) -> None:
        await self._execute(calls.set_user_active(uid, True))

    async def delete_user(self, uid: str) -> None:
        """Deletes the user and every key they own."""
        await self._execute(calls.delete_user(uid))

    async def get_api_key_policy(self) -> ApiKeyPolicy:
        """The caller's tenant's API key policy."""
        return await self._execute(calls.get_api_key_policy(await self._own_tenant_uid()))

    async def update_api_key_policy(
        self,
        policy: ApiKeyPolicy | None = None,
        *,
        max_lifetime_days: Change[int] = UNCHANGED,
        default_lifetime_days: Change[int] = UNCHANGED,
        expiry_required: bool | Unchanged = UNCHANGED,
        key_creation: str | Unchanged = UNCHANGED,
        allowed_cidrs: Change[Sequence[str]] = UNCHANGED,
        inactivity_days: Change[int] = UNCHANGED,
        expiry_notice_days: Sequence[int] | Unchanged = UNCHANGED,
        leak_action: str | Unchanged = UNCHANGED,
    ) -> ApiKeyPolicy:
        """Tenant admins: saves ``policy`` whole, or the current policy with the fields
        given changed (None: the server's lifetime, no ranges, no inactivity limit).
        Returns the policy now in force."""
        tenant_uid = await self._own_tenant_uid()
        if policy is None:
            policy = await self._execute(calls.get_api_key_policy(tenant_uid))
        changes = dict(
            max_lifetime_days=max_lifetime_days,
            default_lifetime_days=default_lifetime_days,
            expiry_required=expiry_required,
            key_creation=key_creation,
            allowed_cidrs=list(allowed_cidrs)
            if isinstance(allowed_cidrs, Sequence) and not isinstance(allowed_cidrs, str)
            else allowed_cidrs,
            inactivity_days=inactivity_days,
            expiry_notice_days=list(expiry_notice_days)
            if isinstance(expiry_notice_days, Sequence)
            else expiry_notice_days,
            leak_action=leak_action,
        )
        return await self._execute(
            calls.update_api_key_policy(tenant_uid, calls.changed_policy(policy, changes))
        )

    async def get_api_key_limit(self) -> ResourceLimit:
        return await self._execute(calls.get_api_key_limit(await self._own_tenant_uid()))

    async def set_api_key_limit(self, limit: int) -> None:
        await self._execute(calls.set_api_key_limit(await self._own_tenant_uid(), limit))

    def list_audit_events(
        self,
        *,
        resource_kind: str | None = None,
        resource_uid: str | None = None,
        user_uid: str | None = None,
        action_type: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> AsyncIterator[AuditEvent]:
        """The tenant's audit log, newest first (tenant admins)."""
        filters: dict[str, Any] = {
            "resourceKind": resource_kind,
            "resourceUid": resource_uid,
            "userUid": user_uid,
            "actionType": action_type,
            "startTime": start,
            "endTime": end,
        }
        return self._pages(lambda offset: calls.list_audit_events_page(filters, offset))
