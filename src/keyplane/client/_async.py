"""``AsyncClient``: sessions, sending and API keys here; the tenant administration and
webhook methods come from mixins in ``_async_admin`` and ``_async_webhooks`` (kept small).
"""

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
from keyplane.client._async_admin import AsyncAdminMixin
from keyplane.client._async_webhooks import AsyncWebhooksMixin
from keyplane.client._core import UNCHANGED, Call, Change, Page, Restrictions
from keyplane.client._transport import Credentials
from keyplane.client.errors import AuthenticationError, ConnectionFailed, KeyplaneError
from keyplane.client.models import (
    ApiKey,
    CreatedApiKey,
    Credits,
    KeyVerification,
    RateLimit,
    RotatedApiKey,
    UserInfo,
)

T = TypeVar("T")


class AsyncClient(AsyncAdminMixin, AsyncWebhooksMixin):
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
