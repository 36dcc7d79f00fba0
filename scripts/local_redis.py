"""A throwaway redis-server on a free loopback port, for tests and benchmarks that must not
touch the shared server (they stop, flush or fill it)."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    """redis-server without persistence on one port, which can be killed and started again
    (empty) on the same port, as a crashed and restarted cache would be."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test / make services install it)")
        self.port = port or free_port()
        self._command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", str(workdir)]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> None:
        """Start it and return once it answers PING."""
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@contextmanager
def local_redis(workdir: Path, start_seconds: float = 10) -> Iterator[str]:
    """Start redis-server (no persistence) in ``workdir``; yield its URL; stop it afterwards."""
    server = RedisProcess(workdir)
    try:
        server.start(start_seconds)
        yield server.url
    finally:
        server.stop()
