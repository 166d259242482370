"""This worker's open invalidation feeds (``GET /v1/apiKeys/invalidations``): every
invalidation the worker applies to its key cache is handed to each of them.

Bounded: each feed has its own queue of ``QUEUE_SIZE`` items. A feed that falls that far
behind is ended (it sends ``resync`` and closes, so its middleware stops trusting its
cache); handing an invalidation over never waits, so a slow subscriber cannot hold up the
worker, nor the change that waits for the worker's confirmation.

Ordering: ``deliver`` hands the invalidations to the feeds before the key cache applies
them, and the worker confirms a change only after it has applied it
(``keyplane.kit.invalidation``), so every feed of every worker has the event queued before
the change answers. Writing it to the socket happens on the feed's next turn of the event
loop (after one indexed lookup when this worker cannot tell the tenant from its cache),
and the network adds its own delay: a subscribed middleware drops a key milliseconds
after the change answered, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from keyplane.kit.invalidation import Invalidation

QUEUE_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One invalidation for a feed, with its tenant when this worker knew it at once
    (``None``: unknown, to be looked up). ``invalidation`` ``None``: drop everything."""

    invalidation: Invalidation | None
    tenant_uid: str | None = None


RESYNC = FeedItem(None)


@dataclass(eq=False, slots=True)
class Subscription:
    tenant_uid: str
    queue: asyncio.Queue[FeedItem] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    # Set when the feed must send ``resync`` and close: it fell behind, or the worker's
    # invalidation channel went down (it may miss invalidations from now on).
    ended: bool = False


class InvalidationFeed:
    def __init__(
        self,
        apply: Callable[[Iterable[Invalidation]], None],
        tenant_of: Callable[[Invalidation], str | None],
    ) -> None:
        self._apply = apply
        self._tenant_of = tenant_of
        self._subscriptions: set[Subscription] = set()
        # Whether the worker's invalidation channel is connected: a feed opened while it
        # is not would promise what it cannot keep.
        self.healthy = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, tenant_uid: str) -> Subscription | None:
        if not self.healthy:
            return None
        subscription = Subscription(tenant_uid)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def deliver(self, invalidations: Sequence[Invalidation]) -> None:
        """The worker's delivery: to the feeds first (the tenant is read from the key cache
        while it still holds the entry), then to the key cache."""
        if self._subscriptions:
            items = [FeedItem(item, self._tenant_of(item)) for item in invalidations]
            for subscription in list(self._subscriptions):
                for item in items:
                    self._put(subscription, item)
        self._apply(invalidations)

    def resync(self) -> None:
        """The worker emptied its cache (it registered again): so must every subscriber."""
        for subscription in list(self._subscriptions):
            self._put(subscription, RESYNC)

    def set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        if not healthy:
            for subscription in list(self._subscriptions):
                self._end(subscription)

    def _put(self, subscription: Subscription, item: FeedItem) -> None:
        try:
            subscription.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Nothing was put: the feed still has QUEUE_SIZE items to read, and ends after
            # the next one.
            self._end(subscription)

    def _end(self, subscription: Subscription) -> None:
        subscription.ended = True
        self._subscriptions.discard(subscription)
        # Wakes a feed waiting on an empty queue (a full one wakes by itself).
        with contextlib.suppress(asyncio.QueueFull):
            subscription.queue.put_nowait(RESYNC)
