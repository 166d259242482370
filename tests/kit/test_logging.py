"""The server's log format: one record, one line, whatever a client sent."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import re
import sys
import threading

import httpx
import pytest

from keyplane.kit.keys import generate_api_key
from keyplane.kit.logging import PLAIN_FORMAT, SingleLineFormatter, log_config
from keyplane.settings import Settings
from tests.helpers import wait_until
from tests.live import server_process


def _formatter() -> logging.Formatter:
    config = log_config()
    configurator = logging.config.DictConfigurator(config)
    formatter: logging.Formatter = configurator.configure_formatter(config["formatters"]["plain"])
    return formatter


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("keyplane.errors", logging.WARNING, __file__, 1, message, args, None)


def test_a_message_never_spans_lines() -> None:
    formatted = _formatter().format(
        _record("login refused for %s", "eve@x\r\n2026-12-01 INFO keyplane: forged\u2028\x00")
    )
    assert "\n" not in formatted
    assert "\r" not in formatted
    assert "\u2028" not in formatted
    assert "\x00" not in formatted
    assert "eve@x\\x0d\\x0a2026-12-01" in formatted
    assert formatted.endswith("forged\\u2028\\x00")


def test_backslashes_and_tabs_are_kept_as_they_are() -> None:
    # Fields escaped at their source (the access log's path) are not escaped twice.
    formatted = _formatter().format(_record("path /a\\x0d\tb"))
    assert formatted.endswith("path /a\\x0d\tb")


@pytest.mark.parametrize(
    "message", ['127.0.0.1 "GET /v1/users/info" 200 0.4ms ref=ab', "forged\r\n\u2028line\x00"]
)
def test_an_access_line_queued_as_a_tuple_reads_as_a_record_would(message: str) -> None:
    formatter = _formatter()
    assert isinstance(formatter, SingleLineFormatter)
    for created in (1_796_000_000.0, 1_796_000_000.999, 1_796_000_001.5004):
        record = logging.LogRecord("keyplane.access", logging.INFO, "", 0, message, None, None)
        record.created = created
        record.msecs = int(created * 1000) % 1000 + 0.0
        expected = logging.Formatter(PLAIN_FORMAT)
        expected.formatMessage = formatter.formatMessage  # type: ignore[method-assign]
        assert formatter.format_info(created, "keyplane.access", message) == expected.format(record)
        assert formatter.format(record) == expected.format(record)


def test_other_formats_are_formatted_from_a_record() -> None:
    assert SingleLineFormatter("%(message)s").format_info(1.0, "x", "y") is None


def test_tracebacks_keep_their_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    formatted = _formatter().format(record)
    assert formatted.count("\n") >= 2
    assert "ValueError: boom" in formatted


class StuckStream(io.StringIO):
    """A stderr nobody drains: every write waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def _server_handler(stream: io.StringIO) -> logging.Handler:
    """The handler ``keyplane serve`` logs through, built from its config, on ``stream``."""
    config = log_config()
    handler_config = dict(config["handlers"]["stderr"])
    handler_config.pop("formatter")
    handler_config["stream"] = stream
    configurator = logging.config.DictConfigurator(config)
    handler: logging.Handler = configurator.configure_handler(handler_config)
    handler.setFormatter(_formatter())
    return handler


def test_a_stuck_log_stream_never_holds_up_the_request_that_logs() -> None:
    stream = StuckStream()
    handler = _server_handler(stream)
    logger = logging.getLogger("keyplane.access.test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logged = threading.Event()

    def request() -> None:
        logger.info(
            '%s "%s %s" %d %.1fms ref=%s', "203.0.113.7", "GET", "/v1/x\\x0a", 200, 1.25, "a1"
        )
        logged.set()

    try:
        threading.Thread(target=request, daemon=True).start()
        assert logged.wait(10), "logging waited for the stream"
    finally:
        stream.release.set()
        logger.removeHandler(handler)
        # Writes what is still queued.
        handler.close()
    line = stream.getvalue()
    assert line.endswith('keyplane.access.test: 203.0.113.7 "GET /v1/x\\x0a" 200 1.2ms ref=a1\n')
    assert line.count("\n") == 1


# The log format does not depend on the database.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_keyplane_serve_writes_each_request_s_access_line(
    settings: Settings, database_url: str
) -> None:
    secret = generate_api_key()
    async with server_process(settings) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/v1/users/info?page=1", headers={"ApiKey": secret})
        assert response.status_code == 401
        ref = response.headers["x-request-id"]
        (log_path,) = settings.data_dir.glob("serve-*.log")
        expected = re.compile(
            rf'keyplane\.access: 127\.0\.0\.1 "GET /v1/users/info" 401 [0-9.]+ms ref={ref}$',
            re.MULTILINE,
        )

        def arrived() -> bool:
            return expected.search(log_path.read_text(errors="replace")) is not None

        await wait_until(arrived, within=10)
    text = await asyncio.to_thread(log_path.read_text, errors="replace")
    assert secret not in text
    assert "page=1" not in text
