from __future__ import annotations

from keyplane.kit.rate_limit import FailureLimiter, Periodic


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = FailureLimiter(2.0, 3, clock=clock)
    assert [limiter.record_failure("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.exhausted("a")
    assert limiter.retry_after("a") == 1
    clock.now = 0.5
    assert limiter.record_failure("a")
    assert not limiter.record_failure("a")


def test_clients_are_independent_and_memory_is_bounded() -> None:
    limiter = FailureLimiter(1.0, 1, max_clients=10, clock=Clock())
    assert limiter.record_failure("a")
    assert not limiter.record_failure("a")
    assert limiter.record_failure("b")
    for index in range(100):
        limiter.record_failure(f"flood-{index}")
    assert len(limiter._buckets) == 10


def test_refusals_are_reported_once_per_interval() -> None:
    clock = Clock()
    limiter = FailureLimiter(1.0, 1, report_interval=60.0, clock=clock)
    assert limiter.should_report("a")
    assert not limiter.should_report("a")
    assert limiter.should_report("b")
    clock.now = 59.0
    assert not limiter.should_report("a")
    clock.now = 60.0
    assert limiter.should_report("a")


def test_periodic_is_due_once_per_period() -> None:
    clock = Clock()
    periodic = Periodic(10.0, clock=clock)
    assert periodic.due()
    assert not periodic.due()
    clock.now = 10.0
    assert periodic.due()
