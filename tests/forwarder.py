"""A loopback TCP forwarder in front of a local server (moto) for fault tests: subclasses decide, per
connection and per chunk, what passes. Real sockets, real connection errors: nothing is mocked."""

from __future__ import annotations

import socket
import threading


class LoopbackForwarder:
    """Listens on 127.0.0.1:<free port> and pipes every connection to 127.0.0.1:``target_port``.

    ``admit()`` may refuse a new connection (it is closed at once); ``forward(data, upstream)`` may stop a
    connection before ``data`` is passed on (both directions are closed). Both default to letting all through.
    """

    def __init__(self, target_port: int, upstream_timeout: float = 10):
        self.target_port, self.upstream_timeout = target_port, upstream_timeout
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def admit(self) -> bool:
        return True

    def forward(self, data: bytes, upstream: bool) -> bool:
        return True

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self.admit():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=self.upstream_timeout)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while (data := src.recv(65536)) and self.forward(data, upstream):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
