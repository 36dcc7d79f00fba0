"""`make run`: gunicorn on GUNICORN_BIND behind nginx on API_HOST:API_PORT, one unit.

nginx buffers every request before gunicorn sees it (nginx/gateway.conf.template says why),
so the gateway is only served through it. This process starts gunicorn, waits until it
listens, then starts nginx in the foreground (its pid file is PROXY_DIR/nginx.pid), and
stays their parent: when either exits the other is stopped, and SIGINT/SIGTERM stop both
gracefully. `make reload` signals gunicorn and nginx by their pid files.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ml_api.config import PROJECT_ROOT, UNIX_PREFIX, Config, load_config
from scripts import nginx_conf

GUNICORN = Path(sys.executable).parent / "gunicorn"
BIND_WAIT_SECONDS = 30
STOP_WAIT_SECONDS = 40  # gunicorn's graceful timeout (GUNICORN_TIMEOUT, 30 s) and some


def listening(bind: str) -> bool:
    """Does something accept connections at ``bind`` (``unix:<path>`` or ``<host>:<port>``)?"""
    if bind.startswith(UNIX_PREFIX):
        family, address = socket.AF_UNIX, bind[len(UNIX_PREFIX):]
    else:
        host, _, port = nginx_conf.upstream(bind).rpartition(":")
        family, address = socket.AF_INET6 if host.startswith("[") else socket.AF_INET, (host.strip("[]"), int(port))
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(address)
            return True
        except OSError:
            return False


def wait_for_gunicorn(process: subprocess.Popen, bind: str) -> bool:
    """True once gunicorn listens; False if it exited or did not bind in time."""
    deadline = time.monotonic() + BIND_WAIT_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        if listening(bind):
            return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Ask ``process`` to stop with ``sig`` (graceful for both servers); kill it if it does not."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(config: Config) -> int:
    binary = nginx_conf.nginx_binary()
    if binary is None:
        print("serve: nginx is not installed (scripts/ensure_nginx.sh installs it)", file=sys.stderr)
        return 1
    nginx_conf.render(config, config.proxy_dir)
    nginx_command = nginx_conf.command(binary, config.proxy_dir)
    subprocess.run([*nginx_command, "-t", "-q"], check=True)  # a broken config fails before gunicorn starts

    gunicorn = subprocess.Popen([str(GUNICORN), "-c", "ml_api/gunicorn.conf.py", "ml_api:create_app()"],
                                cwd=PROJECT_ROOT)
    if not wait_for_gunicorn(gunicorn, config.gunicorn_bind):
        stop(gunicorn, signal.SIGTERM)
        print(f"serve: gunicorn did not listen on {config.gunicorn_bind}", file=sys.stderr)
        return 1
    nginx = subprocess.Popen(nginx_command, cwd=PROJECT_ROOT)
    print(f"serve: nginx on http://{nginx_conf.template_values(config)['API_HOST']}:{config.api_port} "
          f"-> gunicorn on {config.gunicorn_bind}", file=sys.stderr, flush=True)

    def stop_both(signum: int, frame: object) -> None:
        # Graceful for both: nginx (QUIT) finishes its requests, gunicorn (TERM) its workers'.
        for process, sig in ((nginx, signal.SIGQUIT), (gunicorn, signal.SIGTERM)):
            if process.poll() is None:
                process.send_signal(sig)

    signal.signal(signal.SIGINT, stop_both)
    signal.signal(signal.SIGTERM, stop_both)
    pid, status = os.wait()  # whichever ends first; the other follows
    first, other, sig = (nginx, gunicorn, signal.SIGTERM) if pid == nginx.pid else (gunicorn, nginx, signal.SIGQUIT)
    first.returncode = os.waitstatus_to_exitcode(status)
    stop(other, sig)
    return first.returncode or other.returncode or 0


if __name__ == "__main__":
    sys.exit(serve(load_config(os.environ)))
