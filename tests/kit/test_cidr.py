"""Address ranges of keys: parsing, normalising and the checks."""

from __future__ import annotations

import pytest

from keyplane.kit.cidr import InvalidRange, address_allowed, normalised_ranges, within


def test_ranges_are_normalised_without_repeats_in_order() -> None:
    assert normalised_ranges([" 10.0.0.0/8", "2001:DB8::/32", "10.0.0.0/8", "192.0.2.7"]) == [
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.7/32",
    ]


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "CIDR"),
        ("example.com", "CIDR"),
        ("", "CIDR"),
        ("1" * 100, "CIDR"),
    ],
)
def test_what_is_not_a_range_is_refused_with_a_reason(text: str, hint: str) -> None:
    with pytest.raises(InvalidRange) as refused:
        normalised_ranges([text])
    assert hint in refused.value.reason


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("::ffff:10.1.2.3", True),
        ("2001:db8::1", True),
        ("11.0.0.1", False),
        ("2001:db9::1", False),
        ("testclient", False),
        ("", False),
    ],
)
def test_an_address_is_allowed_inside_a_range_only(address: str, allowed: bool) -> None:
    assert address_allowed(address, ["10.0.0.0/8", "2001:db8::/32"]) is allowed


def test_within_compares_ranges_of_the_same_family() -> None:
    assert within(["10.1.0.0/16", "10.2.3.4/32"], ["10.0.0.0/8"])
    assert not within(["10.0.0.0/7"], ["10.0.0.0/8"])
    assert not within(["2001:db8::/48"], ["10.0.0.0/8"])
    assert within([], ["10.0.0.0/8"])
