"""A real nginx in front of a test's gunicorn: the project's templates rendered into the test's
own directory, listening on a free port, in the test's foreground, stopped afterwards."""

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_api.config import PROJECT_ROOT, Config, load_config
from scripts import nginx_conf
from scripts.local_redis import free_port
from tests.waiting import wait_until


@dataclass
class Nginx:
    url: str
    port: int
    process: subprocess.Popen
    prefix: Path
    config: Config

    def error_log(self) -> str:
        path = self.prefix / nginx_conf.ERROR_LOG
        return path.read_text(errors="replace") if path.exists() else ""


def nginx_or_skip() -> str:
    """The nginx binary, installed first when missing (as `make test` does); a skip only when that fails."""
    binary = nginx_conf.nginx_binary()
    if binary is None:
        result = subprocess.run(["bash", "scripts/ensure_nginx.sh"], cwd=PROJECT_ROOT, capture_output=True, text=True)
        binary = nginx_conf.nginx_binary()
        if binary is None:
            pytest.skip(f"nginx is not installed and could not be installed: {result.stderr.strip()[-500:]}")
    return binary


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def running_nginx(binary: str, upstream_bind: str, prefix: Path, **settings: str) -> Iterator[Nginx]:
    """nginx on a free loopback port in front of ``upstream_bind`` (a GUNICORN_BIND value), with
    api.env's settings overridden by ``settings`` (PROXY_CLIENT_HEADER_TIMEOUT=...)."""
    port = free_port()
    config = load_config({**os.environ, **settings, "API_HOST": "127.0.0.1", "API_PORT": str(port),
                          "GUNICORN_BIND": upstream_bind})
    nginx_conf.render(config, prefix)
    with open(prefix / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(nginx_conf.command(binary, prefix), stdout=stderr, stderr=subprocess.STDOUT)
    server = Nginx(f"http://127.0.0.1:{port}", port, process, prefix, config)

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(prefix / 'stderr.log').read_text()} {server.error_log()}")
        return accepts(port)

    try:
        wait_until(started, timeout=15, message="nginx listening")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown: the test is over
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
