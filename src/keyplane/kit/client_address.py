"""Which address a request came from: the key of the per-address failure limit, and what
audit records and the access log show.

By default it is the direct peer of the connection, and any ``X-Forwarded-For`` a client
sends is ignored: anyone can write that header, and believing it would let an attacker pick
a fresh address (a fresh failure budget) for every request. Only when the peer is one of
``KEYPLANE_TRUSTED_PROXIES`` is the configured header read, from the right: each trusted
proxy appends the address it saw, so the rightmost hop that is not itself a trusted proxy
is the client. Everything to the left of it was written by that client and is ignored.
From a trusted proxy, ``X-Forwarded-Proto`` also tells whether the client used HTTPS (the
proxy terminates TLS), so that the console's cookies are marked ``Secure``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.requests import Request
from starlette.types import Scope

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_STATE_KEY = "client_address"


# Pure, and the same few peers come back on every request: cached, within a bound.
@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """An IP address as proxies write it (``192.0.2.1``, ``192.0.2.1:4711``,
    ``[2001:db8::1]:4711``, ``"[2001:db8::1]"``); None for anything else."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text, closed, _port = text[1:].partition("]")
        if not closed:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen by a dual-stack listener: the same client as its IPv4 form.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _peer_text(text: str) -> str:
    """The peer as the client address (no proxy trusted): normalised when it is an
    address, as it is (a Unix socket, a test transport) otherwise."""
    peer = parse_address(text)
    return text if peer is None else address_text(peer)


def _forwarded_for(element: str) -> str:
    """The ``for=`` of one element of RFC 7239's ``Forwarded`` header."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value
    return ""


@functools.lru_cache(maxsize=4096)
def address_text(address: IPAddress) -> str:
    """``str(address)``, which ``ipaddress`` works out anew on every call."""
    return str(address)


@dataclass(frozen=True, slots=True)
class ClientAddressResolver:
    trusted_proxies: tuple[IPNetwork, ...] = ()
    header: str = "X-Forwarded-For"

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def _hops(self, scope: Scope) -> list[str]:
        name = self.header.lower().encode("latin-1")
        # Several header lines are one list, in order (RFC 9110, section 5.3).
        values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
        hops = [hop for value in values for hop in value.split(",")]
        if name == b"forwarded":
            return [_forwarded_for(hop) for hop in hops]
        return hops

    def resolve(self, scope: Scope) -> str:
        client = scope.get("client")
        peer_text = str(client[0]) if client else ""
        if not self.trusted_proxies:
            return _peer_text(peer_text)
        peer = parse_address(peer_text)
        if peer is None:
            # A Unix socket or a test transport: nothing to normalise, nothing to trust.
            return peer_text
        if not self.trusted_proxies or not self._trusted(peer):
            return address_text(peer)
        return address_text(self._rightmost_untrusted(peer, reversed(self._hops(scope))))

    def _rightmost_untrusted(self, peer: IPAddress, hops: Iterable[str]) -> IPAddress:
        address = peer
        for hop in hops:
            parsed = parse_address(hop)
            if parsed is None:
                # Not an address a trusted proxy would have written: the client forged this
                # part, so the last address a trusted proxy vouched for is the best we know.
                break
            address = parsed
            if not self._trusted(parsed):
                break
        return address

    def forwarded_scheme(self, scope: Scope) -> str | None:
        """``http`` or ``https`` as the trusted proxy in front saw it, else None."""
        if not self.trusted_proxies:
            return None
        client = scope.get("client")
        peer = parse_address(str(client[0])) if client else None
        if peer is None or not self._trusted(peer):
            return None
        values = [value for key, value in scope["headers"] if key == b"x-forwarded-proto"]
        if not values:
            return None
        # The proxy nearest to us wrote the rightmost value.
        scheme = values[-1].decode("latin-1").split(",")[-1].strip().lower()
        return scheme if scheme in {"http", "https"} else None

    def remember(self, scope: Scope) -> str:
        """Resolves once per request, for every later reader of ``client_address``."""
        address = self.resolve(scope)
        scope.setdefault("state", {})[_STATE_KEY] = address
        scheme = self.forwarded_scheme(scope)
        if scheme is not None and scope.get("scheme") in {"http", "https"}:
            scope["scheme"] = scheme
        return address


def client_address(request: Request) -> str:
    """The client's address as the request middleware resolved it (the peer without it)."""
    address = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(address, str):
        return address
    return ClientAddressResolver().resolve(request.scope)
