"""Acknowledged delivery to Logstash's http input.

Logstash answers a POST only after the http input has written every event of the body to
its queue (the persistent queue on disk, see ``logstash/config/logstash.yml``), so a 200
means "stored"; 429 (its request queue is full), any other status, a closed connection or
no answer in time means "not stored, send again". Over plain TCP, by contrast, a batch
counts as sent once the kernel has accepted the bytes, and a receiver that dies before
storing them loses them.

The body is the batch's JSON lines exactly as the emitter encoded them (Logstash's
``json_lines`` codec reads them), sent over one kept-alive connection: no re-encoding and
no new connection per batch.
"""

import http.client

CONTENT_TYPE = "application/x-ndjson"
# Long enough for Logstash to write a 1,000-event batch to its persistent queue on a busy
# disk; a receiver that takes longer is treated as away and the batch waits on local disk.
TIMEOUT_SECONDS = 5.0
# Signs that a kept-alive connection was closed by the server while idle: the request can
# go again at once on a new connection.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class DeliveryRefused(Exception):
    """Logstash answered, but not with 200: nothing of the batch may be taken as stored."""


class LogstashHttpDestination:
    """POSTs a batch of JSON lines and returns only when Logstash acknowledged it.

    Not thread-safe: the emitter sends from one thread at a time."""

    def __init__(self, host: str, port: int, path: str = "/", timeout: float = TIMEOUT_SECONDS) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, lines: list[bytes]) -> None:
        """Deliver every line or raise (``DeliveryRefused``, ``OSError`` or ``http.client.HTTPException``)."""
        body = b"".join(lines)
        reused = self._connection is not None
        try:
            self._post(body)
        except _STALE_CONNECTION:
            if not reused:
                raise
            self._post(body)  # the server closed the idle connection: once more on a new one

    def _post(self, body: bytes) -> None:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            self._connection.request("POST", self._path, body, {"Content-Type": CONTENT_TYPE})
            response = self._connection.getresponse()
            answer = response.read()
        except BaseException:
            self.close()  # a half-sent request or half-read answer leaves the connection unusable
            raise
        if response.status != 200:
            raise DeliveryRefused(f"Logstash answered {response.status}: {answer[:200]!r}")

    def close(self) -> None:
        """Drop the kept-alive connection (the next send opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
