"""``AsyncClient``'s webhook endpoints and deliveries (a mixin, split out to keep modules
small; the requests themselves are built in ``_webhooks``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from keyplane.client import _webhooks as webhook_calls
from keyplane.client._bases import AsyncBase
from keyplane.client.models import WebhookDelivery, WebhookEndpoint


class AsyncWebhooksMixin(AsyncBase):
    """``AsyncClient``'s methods for the tenant's webhook endpoints and their deliveries."""

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
