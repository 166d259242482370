"""Outbound requests to user-chosen URLs: refused inside the operator's network unless
allowed, pinned to the checked address, bounded in time and size, never redirected."""

from __future__ import annotations

import time

import pytest

from keyplane.kit.outbound import OutboundRefused, OutboundResult, check_url, send
from tests.webhooks.receiver import Answer, receiving


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/",
        "https://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        "http://localhost/",
        "http://LOCALHOST.:8000/",
        "http://api.localhost/",
        "http://printer.local/",
        "http://intranet/",
    ],
)
def test_private_targets_are_refused_at_registration(url: str) -> None:
    with pytest.raises(OutboundRefused, match="KEYPLANE_WEBHOOK_ALLOW_PRIVATE_TARGETS"):
        check_url(url, allow_private=False)
    assert check_url(url, allow_private=True).url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https:///path", "host"),
        ("", "required"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/#frag", "fragment"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(OutboundRefused, match=reason):
        check_url(url, allow_private=True)


def test_public_urls_pass() -> None:
    target = check_url("https://hooks.example.com:8443/in?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert check_url("http://93.184.215.14/", allow_private=False).port == 80


async def _send(
    url: str, *, allow_private: bool, seconds: float = 5.0, cap: int = 1024
) -> OutboundResult:
    return await send(
        url,
        b'{"a":1}',
        {"content-type": "application/json"},
        allow_private=allow_private,
        timeout_seconds=seconds,
        max_response_bytes=cap,
    )


async def test_a_hostname_resolving_to_loopback_is_refused_at_delivery() -> None:
    async with receiving() as receiver:
        # "localhost" passes no registration check here: the lookup at delivery refuses it.
        result = await _send(f"http://localhost:{receiver.port}/hook", allow_private=False)
        assert result.status_code is None
        assert result.error is not None
        assert "Refused" in result.error
        for literal in ("127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254"):
            refused = await _send(f"http://{literal}:{receiver.port}/", allow_private=False)
            assert refused.error is not None
            assert refused.error.startswith("Refused")
        assert receiver.received == []


async def test_allowed_private_targets_are_reached_pinned_with_their_host_header() -> None:
    async with receiving() as receiver:
        result = await _send(f"http://localhost:{receiver.port}/hook?x=1", allow_private=True)
        assert result.succeeded, result
        assert result.status_code == 200
        (request,) = receiver.received
        assert request.method == "POST"
        assert request.path == "/hook?x=1"
        assert request.headers["host"] == f"localhost:{receiver.port}"
        assert request.body == b'{"a":1}'


async def test_a_redirect_is_not_followed() -> None:
    def answer(request: object) -> Answer:
        return Answer(status=302, headers={"location": "http://169.254.169.254/"})

    async with receiving(answer) as receiver:
        result = await _send(receiver.url, allow_private=True)
        assert not result.succeeded
        assert result.status_code == 302
        assert result.error is not None
        assert "redirect" in result.error
        assert "not followed" in result.error
        assert len(receiver.received) == 1


async def test_a_huge_response_is_read_only_up_to_the_cap() -> None:
    async with receiving(lambda request: Answer(body=b"x" * 5_000_000)) as receiver:
        result = await _send(receiver.url, allow_private=True, cap=2048)
        assert result.succeeded
        assert result.received_bytes == 2048


async def test_a_slow_receiver_times_out() -> None:
    async with receiving(lambda request: Answer(delay=3.0)) as receiver:
        started = time.monotonic()
        result = await _send(receiver.url, allow_private=True, seconds=0.5)
        assert time.monotonic() - started < 2.0
        assert result.status_code is None
        assert result.error is not None
        assert "timed out" in result.error


async def test_an_error_status_and_a_closed_port_are_failures_that_say_so() -> None:
    async with receiving(lambda request: Answer(status=500)) as receiver:
        result = await _send(receiver.url, allow_private=True)
        assert result.status_code == 500
        assert not result.succeeded
        assert result.error is not None
        assert "HTTP 500" in result.error
        port = receiver.port
    closed = await _send(f"http://127.0.0.1:{port}/", allow_private=True)
    assert closed.status_code is None
    assert closed.error is not None
    assert "Could not connect" in closed.error
