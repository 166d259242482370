"""Logging for ``keyplane serve``: uvicorn's own lines plus Keyplane's, one format."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
from typing import Any, TextIO

from keyplane.kit.text import single_line


class SingleLineFormatter(logging.Formatter):
    """Every record's message on one line: a value that a client sent (a path, a header, an
    email) and that some message quotes cannot forge a log line. Tracebacks, which the
    formatter appends after the message, keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        escaped = single_line(record.message)
        if escaped == record.message:
            return super().formatMessage(record)
        safe = logging.makeLogRecord(record.__dict__)
        safe.message = escaped
        return super().formatMessage(safe)


_STOP = None
# Records written with one write() and one flush(): under load a line per system call
# would cost the process more than the requests the lines describe.
_BATCH = 256


class QueuedStreamHandler(logging.handlers.QueueHandler):
    """Writes to a stream from a thread of its own: a request only puts its record on a
    queue, so that a slow or blocked stderr (a pipe nobody drains fast enough, a full
    disk behind it) never holds up the event loop. The writer takes whatever has queued up
    and writes it at once. Lines keep their order; those still queued are written when
    logging shuts down (``close``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        super().__init__(records)
        self.records = records
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.writer_formatter: logging.Formatter = logging.Formatter()
        self.writer = threading.Thread(target=self._write, name="keyplane-log", daemon=True)
        self.writer.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 (logging's)
        # Formatting happens on the writer's thread, not on the request's.
        self.writer_formatter = fmt or logging.Formatter()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message is merged now, while its arguments are what they were when logged;
        # the formatter's work (time, escaping, tracebacks) is left to the writer.
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        return record

    def _write(self) -> None:
        while True:
            batch = [self.records.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            lines = []
            stop = False
            for record in batch:
                if record is _STOP:
                    stop = True
                    break
                try:
                    lines.append(self.writer_formatter.format(record) + "\n")
                except Exception:
                    lines.append(f"unformattable log record from {record.name}\n")
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            if stop:
                return

    def close(self) -> None:
        if self.writer.is_alive():
            self.records.put(_STOP)
            self.writer.join(timeout=5)
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
