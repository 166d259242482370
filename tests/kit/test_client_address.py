"""Which address a request came from, and why a forged header changes nothing."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from starlette.types import Scope

from keyplane.kit.client_address import ClientAddressResolver, parse_address
from tests.auth.helpers import instance

PROXIES = ClientAddressResolver(
    trusted_proxies=(ip_network("10.0.0.0/8"), ip_network("2001:db8:1::/48"))
)


def _scope(peer: str | None, *headers: tuple[str, str]) -> Scope:
    return {
        "type": "http",
        "client": (peer, 5000) if peer is not None else None,
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
    }


@pytest.mark.parametrize(
    "forged",
    ["192.0.2.1", "10.0.0.1", "127.0.0.1, 10.0.0.1", "garbage", ""],
)
def test_without_trusted_proxies_the_header_is_ignored(forged: str) -> None:
    scope = _scope("203.0.113.9", ("X-Forwarded-For", forged))
    assert ClientAddressResolver().resolve(scope) == "203.0.113.9"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_speak_for_others() -> None:
    scope = _scope("203.0.113.9", ("X-Forwarded-For", "10.0.0.1, 192.0.2.1"))
    assert PROXIES.resolve(scope) == "203.0.113.9"


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        # The proxy appended what it saw; the client's own additions are on the left.
        ("192.0.2.7", "192.0.2.7"),
        ("1.1.1.1, 192.0.2.7", "192.0.2.7"),
        ("10.0.0.1, 192.0.2.7", "192.0.2.7"),
        # Two trusted proxies in a row: the rightmost untrusted hop.
        ("1.1.1.1, 192.0.2.7, 10.2.2.2", "192.0.2.7"),
        # Ports and brackets, as some proxies write them.
        ("192.0.2.7:4711", "192.0.2.7"),
        ("[2001:db8:2::7]:4711", "2001:db8:2::7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        # Only trusted hops: the farthest one known.
        ("10.3.3.3, 10.2.2.2", "10.3.3.3"),
        # Something no proxy writes: the last address a trusted proxy vouched for.
        ("192.0.2.7, not-an-address, 10.2.2.2", "10.2.2.2"),
    ],
)
def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client(
    forwarded_for: str, client: str
) -> None:
    scope = _scope("10.0.0.5", ("X-Forwarded-For", forwarded_for))
    assert PROXIES.resolve(scope) == client


def test_without_the_header_the_proxy_itself_is_the_client() -> None:
    assert PROXIES.resolve(_scope("10.0.0.5")) == "10.0.0.5"


def test_several_header_lines_are_one_list() -> None:
    scope = _scope(
        "10.0.0.5", ("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "192.0.2.7, 10.9.9.9")
    )
    assert PROXIES.resolve(scope) == "192.0.2.7"


def test_only_the_configured_header_is_read() -> None:
    resolver = ClientAddressResolver(trusted_proxies=PROXIES.trusted_proxies, header="X-Real-IP")
    scope = _scope("10.0.0.5", ("X-Forwarded-For", "192.0.2.1"), ("X-Real-IP", "192.0.2.7"))
    assert resolver.resolve(scope) == "192.0.2.7"
    assert PROXIES.resolve(_scope("10.0.0.5", ("X-Real-IP", "192.0.2.7"))) == "10.0.0.5"


def test_rfc_7239_forwarded() -> None:
    resolver = ClientAddressResolver(trusted_proxies=PROXIES.trusted_proxies, header="Forwarded")
    header = 'for=192.0.2.1, for="[2001:db8:2::7]:4711";proto=https, for=10.2.2.2;by=10.0.0.5'
    assert resolver.resolve(_scope("10.0.0.5", ("Forwarded", header))) == "2001:db8:2::7"


def test_ipv6_peers_and_other_transports() -> None:
    assert PROXIES.resolve(_scope("2001:db8:1::5", ("X-Forwarded-For", "192.0.2.7"))) == (
        "192.0.2.7"
    )
    assert PROXIES.resolve(_scope(None, ("X-Forwarded-For", "192.0.2.7"))) == ""
    assert PROXIES.resolve(_scope("testclient", ("X-Forwarded-For", "192.0.2.7"))) == ("testclient")


@pytest.mark.parametrize("text", ["", "x", "1.2.3", "999.1.1.1", "[::1", "unknown", "_hidden"])
def test_what_is_not_an_address(text: str) -> None:
    assert parse_address(text) is None


@pytest.mark.parametrize(
    ("peer", "proto", "scheme"),
    [
        ("10.0.0.5", "https", "https"),
        ("10.0.0.5", "https, http", "http"),
        ("10.0.0.5", "gopher", "http"),
        ("203.0.113.9", "https", "http"),
    ],
)
def test_only_a_trusted_proxy_says_the_client_used_https(
    peer: str, proto: str, scheme: str
) -> None:
    scope = {**_scope(peer, ("X-Forwarded-Proto", proto)), "scheme": "http"}
    PROXIES.remember(scope)
    assert scope["scheme"] == scheme


async def test_console_cookies_are_secure_behind_a_tls_proxy(
    database_url: str, tmp_path: Path
) -> None:
    async with instance(database_url, tmp_path, "10.0.0.5", trusted_proxies="10.0.0.0/8") as (
        client,
        _runtime,
    ):
        form = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in form.headers["set-cookie"].lower()
        plain = await client.get("/login")
        assert "secure" not in plain.headers["set-cookie"].lower()
