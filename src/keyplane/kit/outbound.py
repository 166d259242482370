"""Requests Keyplane sends to addresses its users chose (webhook endpoints), kept from
becoming a way into the operator's own network (server-side request forgery).

Two checks, because either alone can be walked around:

- ``check_url`` at registration: http or https, a host, no credentials, and (unless the
  server allows private targets) no literal private, loopback, link-local, multicast,
  reserved or unspecified address, nor a name such as ``localhost``. It gives a clear
  reason to the person registering; it cannot know where a name will point later.
- ``send`` at delivery: the host is resolved (a bounded wait) and refused if ANY of its
  addresses is not a global one; the request then goes to the address that was checked,
  with the original ``Host`` header and TLS server name, so a name that changes its answer
  between the check and the connection (DNS rebinding) gains nothing. Every attempt has a
  total time limit, redirects are never followed (a 3xx is a failure that says so, so a
  public URL cannot bounce the request inward), and at most ``max_response_bytes`` of the
  answer are read. The proxy settings of the environment are ignored (``trust_env``
  False): a proxy would connect to the name itself, undoing the pinning.

Errors are short texts for people (stored with the delivery, shown in the console); they
never contain a header, hence never a signature or a secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Protocol
from urllib.parse import urlsplit

import httpx

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = {"http": 80, "https": 443}
# Names that mean this machine or its local network whatever DNS says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")
MAX_URL_LENGTH = 2048
_PRIVATE_HINT = "(the server setting KEYPLANE_WEBHOOK_ALLOW_PRIVATE_TARGETS allows them)"


class OutboundRefused(ValueError):
    """A target Keyplane will not send to; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # as written, lower case, without brackets
    port: int
    url: str


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """What came of one request: ``status_code`` None when no answer came."""

    status_code: int | None
    duration_ms: int
    error: str | None
    # How many bytes of the answer were read (at most the cap).
    received_bytes: int = 0

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def is_public(address: IpAddress) -> bool:
    """Whether an address is one the open Internet routes to this network's outside.
    IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class _ResultFactory(Protocol):
    def __call__(
        self, status: int | None, error: str | None, received: int = 0
    ) -> OutboundResult: ...


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> Target:
    """The URL's parts once it is an acceptable target, else ``OutboundRefused``."""
    url = url.strip()
    if not url:
        raise OutboundRefused("A URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise OutboundRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise OutboundRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"This is not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise OutboundRefused("The URL must start with https:// (or http://).")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused(
            "The URL must not contain a user name or password; authenticate requests by "
            "their signature instead."
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise OutboundRefused("The URL must name a host.")
    if parts.fragment:
        raise OutboundRefused("The URL must not contain a fragment (#...).")
    if not allow_private:
        address = _literal_address(host)
        if address is not None and not is_public(address):
            raise OutboundRefused(
                f"{host} is a private, loopback, link-local or reserved address; Keyplane "
                f"does not send to those {_PRIVATE_HINT}."
            )
        bare = host.rstrip(".")
        local = bare in _LOCAL_NAMES or bare.endswith(_LOCAL_SUFFIXES) or "." not in bare
        if local and address is None:
            raise OutboundRefused(
                f"{host} names this machine or its local network; Keyplane does not "
                f"send there {_PRIVATE_HINT}."
            )
    return Target(scheme=scheme, host=host, port=port or _SCHEMES[scheme], url=url)


async def resolve(target: Target, *, allow_private: bool, lookup_seconds: float) -> list[IpAddress]:
    """Every address the host has now, each checked; ``OutboundRefused`` when any is not
    public (unless allowed): a name with one private answer among public ones could be
    pointed at the private one by the next lookup."""
    literal = _literal_address(target.host)
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(lookup_seconds):
                infos = await loop.getaddrinfo(
                    target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
        except TimeoutError as exc:
            raise OutboundRefused(f"Looking up {target.host} took too long.") from exc
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused(f"{target.host} could not be resolved.") from exc
        found = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise OutboundRefused(f"{target.host} has no address.")
    if not allow_private:
        for address in found:
            if not is_public(address):
                raise OutboundRefused(
                    f"{target.host} resolves to {address}, a private, loopback, link-local "
                    f"or reserved address; Keyplane does not send there {_PRIVATE_HINT}."
                )
    return found


@cache
def _tls_context() -> ssl.SSLContext:
    # One context for every request: building one loads the CA bundle.
    return httpx.create_ssl_context()


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == _SCHEMES[target.scheme] else f"{host}:{target.port}"


async def send(
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    allow_private: bool,
    timeout_seconds: float,
    max_response_bytes: int,
) -> OutboundResult:
    """POSTs ``content`` to ``url`` under the rules of the module docstring. Never raises
    for a network, TLS or target problem: the result says what went wrong."""
    started = time.monotonic()

    def result(status: int | None, error: str | None, received: int = 0) -> OutboundResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return OutboundResult(status, elapsed, error, received)

    try:
        async with asyncio.timeout(timeout_seconds):
            target = check_url(url, allow_private=allow_private)
            addresses = await resolve(
                target, allow_private=allow_private, lookup_seconds=timeout_seconds
            )
            return await _post(
                target, addresses, content, headers, timeout_seconds, max_response_bytes, result
            )
    except TimeoutError:
        return result(None, f"No complete answer within {timeout_seconds:g} s (timed out).")
    except OutboundRefused as exc:
        return result(None, f"Refused: {exc}")


async def _post(
    target: Target,
    addresses: list[IpAddress],
    content: bytes,
    headers: Mapping[str, str],
    timeout_seconds: float,
    max_response_bytes: int,
    result: _ResultFactory,
) -> OutboundResult:
    request_headers = {**headers, "Host": _host_header(target)}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    last_error = "could not connect"
    # A fresh client per request, without keep-alive: a pooled connection is keyed by the
    # address, and must never carry a request for one host name over a TLS session
    # opened for another that shares the address.
    async with httpx.AsyncClient(
        verify=_tls_context(),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        for address in addresses:
            pinned = httpx.URL(target.url).copy_with(host=str(address))
            request = client.build_request(
                "POST", pinned, content=content, headers=request_headers, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = _connect_error(exc)
                continue  # the next address of the host, if any
            except httpx.TimeoutException:
                return result(None, f"No complete answer within {timeout_seconds:g} s (timed out).")
            except httpx.HTTPError as exc:
                return result(None, f"The request failed: {type(exc).__name__}.")
            try:
                received = 0
                try:
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received >= max_response_bytes:
                            received = max_response_bytes
                            break  # enough: the rest is not read
                except httpx.HTTPError:
                    pass  # the status line came; a broken body does not change the outcome
            finally:
                await response.aclose()
            status = response.status_code
            if 300 <= status < 400:
                location = response.headers.get("location", "")[:200]
                return result(
                    status,
                    f"HTTP {status}: a redirect (to {location or 'nowhere'}), not followed; "
                    "register the final URL.",
                    received,
                )
            if not 200 <= status < 300:
                return result(
                    status, f"HTTP {status}: the endpoint did not accept the event.", received
                )
            return result(status, None, received)
    return result(None, f"Could not connect to {target.host}: {last_error}.")


def _connect_error(exc: httpx.ConnectError) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
        return "its TLS certificate could not be verified"
    if "refused" in text.lower():
        return "connection refused"
    return text[:200]
