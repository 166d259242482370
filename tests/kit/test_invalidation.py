"""The NOTIFY payload: invalidations and when they were published, readable by instances
that know the time part and safe for those that do not."""

from __future__ import annotations

from keyplane.kit.invalidation import (
    Invalidation,
    InvalidationKind,
    decode_notification,
    delivery_delay,
    encode_notification,
)


def test_a_payload_carries_its_invalidations_and_when_they_were_published() -> None:
    invalidations = [Invalidation.key("k1"), Invalidation.user("u1")]
    payload = encode_notification(invalidations, 1_764_900_000.25)
    assert decode_notification(payload) == (invalidations, 1_764_900_000.25)


def test_a_payload_without_a_time_or_with_a_malformed_one_still_invalidates() -> None:
    assert decode_notification("key:k1") == ([Invalidation.key("k1")], None)
    assert decode_notification("key:k1;t:soon") == ([Invalidation.key("k1")], None)


def test_an_instance_that_predates_the_time_part_drops_everything_rather_than_miss() -> None:
    payload = encode_notification([Invalidation.key("k1")], 1.0)
    decoded = Invalidation.decode_all(payload)
    assert Invalidation.key("k1") in decoded
    assert any(item.kind is InvalidationKind.ALL for item in decoded)


def test_a_clock_behind_the_publisher_counts_as_no_delay() -> None:
    assert delivery_delay(10.0, 9.5) == 0.0
    assert delivery_delay(10.0, 10.25) == 0.25
    assert delivery_delay(None, 10.0) is None
