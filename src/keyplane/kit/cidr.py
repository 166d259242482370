"""Address ranges a key may be used from: parsing, normalising, and the check. Pure.

Ranges are written as CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or as one address (a
``/32`` or ``/128``). Host bits must be zero (``10.0.0.1/8`` is refused rather than
silently widened: it is more likely a mistake than a wish for the whole ``/8``). An IPv4
client seen through a dual-stack listener (``::ffff:10.1.2.3``) is checked as its IPv4
form, as ``kit.client_address`` reports it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

MAX_RANGES = 100

Network = IPv4Network | IPv6Network


class InvalidRange(ValueError):
    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is not an address range: {reason}")
        self.text = text
        self.reason = reason


def parse_range(text: str) -> Network:
    stripped = text.strip()
    if not stripped or len(stripped) > 64:
        raise InvalidRange(text, "write it as CIDR, e.g. 10.0.0.0/8 or 2001:db8::/32")
    try:
        return ip_network(stripped, strict=True)
    except ValueError as exc:
        message = str(exc)
        if "has host bits set" in message:
            base = ip_network(stripped, strict=False)
            raise InvalidRange(
                text, f"the address has bits set past the prefix; did you mean {base}?"
            ) from None
        raise InvalidRange(text, "write it as CIDR, e.g. 10.0.0.0/8 or 2001:db8::/32") from None


def normalised_ranges(texts: Iterable[str]) -> list[str]:
    """The ranges in canonical text (``10.0.0.0/8``), without repeats, in the order
    given; ``InvalidRange`` for the first that is not one."""
    seen: dict[str, None] = {}
    for text in texts:
        seen.setdefault(str(parse_range(text)), None)
    return list(seen)


@functools.lru_cache(maxsize=4096)
def _networks(ranges: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(text) for text in ranges)


def address_allowed(address: str, ranges: Sequence[str]) -> bool:
    """Whether ``address`` lies in one of ``ranges`` (canonical texts, as stored). An
    address that does not parse (a test transport's name, a Unix socket) is in none."""
    return _address_allowed(address, tuple(ranges))


# Pure, and asked on every request with a key that has ranges: the same few callers
# come back, so the answers are kept (within a bound).
@functools.lru_cache(maxsize=16384)
def _address_allowed(address: str, ranges: tuple[str, ...]) -> bool:
    try:
        parsed = ip_address(address.strip())
    except ValueError:
        return False
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in _networks(ranges))


def within(inner: Sequence[str], outer: Sequence[str]) -> bool:
    """Whether every range of ``inner`` lies inside some range of ``outer``."""
    outer_networks = _networks(tuple(outer))
    for network in _networks(tuple(inner)):
        if not any(
            network.version == wider.version and network.subnet_of(wider)  # type: ignore[arg-type]
            for wider in outer_networks
        ):
            return False
    return True
