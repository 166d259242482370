"""``Client``: sessions, sending and API keys here; the tenant administration and webhook
methods come from mixins in ``_sync_admin`` and ``_sync_webhooks`` (kept small).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from keyplane.client import _core as calls
from keyplane.client import _transport as sending
from keyplane.client._core import UNCHANGED, Call, Change, Page, Restrictions
from keyplane.client._sync_admin import AdminMixin
from keyplane.client._sync_webhooks import WebhooksMixin
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


class Client(AdminMixin, WebhooksMixin):
    """Keyplane's API from synchronous code.

    ``Client(base_url, api_key=...)`` acts with an API key; ``Client(base_url, email=...,
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = sending.resolve_base_url(base_url)
        self._credentials = Credentials.resolve(api_key, email, org, password, token, token_age)
        self._max_retries = max_retries
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._tenant_uid: str | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def session_token(self) -> str | None:
        return self._credentials.token

    # --- sending ---------------------------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            headers = self._credentials.headers() if call.authenticated else {}
            try:
                response = self._http.request(
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
            time.sleep(delay)
            attempt += 1

    def login(self) -> None:
        """Log in with the email, org and password given (done automatically when needed)."""
        self._credentials.remember(self._send(self._credentials.login_call()))

    def _ensure_session(self) -> None:
        credentials = self._credentials
        if credentials.needs_login():
            self.login()
        elif credentials.should_renew():
            assert credentials.token is not None
            try:
                credentials.remember(self._send(calls.renew(credentials.token)))
            except AuthenticationError:
                if not credentials.can_log_in:
                    raise
                self.login()

    def _execute(self, call: Call[T]) -> T:
        if call.authenticated:
            self._ensure_session()
        try:
            return self._send(call)
        except KeyplaneError as error:
            if not (call.authenticated and self._credentials.can_log_in):
                raise
            if not sending.is_expired_session(error):
                raise
            self.login()
            return self._send(call)

    def _pages(self, fetch: Callable[[int], Call[Page[T]]]) -> Iterator[T]:
        offset = 0
        while True:
            page = self._execute(fetch(offset))
            yield from page.items
            if page.next_offset is None:
                return
            offset = page.next_offset

    def _own_tenant_uid(self) -> str:
        if self._tenant_uid is None:
            self._tenant_uid = self.whoami().tenant_uid
        return self._tenant_uid

    # --- the API ---------------------------------------------------------------------

    def logout(self) -> None:
        """End the session (API keys are revoked instead)."""
        self._execute(calls.logout())
        self._credentials.token = None

    def whoami(self) -> UserInfo:
        return self._execute(calls.whoami())

    def list_api_keys(
        self, user_uid: str | None = None, active: bool | None = None
    ) -> Iterator[ApiKey]:
        """Every key the caller may see (a tenant admin: the tenant's), page by page."""
        return self._pages(lambda offset: calls.list_api_keys_page(user_uid, active, offset))

    def get_api_key(self, uid: str) -> ApiKey:
        return self._execute(calls.get_api_key(uid))

    def create_api_key(
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
        return self._execute(
            calls.create_api_key(name, description, expires_at, user_uid, restrictions)
        )

    def update_api_key(
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
        self._execute(calls.update_api_key(uid, name, description, expires_at, restrictions))
        return self.get_api_key(uid)

    def rotate_api_key(self, uid: str, *, grace_period_seconds: int = 0) -> RotatedApiKey:
        """Replaces the key with a new one (same name, owner, expiry and restrictions)
        and returns its value, once. The old key keeps working for
        ``grace_period_seconds`` (0: stops at once; never past its expiry), then is
        refused with ``ApiKeyRotated``. Never retried: a lost answer would lose the value."""
        return self._execute(calls.rotate_api_key(uid, grace_period_seconds))

    def revoke_api_key(self, uid: str) -> None:
        self._execute(calls.set_api_key_active(uid, False))

    def reactivate_api_key(self, uid: str, *, confirm_leaked: bool = False) -> None:
        """A key reported leaked answers ``ApiKeyLeaked`` (409) unless a tenant admin
        confirms with ``confirm_leaked=True``."""
        self._execute(calls.set_api_key_active(uid, True, confirm_leaked=confirm_leaked))

    def delete_api_key(self, uid: str) -> None:
        self._execute(calls.delete_api_key(uid))

    def verify_api_key(
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
        return self._execute(
            calls.verify_api_key(
                value, permissions=permissions, client_address=client_address, cost=cost
            )
        )
