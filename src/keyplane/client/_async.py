from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from keyplane.client import _core as calls
from keyplane.client import _transport as sending
from keyplane.client import _webhooks as webhook_calls
from keyplane.client._core import (
    UNCHANGED,
    Call,
    Change,
    Page,
    Restrictions,
    Unchanged,
)
from keyplane.client._transport import Credentials
from keyplane.client.errors import AuthenticationError, ConnectionFailed, KeyplaneError, NotFound
from keyplane.client.models import (
    ApiKey,
    ApiKeyPolicy,
    AuditEvent,
    CreatedApiKey,
    Credits,
    KeyVerification,
    Permission,
    PermissionRole,
    RateLimit,
    ResourceLimit,
    RotatedApiKey,
    User,
    UserInfo,
    WebhookDelivery,
    WebhookEndpoint,
)

T = TypeVar("T")


class AsyncClient:
    """Keyplane's API from asynchronous code: ``Client``'s methods, awaited.

    ``AsyncClient(base_url, api_key=...)`` acts with an API key; ``AsyncClient(base_url, email=...,
    org=..., password=...)`` logs in and renews its session token by itself. Without
    arguments, ``KEYPLANE_URL`` and ``KEYPLANE_API_KEY`` are read. ``token=`` resumes a
    session token obtained earlier, ``token_age`` seconds ago, so that it is renewed in time.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        email: str | None = None,
        org: str | None = None,
        password: str | None = None,
        token: str | None = None,
        token_age: float = 0.0,
        timeout: float = calls.DEFAULT_TIMEOUT,
        max_retries: int = calls.DEFAULT_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = sending.resolve_base_url(base_url)
        self._credentials = Credentials.resolve(api_key, email, org, password, token, token_age)
        self._max_retries = max_retries
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self._tenant_uid: str | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def session_token(self) -> str | None:
        return self._credentials.token

    # --- sending ---------------------------------------------------------------------

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            headers = self._credentials.headers() if call.authenticated else {}
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=headers
                )
            except httpx.TransportError as error:
                delay = (
                    sending.retry_delay(call, attempt, self._max_retries, None)
                    if sending.is_safe_to_resend(call, error)
                    else None
                )
                if delay is None:
                    raise ConnectionFailed(
                        f"Cannot reach Keyplane at {self.base_url}: {error!r}"
                    ) from error
            else:
                delay = sending.retry_delay(call, attempt, self._max_retries, response)
                if delay is None:
                    return sending.result(call, response)
            await asyncio.sleep(delay)
            attempt += 1

    async def login(self) -> None:
        """Log in with the email, org and password given (done automatically when needed)."""
        self._credentials.remember(await self._send(self._credentials.login_call()))

    async def _ensure_session(self) -> None:
        credentials = self._credentials
        if credentials.needs_login():
            await self.login()
        elif credentials.should_renew():
            assert credentials.token is not None
            try:
                credentials.remember(await self._send(calls.renew(credentials.token)))
            except AuthenticationError:
                if not credentials.can_log_in:
                    raise
                await self.login()

    async def _execute(self, call: Call[T]) -> T:
        if call.authenticated:
            await self._ensure_session()
        try:
            return await self._send(call)
        except KeyplaneError as error:
            if not (call.authenticated and self._credentials.can_log_in):
                raise
            if not sending.is_expired_session(error):
                raise
            await self.login()
            return await self._send(call)

    async def _pages(self, fetch: Callable[[int], Call[Page[T]]]) -> AsyncIterator[T]:
        offset = 0
        while True:
            page = await self._execute(fetch(offset))
            for item in page.items:
                yield item
            if page.next_offset is None:
                return
            offset = page.next_offset

    async def _own_tenant_uid(self) -> str:
        if self._tenant_uid is None:
            self._tenant_uid = (await self.whoami()).tenant_uid
        return self._tenant_uid

    # --- the API ---------------------------------------------------------------------

    async def logout(self) -> None:
        """End the session (API keys are revoked instead)."""
        await self._execute(calls.logout())
        self._credentials.token = None

    async def whoami(self) -> UserInfo:
        return await self._execute(calls.whoami())

    def list_api_keys(
        self, user_uid: str | None = None, active: bool | None = None
    ) -> AsyncIterator[ApiKey]:
        """Every key the caller may see (a tenant admin: the tenant's), page by page."""
        return self._pages(lambda offset: calls.list_api_keys_page(user_uid, active, offset))

    async def get_api_key(self, uid: str) -> ApiKey:
        return await self._execute(calls.get_api_key(uid))

    async def create_api_key(
        self,
        name: str,
        description: str | None = None,
        expires_at: datetime | None = None,
        user_uid: str | None = None,
        *,
        scopes: Sequence[str] | None = None,
        permissions: Sequence[str] | None = None,
        permission_roles: Sequence[str] | None = None,
        allowed_cidrs: Sequence[str] | None = None,
        rate_limits: Sequence[RateLimit] | None = None,
        credits: Credits | None = None,
        owner_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CreatedApiKey:
        """Create a key; the returned ``value`` is the only copy there will ever be.

        Restrictions (None: none): ``scopes``, the operations of Keyplane's API it may call;
        ``permissions`` and ``permission_roles``, the tenant's own, returned by verify;
        ``allowed_cidrs``, where it may be used from; ``rate_limits``; ``credits``, uses
        that verify spends; ``owner_id`` and ``meta``, returned by verify."""
        restrictions = Restrictions(
            scopes=scopes,
            permissions=permissions,
            permission_roles=permission_roles,
            allowed_cidrs=allowed_cidrs,
            rate_limits=rate_limits,
            credits=credits,
            owner_id=owner_id,
            meta=meta,
        )
        return await self._execute(
            calls.create_api_key(name, description, expires_at, user_uid, restrictions)
        )

    async def update_api_key(
        self,
        uid: str,
        *,
        name: str | None = None,
        description: str | None = None,
        expires_at: datetime | None = None,
        scopes: Change[Sequence[str]] = UNCHANGED,
        permissions: Change[Sequence[str]] = UNCHANGED,
        permission_roles: Change[Sequence[str]] = UNCHANGED,
        allowed_cidrs: Change[Sequence[str]] = UNCHANGED,
        rate_limits: Change[Sequence[RateLimit]] = UNCHANGED,
        credits: Change[Credits] = UNCHANGED,
        owner_id: Change[str] = UNCHANGED,
        meta: Change[Mapping[str, Any]] = UNCHANGED,
    ) -> ApiKey:
        """Change what is given and keep the rest. ``name``, ``description`` and
        ``expires_at``: None keeps. A restriction left out keeps its value; None removes
        it (``credits=None``: unlimited uses again)."""
        restrictions = Restrictions(
            scopes=scopes,
            permissions=permissions,
            permission_roles=permission_roles,
            allowed_cidrs=allowed_cidrs,
            rate_limits=rate_limits,
            credits=credits,
            owner_id=owner_id,
            meta=meta,
        )
        await self._execute(calls.update_api_key(uid, name, description, expires_at, restrictions))
        return await self.get_api_key(uid)

    async def rotate_api_key(self, uid: str, *, grace_period_seconds: int = 0) -> RotatedApiKey:
        """Replaces the key with a new one (same name, owner, expiry and restrictions)
        and returns its value, once. The old key keeps working for
        ``grace_period_seconds`` (0: stops at once; never past its expiry), then is
        refused with ``ApiKeyRotated``. Never retried: a lost answer would lose the value."""
        return await self._execute(calls.rotate_api_key(uid, grace_period_seconds))

    async def revoke_api_key(self, uid: str) -> None:
        await self._execute(calls.set_api_key_active(uid, False))

    async def reactivate_api_key(self, uid: str, *, confirm_leaked: bool = False) -> None:
        """A key reported leaked answers ``ApiKeyLeaked`` (409) unless a tenant admin
        confirms with ``confirm_leaked=True``."""
        await self._execute(calls.set_api_key_active(uid, True, confirm_leaked=confirm_leaked))

    async def delete_api_key(self, uid: str) -> None:
        await self._execute(calls.delete_api_key(uid))

    async def verify_api_key(
        self,
        value: str,
        *,
        permissions: str | None = None,
        client_address: str | None = None,
        cost: int | None = None,
    ) -> KeyVerification:
        """Ask whether a key presented to your service is valid (tenant admin or verifier).

        ``permissions``: a query the key must satisfy, such as ``"invoices.read AND
        (invoices.write OR admin)"`` (else INSUFFICIENT_PERMISSIONS, with
        ``missing_permissions``). ``client_address``: your caller's address, checked
        against the key's address ranges (a key with ranges and no address:
        FORBIDDEN_ADDRESS). ``cost``: credits a valid answer spends from a key with
        credits (default 1; 0 only checks). Each verify also counts against the key's rate
        limits, so it is not retried once it may have reached Keyplane (unless cost is 0)."""
        return await self._execute(
            calls.verify_api_key(
                value, permissions=permissions, client_address=client_address, cost=cost
            )
        )

    async def invalidation_events(
        self, *, read_timeout: float = 40.0, leases: bool = False
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``GET /v1/apiKeys/invalidations`` (tenant admin or verifier), as ``(event, data)``
        pairs until the server closes the stream: ``ready``, ``key`` ``{"keyUid"}``, ``user``
        ``{"userUid"}``, ``resync``, and with ``leases`` a ``lease`` ``{"seconds"}`` every
        quarter lease (for how long the feed's worker vouches for what it has told).
        Heartbeats are not yielded, but a stream silent for ``read_timeout`` seconds (the
        server sends one every 15 s) fails with ``ConnectionFailed``, as does a lost
        connection."""
        call = calls.invalidations(leases)
        await self._ensure_session()
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        try:
            async with self._http.stream(
                call.method,
                call.path,
                params=call.params,
                headers=self._credentials.headers(),
                timeout=timeout,
            ) as response:
                if not response.is_success:
                    await response.aread()
                    sending.result(call, response)
                name, data = "message", list[str]()
                async for line in response.aiter_lines():
                    if not line:
                        if data:
                            yield name, json.loads("\n".join(data))
                        name, data = "message", []
                    elif not line.startswith(":"):
                        field, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if field == "event":
                            name = value
                        elif field == "data":
                            data.append(value)
        except httpx.TransportError as error:
            raise ConnectionFailed(f"Lost Keyplane's invalidation feed: {error!r}") from error

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

    # --- webhooks (tenant admins) -----------------------------------------------------

    async def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        """The tenant's webhook endpoints (at most 20), oldest first."""
        return (await self._execute(webhook_calls.list_endpoints())).items

    async def get_webhook_endpoint(self, uid: str) -> WebhookEndpoint:
        return await self._execute(webhook_calls.get_endpoint(uid))

    async def create_webhook_endpoint(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: str = "",
        enabled: bool = True,
    ) -> WebhookEndpoint:
        """Register an endpoint; ``.secret`` is its signing secret, available this once."""
        return await self._execute(webhook_calls.create_endpoint(url, events, description, enabled))

    async def update_webhook_endpoint(
        self,
        uid: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        """Changes what is given; the rest stays as it is."""
        current = await self.get_webhook_endpoint(uid)
        return await self._execute(
            webhook_calls.replace_endpoint(
                uid,
                current.url if url is None else url,
                current.events if events is None else events,
                current.description if description is None else description,
                current.enabled if enabled is None else enabled,
            )
        )

    async def delete_webhook_endpoint(self, uid: str) -> None:
        await self._execute(webhook_calls.delete_endpoint(uid))

    async def rotate_webhook_secret(self, uid: str) -> WebhookEndpoint:
        """A new signing secret in ``.secret`` (this once); the previous one keeps signing
        alongside it for 24 hours."""
        return await self._execute(webhook_calls.rotate_secret(uid))

    def list_webhook_deliveries(self, endpoint_uid: str) -> AsyncIterator[WebhookDelivery]:
        """The endpoint's deliveries, newest first."""
        return self._pages(lambda offset: webhook_calls.list_deliveries_page(endpoint_uid, offset))

    async def resend_webhook_delivery(self, uid: str) -> WebhookDelivery:
        """A new delivery of the same event (same ``webhook-id``)."""
        return await self._execute(webhook_calls.resend_delivery(uid))
