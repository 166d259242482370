"""Logging for ``keyplane serve``: uvicorn's own lines plus Keyplane's, one format."""

from __future__ import annotations

import logging
import logging.handlers
import queue
from typing import Any, TextIO

from keyplane.kit.text import single_line


class SingleLineFormatter(logging.Formatter):
    """Every record's message on one line: a value that a client sent (a path, a header, an
    email) and that some message quotes cannot forge a log line. Tracebacks, which the
    formatter appends after the message, keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        safe = logging.makeLogRecord(record.__dict__)
        safe.message = single_line(record.message)
        return super().formatMessage(safe)


class QueuedStreamHandler(logging.handlers.QueueHandler):
    """Writes to a stream from a thread of its own: a request only puts its record on a
    queue, so that a slow or blocked stderr (a pipe nobody drains fast enough, a full
    disk behind it) never holds up the event loop. Lines keep their order; those still
    queued are written when logging shuts down (``close``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(records)
        self.target = logging.StreamHandler(stream)
        self.listener = logging.handlers.QueueListener(records, self.target)
        self.listener.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 (logging's)
        # Formatting happens on the writer's thread, not on the request's.
        self.target.setFormatter(fmt)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message is merged now, while its arguments are what they were when logged;
        # the formatter's work (time, escaping, tracebacks) is left to the writer.
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        return record

    def close(self) -> None:
        self.listener.stop()
        self.target.close()
        super().close()


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
                "()": QueuedStreamHandler,
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
