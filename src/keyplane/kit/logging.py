"""Logging for ``keyplane serve``: uvicorn's own lines plus Keyplane's, one format."""

from __future__ import annotations

import collections
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, TextIO

from keyplane.kit.text import single_line

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SingleLineFormatter(logging.Formatter):
    """Every record's message on one line: a value that a client sent (a path, a header, an
    email) and that some message quotes cannot forge a log line. Tracebacks, which the
    formatter appends after the message, keep their lines."""

    # The local time of the last second formatted, as (second, text): every line of that
    # second shares it, instead of a localtime() and a strftime() per line.
    _second: tuple[int, str] = (-1, "")

    def formatTime(  # noqa: N802 (logging's name)
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        if datefmt is not None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        return f"{self._local_second(int(record.created))},{int(record.msecs):03d}"

    def _local_second(self, second: int) -> str:
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime(self.default_time_format, time.localtime(second)))
            self._second = cached
        return cached[1]

    def format_info(self, created: float, name: str, message: str) -> str | None:
        """The line of an INFO record of ``name`` with this message, made without a
        ``LogRecord`` when this formatter uses the plain format (None otherwise)."""
        if self._fmt != PLAIN_FORMAT or self.datefmt is not None:
            return None
        if self.converter is not time.localtime:
            return None
        msecs = int(created * 1000) % 1000
        return f"{self._local_second(int(created))},{msecs:03d} INFO {name}: {single_line(message)}"

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
# How long a line may wait for its batch. The writer is woken by a full batch, a warning or
# worse, or this interval, never by each record: waking a thread per record means a switch
# of the interpreter lock per request, which cost more than all the rest of the logging.
FLUSH_SECONDS = 0.05


class QueuedStreamHandler(logging.handlers.QueueHandler):
    """Writes to a stream from a thread of its own: a request only appends its record to a
    buffer, so that a slow or blocked stderr (a pipe nobody drains fast enough, a full
    disk behind it) never holds up the event loop. The writer takes whatever has gathered
    and writes it at once, within ``FLUSH_SECONDS``. Lines keep their order; those still
    buffered are written when logging shuts down (``close``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # deque.append and popleft are atomic: the request side takes no lock of its own.
        self.pending: collections.deque[logging.LogRecord | tuple[float, str, str] | None] = (
            collections.deque()
        )
        self.wake = threading.Event()
        super().__init__(queue.SimpleQueue())
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

    def enqueue(self, record: logging.LogRecord | None) -> None:
        self.pending.append(record)
        if record is None or record.levelno >= logging.WARNING or len(self.pending) >= _BATCH:
            self.wake.set()

    def enqueue_info(self, name: str, message: str) -> None:
        """An INFO line of logger ``name`` whose message is final, as a plain tuple: the
        ``LogRecord`` is made by the writer, off the request's path (see ``direct_sink``)."""
        self.pending.append((time.time(), name, message))
        if len(self.pending) >= _BATCH:
            self.wake.set()

    @staticmethod
    def _record(entry: tuple[float, str, str]) -> logging.LogRecord:
        created, name, message = entry
        record = logging.LogRecord(name, logging.INFO, "", 0, message, None, None)
        record.created = created
        record.msecs = int(created * 1000) % 1000 + 0.0
        record.message = message
        return record

    def _line(self, entry: logging.LogRecord | tuple[float, str, str]) -> str:
        if isinstance(entry, tuple):
            formatter = self.writer_formatter
            if isinstance(formatter, SingleLineFormatter):
                line = formatter.format_info(*entry)
                if line is not None:
                    return line
            entry = self._record(entry)
        return self.writer_formatter.format(entry)

    def _write(self) -> None:
        stop = False
        while not stop:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            lines = []
            while self.pending:
                entry = self.pending.popleft()
                if entry is _STOP:
                    stop = True
                    break
                try:
                    lines.append(self._line(entry) + "\n")
                except Exception:
                    name = entry[1] if isinstance(entry, tuple) else entry.name
                    lines.append(f"unformattable log record from {name}\n")
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        if self.writer.is_alive():
            self.enqueue(_STOP)
            self.writer.join(timeout=5)
        super().close()


def direct_sink(logger: logging.Logger) -> QueuedStreamHandler | None:
    """The handler an INFO record of ``logger`` would reach, when that is one
    ``QueuedStreamHandler`` and nothing on the way filters (Keyplane's own configuration):
    a line per request can then skip the ``LogRecord`` and the handler's lock on the
    request's path. None for anything else (other handlers, filters, logging off), where
    the caller logs as usual."""
    if logger.disabled or not logger.isEnabledFor(logging.INFO):
        return None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            if len(current.handlers) != 1 or current.propagate:
                return None
            handler = current.handlers[0]
            if (
                isinstance(handler, QueuedStreamHandler)
                and not handler.filters
                and handler.level <= logging.INFO
            ):
                return handler
            return None
        current = current.parent if current.propagate else None
    return None


def quicken_logging() -> None:
    """What the logging HOWTO's "Optimization" section offers a server that logs on every
    request: no caller lookup (a walk up the stack per record) and no thread and process
    names, none of which Keyplane's format shows."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log_config(level: str = "INFO") -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "()": SingleLineFormatter,
                "fmt": PLAIN_FORMAT,
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
