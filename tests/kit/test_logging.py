"""The server's log format: one record, one line, whatever a client sent."""

from __future__ import annotations

import logging
import logging.config
import sys

from keyplane.kit.logging import log_config


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


def test_tracebacks_keep_their_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    formatted = _formatter().format(record)
    assert formatted.count("\n") >= 2
    assert "ValueError: boom" in formatted
