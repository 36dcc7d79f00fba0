"""`make run`'s process (scripts/serve.py): nginx on API_PORT in front of gunicorn on a unix
socket, both reloaded by `make reload` and stopped together."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from ml_api.config import PROJECT_ROOT
from scripts.local_redis import free_port
from tests.conftest import BOTH_WORKER_CLASSES
from tests.nginx_server import nginx_or_skip
from tests.waiting import wait_until



def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def health(url: str) -> int | None:
    try:
        return requests.get(f"{url}/health", timeout=5).status_code
    except requests.ConnectionError:
        return None


def serve_env(overrides: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """This test's settings: nginx on a free port, gunicorn on a socket, every file in ``tmp_path``."""
    return {**os.environ, **overrides, "API_HOST": "127.0.0.1", "API_PORT": str(free_port()),
            "GUNICORN_BIND": f"unix:{tmp_path}/gunicorn.sock", "GUNICORN_PIDFILE": str(tmp_path / "gunicorn.pid"),
            "PROXY_DIR": str(tmp_path / "nginx"), "METRICS_DIR": str(tmp_path / "prometheus"),
            "PYTHONPATH": str(PROJECT_ROOT)}


@BOTH_WORKER_CLASSES  # a reload and a stop under each class; the next test is serve's own supervision
def test_serve_puts_nginx_in_front_of_gunicorn_on_a_socket_reloads_and_stops_both(overrides, make_experiment,
                                                                                 tmp_path: Path):
    nginx_or_skip()
    env = serve_env(overrides, tmp_path)
    url = f"http://127.0.0.1:{env['API_PORT']}"
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([sys.executable, "-m", "scripts.serve"], cwd=PROJECT_ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: serve.poll() is None and health(url) == 200, timeout=60,
                   message=lambda: f"the gateway through nginx: {(tmp_path / 'serve.log').read_text()[-2000:]}")
        nginx_pid = int((tmp_path / "nginx" / "nginx.pid").read_text())
        gunicorn_pid = int((tmp_path / "gunicorn.pid").read_text())
        body = {"user_id": "u-1", "features": [5.1, 3.5, 1.4, 0.2], "experiment": make_experiment()}
        assert requests.post(f"{url}/predict", json=body, timeout=10).status_code == 200

        reload = subprocess.run(["bash", "scripts/reload.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        assert reload.returncode == 0, reload.stderr
        assert "nginx" in reload.stdout
        assert health(url) == 200
        assert serve.poll() is None

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
        assert not alive(nginx_pid) and not alive(gunicorn_pid)
        assert health(url) is None
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()


def test_when_gunicorn_ends_nginx_is_stopped_too(overrides, tmp_path: Path):
    nginx_or_skip()
    env = serve_env(overrides, tmp_path)
    url = f"http://127.0.0.1:{env['API_PORT']}"
    serve = subprocess.Popen([sys.executable, "-m", "scripts.serve"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: serve.poll() is None and health(url) == 200, timeout=60, message="the gateway through nginx")
        nginx_pid = int((tmp_path / "nginx" / "nginx.pid").read_text())
        os.kill(int((tmp_path / "gunicorn.pid").read_text()), signal.SIGTERM)
        serve.wait(timeout=60)
        wait_until(lambda: not alive(nginx_pid), timeout=30, message="nginx stopped")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
