"""A TCP proxy a test owns, to cut its own connections to a shared server.

Shared servers (the Kubernetes API server, libvirt nodes, Redis) must never be stopped
by a test: other runs use them. Point the client under test at a ``TcpProxy`` instead
and ``cut()`` it — every open connection is reset and new ones are refused until
``restore()`` — which the client sees exactly as the server going away. TLS passes
through untouched (the proxy only copies bytes), so certificates still verify as long
as the proxy listens on the same host name or address as the server.
"""

from __future__ import annotations

import socket
import struct
import threading


class TcpProxy:
    """Listens on ``127.0.0.1:<free port>`` and forwards each connection to ``target``."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = True
        self._closed = False
        self.accepted = 0
        self.refused = 0
        threading.Thread(target=self._accept, name=f"tcp-proxy-{self.port}", daemon=True).start()

    # --- control -----------------------------------------------------------------------
    def cut(self) -> None:
        """Reset every open connection; refuse new ones until ``restore()``."""
        with self._lock:
            self._up = False
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    # --- forwarding --------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                up = self._up
            if not up:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if not self._up:  # cut while connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._connection, args=(client, upstream), daemon=True).start()

    def _connection(self, client: socket.socket, upstream: socket.socket) -> None:
        outbound = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
        outbound.start()
        self._pump(upstream, client)
        outbound.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:  # reset by a peer or by cut(): end both directions
            _reset(source)
            _reset(sink)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a vanished server's host would answer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv()
    except OSError:
        pass
    sock.close()
