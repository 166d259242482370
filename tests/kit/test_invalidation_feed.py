"""The worker's registry of open invalidation feeds: bounded, never blocking the worker."""

from __future__ import annotations

from collections.abc import Iterable

from keyplane.kit import invalidation_feed
from keyplane.kit.invalidation import Invalidation
from keyplane.kit.invalidation_feed import RESYNC, FeedItem, InvalidationFeed


def _feed(applied: list[Invalidation]) -> InvalidationFeed:
    def apply(invalidations: Iterable[Invalidation]) -> None:
        applied.extend(invalidations)

    def tenant_of(invalidation: Invalidation) -> str | None:
        return "acme" if invalidation.uid == "cached" else None

    return InvalidationFeed(apply, tenant_of)


async def test_no_feed_while_the_channel_is_down() -> None:
    feed = _feed([])
    assert feed.subscribe("acme") is None
    feed.set_healthy(True)
    assert feed.subscribe("acme") is not None


async def test_each_feed_gets_what_the_worker_applies_with_the_tenant_it_knows() -> None:
    applied: list[Invalidation] = []
    feed = _feed(applied)
    feed.set_healthy(True)
    first, second = feed.subscribe("acme"), feed.subscribe("globex")
    assert first is not None
    assert second is not None
    changes = [Invalidation.key("cached"), Invalidation.user("elsewhere")]
    feed.deliver(changes)
    assert applied == changes
    for subscription in (first, second):
        assert subscription.queue.get_nowait() == FeedItem(changes[0], "acme")
        assert subscription.queue.get_nowait() == FeedItem(changes[1], None)
    feed.resync()
    assert first.queue.get_nowait() is RESYNC
    feed.unsubscribe(first)
    feed.deliver(changes)
    assert first.queue.empty()
    assert not second.ended


async def test_a_slow_feed_is_ended_not_waited_for() -> None:
    feed = _feed([])
    feed.set_healthy(True)
    subscription = feed.subscribe("acme")
    assert subscription is not None
    for _ in range(invalidation_feed.QUEUE_SIZE + 5):
        feed.deliver([Invalidation.key("k")])
    assert subscription.ended
    assert len(feed) == 0
    assert subscription.queue.qsize() == invalidation_feed.QUEUE_SIZE


async def test_a_lost_channel_ends_every_feed() -> None:
    feed = _feed([])
    feed.set_healthy(True)
    subscription = feed.subscribe("acme")
    assert subscription is not None
    feed.set_healthy(False)
    assert subscription.ended
    assert subscription.queue.get_nowait() is RESYNC
    assert len(feed) == 0
