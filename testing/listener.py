"""A TCP listener on 127.0.0.1 that records whatever arrives and never answers.

It stands for a host nobody should reach, or one that hangs: a git remote that
accepts a connection and then stays silent, or an endpoint a spec names that
must never receive a request (or a key). Tests read `received` (every byte,
per connection) and wait on `connected` instead of sleeping.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

ACCEPT_POLL_S = 0.1  # how often the accept loop looks whether it should stop


class Listener:
    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(ACCEPT_POLL_S)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._received: list[bytearray] = []
        self.connected = threading.Event()  # set once the first connection arrives

    @property
    def port(self) -> int:
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def received(self) -> list[bytes]:
        """What each connection sent so far, in the order they came."""
        with self._lock:
            return [bytes(data) for data in self._received]

    @contextmanager
    def running(self) -> Iterator[Listener]:
        acceptor = threading.Thread(target=self._accept, daemon=True)
        acceptor.start()
        try:
            yield self
        finally:
            self._stop.set()
            acceptor.join()
            with self._lock:
                for connection in self._connections:
                    _hang_up(connection)
            self._socket.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            data = bytearray()
            with self._lock:
                self._connections.append(connection)
                self._received.append(data)
            self.connected.set()
            threading.Thread(target=self._read, args=(connection, data), daemon=True).start()

    def _read(self, connection: socket.socket, data: bytearray) -> None:
        """Take what the peer sends and answer nothing, until it hangs up or we stop."""
        while True:
            try:
                chunk = connection.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                data.extend(chunk)


def _hang_up(connection: socket.socket) -> None:
    """Close so the peer sees it at once (a bare close would wait for our reader's recv)."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer hung up first: nothing left to shut
    connection.close()
