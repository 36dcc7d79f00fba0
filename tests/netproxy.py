"""A loopback TCP proxy a test can cut and restore, to take a real server "down" for the
gateway without stopping the server other tests share, or stall, to hold back its answers
on the connections open now until the test lets them through."""

import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._up = True
        self._closed = False
        self._connections: list[socket.socket] = []
        self._stalled: set[socket.socket] = set()  # client sockets whose answers wait for _released
        self._released = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones (reset, as a dead server would)."""
        with self._lock:
            self._up = False
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._connections.clear()

    def stall_answers(self) -> None:
        """Hold back the answers on the connections open now until ``release_answers`` (what a
        client sees of a server or network that stalls); new connections are not held."""
        with self._lock:
            self._released.clear()
            self._stalled = set(self._connections[::2])  # clients, not upstreams

    def release_answers(self) -> None:
        self._released.set()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self._closed = True
        self.release_answers()
        self.cut()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                if not self._up:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=2)
                except OSError:
                    client.close()
                    continue
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if sink in self._stalled:
                    self._released.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass
