"""A stand-in for Logstash's http input, as the gateway sees it.

It takes POSTed JSON lines and answers 200 once it has stored them, as Logstash does once
the events are in its queue. Unlike the real thing it can crash on demand: ``stop`` drops
the listening socket and every open connection at once, and ``crash_during_next_batches``
makes it die half-way through reading a batch (the batch is not stored and not answered),
so tests can check that nothing that was not acknowledged counts as delivered.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInLogstash:
    """Start it, point ``LOGSTASH_HOST``/``LOGSTASH_PORT`` at it, read ``events()``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._crashes_left = 0
        self.crashes = 0  # batches it died in the middle of
        self.acknowledged = 0  # batches answered 200

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again) on the same port."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Logstash's http input

            def setup(self) -> None:
                super().setup()
                with standin._lock:
                    standin._connections.add(self.connection)

            def finish(self) -> None:
                with standin._lock:
                    standin._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                if standin._take_crash():
                    self.rfile.read(length // 2)
                    standin.stop()  # dies with the batch half read: nothing stored, nothing answered
                    return
                events = [json.loads(line) for line in self.rfile.read(length).splitlines() if line.strip()]
                with standin._lock:
                    standin._events.extend(events)
                    standin.acknowledged += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a connection it cut itself (a crash) or a client gone: no traceback

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="standin-logstash", daemon=True).start()

    def stop(self) -> None:
        """Crash: stop listening and cut every open connection, answered or not.

        ``running`` turns False only once the port is free again, so ``start`` may follow."""
        with self._stopping:
            server = self._server
            if server is None:
                return
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # Handlers run on their own threads, so this may be called from one. The listening
            # socket is closed only once serve_forever has stopped polling it: closed under a
            # poll, it would keep the port bound until the poll returns.
            server.shutdown()
            server.server_close()
            self._server = None

    def crash_during_next_batches(self, count: int = 1) -> None:
        """Die half-way through reading each of the next ``count`` batches (restart it with ``start``)."""
        with self._lock:
            self._crashes_left = count

    def _take_crash(self) -> bool:
        with self._lock:
            if self._crashes_left <= 0:
                return False
            self._crashes_left -= 1
            self.crashes += 1
            return True

    def events(self) -> list[dict]:
        """Every event stored so far (a batch resent after a crash may appear twice)."""
        with self._lock:
            return list(self._events)
