"""Logging for ``keyplane serve``: uvicorn's own lines plus Keyplane's, one format."""

from __future__ import annotations

import logging
from typing import Any

from keyplane.kit.text import single_line


class SingleLineFormatter(logging.Formatter):
    """Every record's message on one line: a value that a client sent (a path, a header, an
    email) and that some message quotes cannot forge a log line. Tracebacks, which the
    formatter appends after the message, keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        safe = logging.makeLogRecord(record.__dict__)
        safe.message = single_line(record.message)
        return super().formatMessage(safe)


def log_config(level: str = "INFO") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "()": SingleLineFormatter,
                "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "keyplane": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
