"""The key cache's own rules, on a controllable clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from keyplane.auth.key_cache import MAX_REFRESHES, KeyCache, KeySnapshot
from keyplane.kit.invalidation import Invalidation, InvalidationKind


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snapshot(number: int, user_uid: str = "user-1") -> KeySnapshot:
    return KeySnapshot(
        key_uid=f"key-{number}",
        key_hash=f"hash-{number}",
        tenant_uid="tenant-1",
        tenant_name="acme",
        user_uid=user_uid,
        email="alice@acme.example",
        first_name="Alice",
        last_name="Liddell",
        role="user",
        user_active=True,
        key_active=True,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def enabled_cache(clock: FakeClock, **options: float) -> KeyCache:
    values: dict[str, float] = {
        "max_entries": 3,
        "max_age_seconds": 5.0,
        "max_negative_entries": 4,
        "negative_ttl_seconds": 2.0,
    }
    values.update(options)
    cache = KeyCache(
        max_entries=int(values["max_entries"]),
        max_age_seconds=values["max_age_seconds"],
        max_negative_entries=int(values["max_negative_entries"]),
        negative_ttl_seconds=values["negative_ttl_seconds"],
        clock=clock,
    )
    cache.set_enabled(True)
    return cache


def test_a_stored_snapshot_is_returned_until_its_max_age() -> None:
    clock = FakeClock()
    cache = enabled_cache(clock)
    cache.put(snapshot(1), cache.generation)
    assert cache.get("hash-1") == snapshot(1)
    clock.now += 4.9
    assert cache.get("hash-1") == snapshot(1)
    clock.now += 0.2
    assert cache.get("hash-1") is None
    assert len(cache) == 0


def test_the_cache_never_holds_more_than_its_size() -> None:
    cache = enabled_cache(FakeClock())
    for number in range(10):
        cache.put(snapshot(number), cache.generation)
    assert len(cache) == 3
    assert [cache.get(f"hash-{n}") is not None for n in (6, 7, 8, 9)] == [
        False,
        True,
        True,
        True,
    ]


def test_the_negative_cache_is_bounded_and_short_lived() -> None:
    clock = FakeClock()
    cache = enabled_cache(clock)
    for number in range(100):
        cache.put_unknown(f"random-{number}", cache.generation)
    assert cache.negative_size == 4
    assert cache.is_known_unknown("random-99")
    assert not cache.is_known_unknown("random-0")
    clock.now += 2.1
    assert not cache.is_known_unknown("random-99")


def test_invalidating_a_key_drops_only_that_key() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.put(snapshot(2), cache.generation)
    cache.apply([Invalidation.key("key-1")])
    assert cache.get("hash-1") is None
    assert cache.get("hash-2") is not None


def test_invalidating_a_user_drops_every_key_of_theirs() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.put(snapshot(2), cache.generation)
    cache.put(snapshot(3, user_uid="user-2"), cache.generation)
    cache.apply([Invalidation.user("user-1")])
    assert cache.get("hash-1") is None
    assert cache.get("hash-2") is None
    assert cache.get("hash-3") is not None


def test_an_invalidation_of_everything_clears_the_cache() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.put_unknown("random", cache.generation)
    cache.apply([Invalidation(InvalidationKind.ALL)])
    assert cache.get("hash-1") is None
    assert not cache.is_known_unknown("random")


def test_an_unreadable_message_is_taken_as_everything() -> None:
    assert Invalidation.decode_all("key:abc;surprise:xyz") == [
        Invalidation.key("abc"),
        Invalidation(InvalidationKind.ALL),
    ]


def test_a_read_that_overlapped_an_invalidation_is_not_cached() -> None:
    cache = enabled_cache(FakeClock())
    generation_before_read = cache.generation
    # The revoke commits while the database read is in flight...
    cache.apply([Invalidation.key("key-1")])
    # ...so what the read saw (still active) must not be kept.
    cache.put(snapshot(1), generation_before_read)
    cache.put_unknown("hash-9", generation_before_read)
    assert cache.get("hash-1") is None
    assert not cache.is_known_unknown("hash-9")


def test_a_disabled_cache_stores_and_returns_nothing() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.set_enabled(False)
    assert cache.get("hash-1") is None
    cache.put(snapshot(2), cache.generation)
    cache.put_unknown("random", cache.generation)
    assert len(cache) == 0
    assert not cache.is_known_unknown("random")


def test_re_enabling_starts_from_an_empty_cache() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.set_enabled(False)
    cache.set_enabled(True)
    assert cache.get("hash-1") is None


def test_a_replaced_snapshot_keeps_the_indexes_right() -> None:
    cache = enabled_cache(FakeClock())
    cache.put(snapshot(1), cache.generation)
    cache.put(replace(snapshot(1), key_active=False), cache.generation)
    assert len(cache) == 1
    cache.apply([Invalidation.user("user-1")])
    assert len(cache) == 0


def test_a_key_in_use_outlives_keys_not_used_since() -> None:
    cache = enabled_cache(FakeClock())
    for number in (1, 2, 3):
        cache.put(snapshot(number), cache.generation)
    cache.get("hash-1")
    cache.put(snapshot(4), cache.generation)
    assert cache.get("hash-1") is not None
    assert cache.get("hash-2") is None


def test_an_entry_is_due_for_refresh_ahead_of_its_max_age_and_served_until_then() -> None:
    clock = FakeClock()
    cache = enabled_cache(clock, max_age_seconds=10.0)
    cache.put(snapshot(1), cache.generation)
    clock.now += 4.9
    assert cache.get("hash-1") == snapshot(1)
    assert not cache.refresh_due("hash-1")
    assert cache.lookup("hash-1") == (snapshot(1), False)
    clock.now += 3.2
    assert cache.get("hash-1") == snapshot(1)
    assert cache.refresh_due("hash-1")
    assert cache.lookup("hash-1") == (snapshot(1), True)
    # A refresh stores the entry again: due again only later.
    cache.put(snapshot(1), cache.generation)
    assert not cache.refresh_due("hash-1")
    clock.now += 10.1
    # Never past the max age, refreshed or not.
    assert cache.get("hash-1") is None
    assert not cache.refresh_due("hash-1")
    assert cache.lookup("hash-1") == (None, False)


def test_keys_read_together_come_due_for_refresh_at_different_ages() -> None:
    # After a restart every busy key is read within seconds: refreshing them all in the
    # same second would be a burst of reads on the database, and a stall on this worker.
    clock = FakeClock()
    cache = enabled_cache(clock, max_age_seconds=10.0, max_entries=1000)
    for number in range(200):
        cache.put(snapshot(number), cache.generation)
    due_by_second = []
    for _ in range(9):
        clock.now += 1.0
        due_by_second.append(sum(cache.refresh_due(f"hash-{n}") for n in range(200)))
    assert due_by_second[:4] == [0, 0, 0, 0]
    assert 0 < due_by_second[5] < due_by_second[6] < 200
    assert due_by_second[7:] == [200, 200]


def test_one_refresh_per_key_and_a_few_at_a_time() -> None:
    cache = enabled_cache(FakeClock())
    assert cache.claim_refresh("hash-1")
    assert not cache.claim_refresh("hash-1")
    cache.release_refresh("hash-1")
    assert cache.claim_refresh("hash-1")
    others = [cache.claim_refresh(f"other-{n}") for n in range(MAX_REFRESHES + 5)]
    assert others.count(True) == MAX_REFRESHES - 1
