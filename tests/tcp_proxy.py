"""A TCP forwarder between Keyplane and its database, in a thread, that a test can cut and
restore: the database "goes away" for Keyplane while the real server keeps running.

``cut`` closes everything, as a dead host would (the client sees it at once);
``partition`` closes nothing and moves no byte, as a network that drops packets does (the
client sees nothing at all, until its own timers give up); ``heal`` ends the partition."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._partitioned = threading.Event()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()

    def start(self) -> None:
        """Listen (again, on the same port) and forward every new connection."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def cut(self) -> None:
        """Stop listening and drop every open connection, as a dead database host would."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def partition(self) -> None:
        """Stop moving bytes, both ways, on open and new connections; close nothing. What
        was sent stays in the kernel's buffers, as TCP keeps retransmitting it."""
        self._partitioned.set()

    def heal(self) -> None:
        """Forward again, what was held first, as a network that comes back does."""
        self._partitioned.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            thread = threading.Thread(target=self._pipe, args=(client, upstream), daemon=True)
            thread.start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for end in peers:
                selector.register(end, selectors.EVENT_READ)
            while True:
                if self._partitioned.is_set():
                    if client.fileno() < 0 or upstream.fileno() < 0:
                        return
                    time.sleep(0.05)
                    continue
                try:
                    ready = selector.select(timeout=0.2)
                except (OSError, ValueError):
                    return
                if self._partitioned.is_set():
                    # Set while waiting: what arrived stays unread.
                    continue
                for key, _ in ready:
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                        if not data:
                            raise OSError("closed")
                        peers[source].sendall(data)
                    except OSError:
                        for end in peers:
                            with contextlib.suppress(OSError):
                                end.close()
                        return
